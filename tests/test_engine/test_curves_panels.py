"""What curves.png draws (saip_mm/engine/hooks/curves_hook.py)."""
from unittest import mock

from saip_mm.engine.hooks import curves_hook


def _drawn(series, tmp_path):
    """The labels of every line the figure draws, per panel title."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.axes
    drawn = []
    real_plot = matplotlib.axes.Axes.plot

    def plot(self, *args, **kwargs):
        drawn.append(kwargs.get('label'))
        return real_plot(self, *args, **kwargs)

    with mock.patch.object(matplotlib.axes.Axes, 'plot', plot):
        curves_hook.plot_curves(series, str(tmp_path / 'c.png'))
    assert (tmp_path / 'c.png').is_file()
    return drawn


def test_cross_resolution_validation_draws_map_only(tmp_path):
    series = {f'val/reid/{m}{s}': [[10, 30.0], [20, 31.0]]
              for m in ('mAP', 'rank-1', 'rank-5') for s in ('', '_r2', '_r3', '_mixed')}
    series['loss_csm'] = [[5, 1.0]]
    drawn = _drawn(series, tmp_path)
    assert sorted(d for d in drawn if d != 'loss_csm') == [
        'reid/mAP', 'reid/mAP_mixed', 'reid/mAP_r2', 'reid/mAP_r3']
    assert 'loss_csm' in drawn


def test_plain_validation_draws_every_metric(tmp_path):
    series = {'val/reid/mAP': [[10, 30.0]], 'val/reid/rank-1': [[10, 40.0]]}
    assert sorted(_drawn(series, tmp_path)) == ['reid/mAP', 'reid/rank-1']
