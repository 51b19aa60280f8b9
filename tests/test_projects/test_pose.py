"""projects/pose: SAIP ViT-Tiny in stock mmpose top-down configs (COCO, COCO-WholeBody)."""
import json
from pathlib import Path

import numpy as np
import pytest

from projects_testlib import (ROOT, assert_backbone_loaded, assert_trained_and_evaluated,
                              is_finite_number, logged_metrics, random_image, train_in_process,
                              train_with_tool, write_derived_config)

CONFIGS = ROOT / 'projects' / 'pose' / 'configs'
COCO = CONFIGS / 'td-hm_saip-vit-tiny_8xb64-210e_coco-256x192.py'
WHOLEBODY = CONFIGS / 'td-hm_saip-vit-tiny_8xb64-210e_coco-wholebody-256x192.py'
BODY_NAMES = ['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
              'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
              'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle']
# COCO-WholeBody: body 17, feet 6, face 68, left hand 21, right hand 21 = 133
WHOLEBODY_PARTS = dict(foot_kpts=6, face_kpts=68, lefthand_kpts=21, righthand_kpts=21)


def _points(rng, n, box):
    x, y, w, h = box
    pts = np.stack([rng.uniform(x + 2, x + w - 2, n), rng.uniform(y + 2, y + h - 2, n),
                    np.full(n, 2.0)], axis=1)
    return [round(float(v), 2) for v in pts.reshape(-1)]


def write_coco_keypoints(root: Path, wholebody: bool = False, n_images: int = 2) -> str:
    """COCO person-keypoint json (or COCO-WholeBody v1.0) + images: one person per image."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(1, n_images + 1):
        name = f'{i:012d}.jpg'
        random_image(root / 'images' / name, 96, 64, seed=i)
        images.append(dict(id=i, file_name=name, height=96, width=64))
        box = [8.0, 6.0, 44.0, 80.0]
        ann = dict(id=i, image_id=i, category_id=1, iscrowd=0, bbox=box, area=box[2] * box[3],
                   num_keypoints=17, keypoints=_points(rng, 17, box),
                   segmentation=[[8, 6, 52, 6, 52, 86, 8, 86]])
        if wholebody:
            for part, n in WHOLEBODY_PARTS.items():
                ann[part] = _points(rng, n, box)
            for part in ('face', 'lefthand', 'righthand'):
                ann[f'{part}_box'] = [20.0, 10.0, 16.0, 16.0]
                ann[f'{part}_valid'] = True
            ann['foot_valid'] = True
        annotations.append(ann)
    categories = [dict(id=1, name='person', supercategory='person', keypoints=BODY_NAMES,
                       skeleton=[[16, 14], [14, 12], [17, 15], [15, 13], [12, 13]])]
    ann_dir = root / 'annotations'
    ann_dir.mkdir(parents=True, exist_ok=True)
    name = 'coco_wholebody_val_v1.0.json' if wholebody else 'person_keypoints_val2017.json'
    (ann_dir / name).write_text(json.dumps(dict(images=images, annotations=annotations,
                                                categories=categories)))
    return f'annotations/{name}'


def tiny_pose_config(tmp_path: Path, base: Path, wholebody: bool = False) -> Path:
    data_root = tmp_path / 'coco'
    ann = write_coco_keypoints(data_root, wholebody=wholebody)
    loader = (f"dict(batch_size=2, num_workers=0, persistent_workers=False, "
              f"dataset=dict(data_root={str(data_root) + '/'!r}, ann_file={ann!r}, "
              f"data_prefix=dict(img='images/')")
    body = (f"train_dataloader = {loader}))\n"
            f"val_dataloader = {loader}, bbox_file=None))\n"
            f"test_dataloader = val_dataloader\n"
            f"val_evaluator = dict(ann_file={str(data_root / ann)!r})\n"
            f"test_evaluator = val_evaluator\n")
    return write_derived_config(tmp_path / 'tiny_pose.py', base, body)


def test_coco_through_mmpose_train_tool(tmp_path, saip_checkpoints):
    """tools/train.py of mmpose, `--cfg-options pretrained=...`: weights, one step, COCO AP."""
    config = tiny_pose_config(tmp_path, COCO)
    log, probe = train_with_tool('mmpose', config, saip_checkpoints.tiny, tmp_path / 'work')
    # the override reached the model (the derived config's default does not exist)
    assert f'from {saip_checkpoints.tiny}' in log and 'loaded all' in log
    assert 'resized pos_embed (1, 129, 192) -> (1, 193, 192) (grid (16, 8) -> (16, 12)' in log
    # every backbone tensor comes from the checkpoint, pos_embed resized 16x8 -> 16x12 (256x192)
    assert probe.patch_resolution == (16, 12)
    assert_backbone_loaded(probe, saip_checkpoints.tiny)
    assert_trained_and_evaluated(probe, ['coco/AP'])
    assert is_finite_number(logged_metrics(tmp_path / 'work').get('coco/AP'))
    # the layer-wise lr decay of mmpose's constructor was used (its groups are printed)
    assert "'layer_decay_rate': 0.8" in log


def test_wholebody_in_process(tmp_path, saip_checkpoints):
    config = tiny_pose_config(tmp_path, WHOLEBODY, wholebody=True)
    runner, probe = train_in_process(config, saip_checkpoints.tiny, tmp_path / 'work')
    assert runner.model.head.out_channels == 133
    assert probe.patch_resolution == (16, 12)
    assert_backbone_loaded(probe, saip_checkpoints.tiny)
    assert_trained_and_evaluated(probe, ['coco-wholebody/AP'])
    hook = next(h for h in runner.hooks if type(h).__name__ == 'SAIPPretrainedHook')
    assert hook.report['resized']['pos_embed']['src_grid'] == (16, 8)
    # mmpose's LayerDecayOptimWrapperConstructor: lr scale 0.8 ** (13 - depth)
    scales = {round(g['lr_scale'], 6) for g in runner.optim_wrapper.param_groups
              if 'lr_scale' in g}
    assert len(scales) == 14 and max(scales) == 1.0 and min(scales) == round(0.8**13, 6)


def test_full_pretraining_checkpoint_stops_training(tmp_path, saip_checkpoints):
    """Through the Runner: an error before the first step, not random weights and a warning
    (every other wrong-file case: tests/test_projects/test_pretrained_loading.py)."""
    config = tiny_pose_config(tmp_path, COCO)
    with pytest.raises(ValueError, match='is a full SAIP pretraining checkpoint') as info:
        train_in_process(config, saip_checkpoints.full, tmp_path / 'work')
    assert str(saip_checkpoints.full) in str(info.value)
    assert 'saip_to_backbone.py' in str(info.value)
    assert not (tmp_path / 'work' / 'probe_losses.json').exists()
