from pathlib import Path

import cv2
import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner

from saip_mm.engine.hooks.visualization_hook import colour_bar, fit_scale, title_strip

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'
HEIGHT, STRIP, GAP = 128, 14, 4  # panel height, title strip height (max(14, 128 // 10)), gap


def test_hook_writes_the_three_titled_pictures(person_folder, tmp_path):
    cfg = Config.fromfile(str(CONFIG))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.dataset.data_root = str(person_folder)
    cfg.train_cfg.max_iters = 2
    cfg.custom_hooks = [dict(type='SAIPTeacherHook'),
                        dict(type='SAIPVisualizationHook', interval=1, max_samples=2,
                             height=HEIGHT)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'SAIPVisualizationHook')
    n_local = cfg.model.n_local
    assert hook.titles['saip_views'] == ['g1', 'g2', 'region'] + [
        f'local {i}' for i in range(1, n_local)]
    assert hook.titles['saip_csr'] == ['masked input', 'reconstruction', 'target']
    assert [t if isinstance(t, str) else ''.join(p for p, _ in t)
            for t in hook.titles['saip_css']] == [
                'reference: instance / ROI', 'instance search', 'ROI search', 'prob']

    images = sorted(Path(cfg.work_dir).glob('*/vis_data/vis_image/*.png'))
    assert sorted(p.name for p in images) == sorted(
        f'{n}_{i}.png' for n in ('saip_views', 'saip_csr', 'saip_css') for i in (1, 2))
    bar_width = colour_bar(HEIGHT).shape[1]
    widths = {'saip_views': [64, 64, 64] + [64] * (n_local - 1),  # 128x64 at height 128
              'saip_csr': [64] * 3,  # masked, reconstruction, target (320x160)
              'saip_css': [128, 128, 128, bar_width]}  # 224x224 reference, two maps, bar
    for path in images:
        name = path.name.rsplit('_', 1)[0]
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        # a title strip, then two samples (one row each)
        assert img.shape[0] == STRIP + GAP + HEIGHT + GAP + HEIGHT, path.name
        assert img.shape[1] == sum(widths[name]) + GAP * (len(widths[name]) - 1), path.name
        # rendered-title check: the header holds each column's title, in column order
        x = 0
        scale = min(fit_scale(t, w, STRIP) for t, w in zip(hook.titles[name], widths[name]))
        for title, width in zip(hook.titles[name], widths[name]):
            expected = title_strip(title, width, STRIP, scale)
            assert np.array_equal(img[:STRIP, x:x + width], expected), (path.name, title)
            x += width + GAP
        if name == 'saip_css':  # the colour bar is in every row: red (1) on top, blue (0) below
            bar = img[STRIP + GAP:STRIP + GAP + HEIGHT, -bar_width:]
            assert np.array_equal(bar, colour_bar(HEIGHT))


def test_title_strip_and_colour_bar_render_what_they_say():
    strip = title_strip('masked input', 64, 14)
    assert strip.shape == (14, 64, 3) and strip.min() < 100  # dark text on white
    assert (strip[:, 0] == 255).all() and (strip[:, -1] == 255).all()  # fitted, not cut
    assert not np.array_equal(strip, title_strip('target', 64, 14))
    coloured = title_strip([('a ', (0, 0, 0)), ('ROI', (220, 0, 0))], 64, 14)
    reddish = (coloured[..., 0] > 150) & (coloured[..., 1] < 100) & (coloured[..., 2] < 100)
    assert reddish.any()
    bar = colour_bar(100)
    assert bar.shape[0] == 100
    top, bottom = bar[0, 0].astype(int), bar[-1, 0].astype(int)  # JET: 1 -> red, 0 -> blue
    assert top[0] > 100 and top[2] < 50 and bottom[2] > 100 and bottom[0] < 50
