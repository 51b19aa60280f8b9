"""projects/parsing: SAIP ViT-Tiny + UperNet in stock mmseg configs (LIP, CIHP)."""
from pathlib import Path

import numpy as np
import pytest

from projects_testlib import (ROOT, assert_backbone_loaded, assert_trained_and_evaluated,
                              is_finite_number, logged_metrics, random_image, train_in_process,
                              train_with_tool, write_derived_config)

CONFIGS = ROOT / 'projects' / 'parsing' / 'configs'
LIP = CONFIGS / 'saip-vit-tiny_upernet_4xb4-80k_lip-512x512.py'
CIHP = CONFIGS / 'saip-vit-tiny_upernet_4xb4-80k_cihp-512x512.py'
CROP = (128, 128)  # the tests' crop; the configs use 512x512


def _label_map(path: Path, height: int, width: int, seed: int) -> None:
    """A part map with ids 0-19 in blocks (PNG, one channel), as LIP and CIHP store them."""
    import cv2
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 20, (height // 16 + 1, width // 16 + 1), dtype=np.uint8)
    labels = np.kron(labels, np.ones((16, 16), dtype=np.uint8))[:height, :width]
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), labels)


def write_lip(root: Path) -> None:
    """mmseg's LIP layout: {train,val}_images/*.jpg and {train,val}_segmentations/*.png."""
    for split in ('train', 'val'):
        for i in range(2):
            name = f'{100 + i}_{split}'
            random_image(root / f'{split}_images' / f'{name}.jpg', 96, 64, seed=i)
            _label_map(root / f'{split}_segmentations' / f'{name}.png', 96, 64, seed=i)


def write_cihp(root: Path) -> None:
    """The released CIHP tree: {Training,Validation}/{Images,Category_ids} and id lists."""
    for split, ids in (('Training', 'train_id.txt'), ('Validation', 'val_id.txt')):
        names = [f'{i:07d}' for i in range(1, 3)]
        for i, name in enumerate(names):
            random_image(root / split / 'Images' / f'{name}.jpg', 80, 96, seed=i)
            _label_map(root / split / 'Category_ids' / f'{name}.png', 80, 96, seed=i)
        (root / split / ids).write_text('\n'.join(names) + '\n')


def tiny_parsing_config(tmp_path: Path, base: Path) -> Path:
    data_root = tmp_path / 'data'
    (write_cihp if base is CIHP else write_lip)(data_root)
    body = f"""
crop_size = {CROP!r}
model = dict(data_preprocessor=dict(size=crop_size), backbone=dict(img_size=crop_size))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5, swap_seg_labels=[(14, 15), (16, 17), (18, 19)]),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={str(data_root)!r}, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={str(data_root)!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader
"""
    return write_derived_config(tmp_path / 'tiny_parsing.py', base, body)


def test_lip_through_mmseg_train_tool(tmp_path, saip_checkpoints):
    """tools/train.py of mmseg, `--cfg-options pretrained=...`: weights, one step, mIoU."""
    config = tiny_parsing_config(tmp_path, LIP)
    log, probe = train_with_tool('mmseg', config, saip_checkpoints.tiny, tmp_path / 'work')
    assert f'from {saip_checkpoints.tiny}' in log and 'grid (16, 8) -> (8, 8)' in log
    assert probe.patch_resolution == (8, 8)  # the tests' 128x128 crop
    assert_backbone_loaded(probe, saip_checkpoints.tiny)
    assert_trained_and_evaluated(probe, ['mIoU'])
    assert is_finite_number(logged_metrics(tmp_path / 'work').get('mIoU'))


def test_cihp_in_process(tmp_path, saip_checkpoints):
    config = tiny_parsing_config(tmp_path, CIHP)
    runner, probe = train_in_process(config, saip_checkpoints.tiny, tmp_path / 'work')
    dataset = runner.val_dataloader.dataset
    assert type(dataset).__name__ == 'CIHPDataset' and len(dataset) == 2
    assert len(dataset.metainfo['classes']) == 20
    backbone = runner.model.backbone
    assert list(backbone.out_indices) == [3, 5, 7, 11]  # multi-level features for the pyramid
    assert type(runner.model.neck).__name__ == 'Feature2Pyramid'
    assert probe.patch_resolution == (8, 8)
    assert_backbone_loaded(probe, saip_checkpoints.tiny)
    assert_trained_and_evaluated(probe, ['mIoU'])


def test_cihp_dataset_reads_released_layout(tmp_path):
    import saip_mm.datasets.cihp  # noqa: F401
    from mmseg.registry import DATASETS
    write_cihp(tmp_path)
    dataset = DATASETS.build(dict(
        type='CIHPDataset', data_root=str(tmp_path), ann_file='Validation/val_id.txt',
        data_prefix=dict(img_path='Validation/Images', seg_map_path='Validation/Category_ids')))
    first = dataset.get_data_info(0)
    assert first['img_path'].endswith('Validation/Images/0000001.jpg')
    assert first['seg_map_path'].endswith('Validation/Category_ids/0000001.png')
    assert dataset.metainfo['classes'][10] == 'Torso-skin' and not first['reduce_zero_label']
    with pytest.raises(ValueError, match='reduce_zero_label'):
        DATASETS.build(dict(type='CIHPDataset', data_root=str(tmp_path), reduce_zero_label=True,
                            data_prefix=dict(img_path='Validation/Images')))
