"""Curves of a run a person looks at: validation metrics, health metrics and losses."""
import functools
import json
import os
import os.path as osp
from typing import Dict, List, Optional

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from mmpretrain.registry import HOOKS

from .health_hook import HEALTH_PREFIX
from .safe_checkpoint_hook import PARTIAL_SUFFIX, write_text_atomic

#: Checkpoint key of the recorded series (so a resumed run draws its whole history).
CHECKPOINT_KEY = 'curves'


def plot_curves(series: Dict[str, List[List[float]]], path: str, title: str = '') -> None:
    """Draw validation metrics, health metrics and losses over iterations into one PNG.

    Args:
        series (dict): name -> [[iteration, value], ...]; names starting with ``val/`` go in
            the first panel, ``health/rankme`` and ``health/`` others in the second and third,
            ``loss`` names in the last. Empty panels are left out. With cross-resolution ReID
            settings (``val/reid/mAP_r2`` ...) the validation panel draws the mAP series
            only (rank-k at five settings would be 20 lines).
        path (str): the PNG to write (atomically).
        title (str): figure title. Defaults to ''.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups = [('validation', lambda k: k.startswith('val/')),
              ('RankMe (effective rank)', lambda k: k.startswith(HEALTH_PREFIX + 'rankme')),
              ('health', lambda k: k.startswith(HEALTH_PREFIX) and 'rankme' not in k),
              ('losses', lambda k: k.startswith('loss'))]
    panels = [(name, [k for k in sorted(series) if pick(k) and series[k]])
              for name, pick in groups]
    # Cross-resolution validation gives rank-k at five settings: the panel draws the mAP
    # curves then (every series stays in curves.json).
    panels = [(name, [k for k in keys if 'mAP' in k]
               if name == 'validation' and any(k.endswith('mAP_r2') for k in keys) else keys)
              for name, keys in panels]
    panels = [(name, keys) for name, keys in panels if keys]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            xs, ys = zip(*series[key])
            label = key.split('/', 1)[-1] if '/' in key else key
            ax.plot(xs, ys, marker='o' if len(xs) < 30 else None, markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    # written aside, then renamed: a viewer never reads half a picture
    fig.savefig(path + PARTIAL_SUFFIX, dpi=100, format='png')
    plt.close(fig)
    os.replace(path + PARTIAL_SUFFIX, path)


@HOOKS.register_module()
class TrainingCurvesHook(Hook):
    """Record validation metrics, health metrics and losses; redraw ``curves.png`` in the work dir.

    Series: every validation's numeric metrics (``val/<metric>``, e.g. ``val/reid/mAP``), every
    ``health/*`` check of :class:`SAIPHealthHook`, and the mean of each ``loss*`` over the last
    ``loss_interval`` iterations. They are written to ``<work_dir>/curves.json`` and drawn into
    ``<work_dir>/curves.png`` after each validation and at the end of training (both files
    replaced atomically, main process only), and kept in checkpoints, so a resumed run draws
    its whole history. The scalars also reach every ``vis_backends`` entry (TensorBoard, W&B)
    through MMEngine's logger and :class:`SAIPHealthHook`.

    A run that stops on an exception (the collapse alarm's ``CollapseError``, the NaN stop,
    a data error, Ctrl-C) writes them too: MMEngine's ``Runner.train`` calls ``after_run``
    only when the loop returns, so in ``before_run`` this hook wraps the train loop's
    ``run`` to write on the way out, re-raising the exception unchanged. The failing
    iteration's points are kept when that iteration had already logged them, i.e. when
    :class:`SAIPHealthHook` had logged its check (the alarm raises right after that; the
    losses of the iteration were in the message hub before it).

    Args:
        loss_interval (int): iterations per loss point. Defaults to 10.
        filename (str): base name of the JSON and PNG files. Defaults to 'curves'.
    """
    priority = 'LOW'  # after SAIPHealthHook (NORMAL) and the logger's bookkeeping

    def __init__(self, loss_interval: int = 10, filename: str = 'curves') -> None:
        if isinstance(loss_interval, bool) or not isinstance(loss_interval, int) \
                or loss_interval < 1:
            raise ValueError(f'TrainingCurvesHook: loss_interval must be a positive integer, '
                             f'got {loss_interval!r}')
        self.loss_interval = loss_interval
        self.filename = filename
        self.series: Dict[str, List[List[float]]] = {}
        self._loaded: Optional[dict] = None

    def _add(self, key: str, it: int, value: float) -> None:
        points = self.series.setdefault(key, [])
        if points and points[-1][0] == it:  # the same iteration again (resume): replace
            points[-1] = [it, float(value)]
        else:
            points.append([it, float(value)])

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = self.series

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        # only a resumed run continues the history, not weights loaded with load_from
        if loaded is None or runner.iter == 0:
            return
        # A checkpoint is written before the validation of its iteration: that point (and any
        # other up to the checkpoint) comes from the work dir's curves.json when it is there.
        on_disk = {}
        path = osp.join(runner.work_dir, self.filename + '.json')
        if osp.isfile(path):
            try:
                with open(path) as f:
                    on_disk = json.load(f)
            except (OSError, ValueError):
                runner.logger.warning(f'TrainingCurvesHook: {path} is unreadable; the curves '
                                      f'restart from the checkpoint\'s')
        for source in (on_disk, loaded):  # the checkpoint's points win
            for key, points in source.items():
                merged = {int(i): float(v) for i, v in self.series.get(key, [])}
                merged.update({int(i): float(v) for i, v in points if i <= runner.iter})
                self.series[key] = [[i, merged[i]] for i in sorted(merged)]

    def before_run(self, runner) -> None:
        """Make the train loop write the curves when an exception leaves it (see above)."""
        loop = getattr(runner, '_train_loop', None)  # built by Runner.train before before_run
        if not isinstance(loop, BaseLoop) or getattr(loop.run, '_writes_curves', False):
            return
        run = loop.run

        @functools.wraps(run)
        def run_writing_curves_on_error(*args, **kwargs):
            try:
                return run(*args, **kwargs)
            except BaseException:
                self.write_on_error(runner)
                raise

        run_writing_curves_on_error._writes_curves = True
        loop.run = run_writing_curves_on_error

    def write_on_error(self, runner) -> None:
        """Record the failing iteration's logged points, then write; never raise."""
        try:
            it = runner.iter + 1  # the iteration in progress (not yet counted)
            if runner.message_hub.get_info('health_iter') == it:
                # SAIPHealthHook logged this iteration's check (runtime-info hook ran before it)
                self.record(runner, it)
            self.write(runner)
        except Exception as e:  # the original exception is what the user must see
            runner.logger.warning(f'TrainingCurvesHook: could not write the curves while the '
                                  f'run stops: {type(e).__name__}: {e}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.record(runner, runner.iter + 1)

    def record(self, runner, it: int) -> None:
        """Add iteration ``it``'s health check and loss point (every ``loss_interval``) from
        the message hub."""
        hub = runner.message_hub
        if hub.get_info('health_iter') == it:
            for key, buffer in hub.log_scalars.items():
                if key.startswith(HEALTH_PREFIX):
                    self._add(key, it, buffer.current())
        if it % self.loss_interval == 0:
            for key, buffer in hub.log_scalars.items():
                if key.startswith('train/loss'):
                    self._add(key[len('train/'):], it, buffer.mean(self.loss_interval))

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        for key, value in (metrics or {}).items():
            # counts (reid/num_valid_queries) are not curves
            if isinstance(value, (int, float)) and not key.split('/')[-1].startswith('num_'):
                self._add(f'val/{key}', runner.iter, value)
        self.write(runner)

    def after_train(self, runner) -> None:
        self.write(runner)

    @master_only
    def write(self, runner) -> None:
        """Write ``curves.json`` and redraw ``curves.png`` in the work dir."""
        if not self.series:
            return
        base = osp.join(runner.work_dir, self.filename)
        write_text_atomic(base + '.json', json.dumps(self.series))
        plot_curves(self.series, base + '.png', title=osp.basename(runner.work_dir))
