from pathlib import Path

import cv2
from mmengine.config import Config
from mmengine.runner import Runner

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'


def test_hook_writes_the_three_pictures(person_folder, tmp_path):
    cfg = Config.fromfile(str(CONFIG))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.dataset.data_root = str(person_folder)
    cfg.train_cfg.max_iters = 2
    cfg.custom_hooks = [dict(type='SAIPTeacherHook'),
                        dict(type='SAIPVisualizationHook', interval=1, max_samples=2, height=128)]
    Runner.from_cfg(cfg).train()
    images = sorted(Path(cfg.work_dir).glob('*/vis_data/vis_image/*.png'))
    names = sorted(p.name for p in images)
    assert names == sorted(f'{n}_{i}.png' for n in ('saip_views', 'saip_csr', 'saip_css')
                           for i in (1, 2))
    n_local = cfg.model.n_local
    for path in images:
        img = cv2.imread(str(path))
        assert img is not None and img.shape[0] == 2 * 128 + 4  # two samples, one row each
        # panels per row at height 128: views g1, g2, region (64 wide), locals (64 each), ...
        expected = {'saip_views': 64 + 64 + 64 + (n_local - 1) * 64 + (2 + n_local - 1) * 4,
                    'saip_csr': 3 * 64 + 2 * 4,  # masked, reconstruction, target (320x160)
                    'saip_css': 3 * 128 + 2 * 4}  # reference with boxes, two search maps
        assert img.shape[1] == expected[path.name.rsplit('_', 1)[0]], path.name
