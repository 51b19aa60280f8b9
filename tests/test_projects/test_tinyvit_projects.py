"""The TinyViT-5M downstream configs: a converted SAIP TinyViT checkpoint in stock mmpretrain
``TinyViT`` backbones, one training iteration and validation through each library's own
tools/train.py (pose, parsing, detection, ReID, attributes), on tiny data in the real layouts."""
import json
from pathlib import Path

import pytest
import torch

from projects_testlib import (ROOT, _converter, assert_trained_and_evaluated, random_image,
                              train_with_tool, write_derived_config)
from test_detection import write_crowdhuman
from test_parsing import tiny_parsing_config
from test_pose import tiny_pose_config

POSE = ROOT / 'projects' / 'pose' / 'configs' / 'td-hm_saip-tinyvit-5m_8xb64-210e_coco-256x192.py'
LIP = ROOT / 'projects' / 'parsing' / 'configs' / 'saip-tinyvit-5m_upernet_4xb4-80k_lip-512x512.py'
CROWDHUMAN = (ROOT / 'projects' / 'detection' / 'configs' /
              'faster-rcnn_saip-tinyvit-5m_fpn_8xb2-30e_crowdhuman.py')
MARKET = (ROOT / 'projects' / 'reid' / 'configs' /
          'reid_saip-tinyvit-5m_1xb64-pk16x4-120e_market1501-256x128.py')
PA100K = (ROOT / 'projects' / 'attributes' / 'configs' /
          'par_saip-tinyvit-5m_1xb64-30e_pa100k-256x128.py')


@pytest.fixture(scope='module')
def tinyvit_checkpoint(tmp_path_factory) -> Path:
    """A SAIP TinyViT-5M pretraining checkpoint as the Runner writes it, converted by
    tools/model_converters/saip_to_backbone.py (every teacher tensor made informative)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    import saip_mm  # noqa: F401
    torch.manual_seed(0)
    # an earlier in-process test may have left another library's default scope current
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='mmpretrain.SAIP', backbone=dict(type='SAIPTinyViT', arch='5m'),
            csm_head=dict(type='CSMHead', in_channels=320, hidden_channels=64,
                          bottleneck_channels=32, out_channels=256,
                          loss=dict(type='CSMLoss', attn_loss_weight=0.0)),
            csr_head=None, css_head=None))
    model.init_weights()
    with torch.no_grad():
        for p in model.teacher['backbone'].parameters():
            p.add_(torch.randn_like(p) * 0.01)
    root = tmp_path_factory.mktemp('saip_tinyvit')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), root / 'full.pth')
    _converter().convert(str(root / 'full.pth'), str(root / 'saip_tinyvit-5m.pth'))
    return root / 'saip_tinyvit-5m.pth'


def assert_tinyvit_loaded(log: str, probe, checkpoint: Path, keep_init=()) -> None:
    """Every checkpoint tensor is in the backbone unchanged; the only others are the config's
    ``keep_init`` norms (extra outputs), logged as such."""
    assert f'from {checkpoint}' in log and 'loaded all' in log
    expected = {k[len('backbone.'):]: v for k, v in
                torch.load(checkpoint, weights_only=True)['state_dict'].items()}
    state = probe.backbone_state
    assert set(expected) <= set(state)
    extra = sorted(set(state) - set(expected))
    assert extra == sorted(k for k in state if keep_init and k.startswith(tuple(keep_init)))
    if keep_init:
        assert 'kept their own init (not pretrained by design): ' + ', '.join(extra) in log
    for name, value in expected.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)


def test_pose_coco_through_mmpose_train_tool(tmp_path, tinyvit_checkpoint):
    config = tiny_pose_config(tmp_path, POSE)
    log, probe = train_with_tool('mmpose', config, tinyvit_checkpoint, tmp_path / 'work')
    assert_tinyvit_loaded(log, probe, tinyvit_checkpoint)
    assert_trained_and_evaluated(probe, ['coco/AP'])


def test_parsing_lip_through_mmseg_train_tool(tmp_path, tinyvit_checkpoint):
    config = tiny_parsing_config(tmp_path, LIP)
    with open(config, 'a') as f:  # test images are padded to the tests' crop too
        f.write('model = dict(data_preprocessor=dict(size=crop_size, '
                'test_cfg=dict(size=crop_size)), backbone=dict(img_size=crop_size))\n')
    log, probe = train_with_tool('mmseg', config, tinyvit_checkpoint, tmp_path / 'work')
    assert_tinyvit_loaded(log, probe, tinyvit_checkpoint, ('norm0.', 'norm1.', 'norm2.'))
    assert_trained_and_evaluated(probe, ['mIoU'])


def test_detection_crowdhuman_through_mmdet_train_tool(tmp_path, tinyvit_checkpoint):
    data_root = tmp_path / 'data'
    write_crowdhuman(data_root)
    scale = (160, 128)  # (w, h); the config resizes into 1400x800 and pads to 1408x800
    pipeline = (f"dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True), "
                f"dict(type='Resize', scale={scale!r}, keep_ratio=True), "
                f"dict(type='Pad', size={scale!r}), ")
    body = f"""
model = dict(backbone=dict(img_size={scale[::-1]!r}),
             train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100),
                            rcnn=dict(sampler=dict(num=64))),
             test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50), rcnn=dict(max_per_img=20)))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root={str(data_root) + '/'!r},
    pipeline=[{pipeline}dict(type='PackDetInputs')]))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(
    data_root={str(data_root) + '/'!r},
    pipeline=[{pipeline}dict(type='PackDetInputs', meta_keys=('img_id', 'img_path',
              'ori_shape', 'img_shape', 'scale_factor'))]))
test_dataloader = val_dataloader
val_evaluator = dict(num_ji_process=1, ann_file={str(data_root / 'annotation_val.odgt')!r})
test_evaluator = val_evaluator
"""
    config = write_derived_config(tmp_path / 'tiny_detection.py', CROWDHUMAN, body)
    log, probe = train_with_tool('mmdet', config, tinyvit_checkpoint, tmp_path / 'work')
    assert_tinyvit_loaded(log, probe, tinyvit_checkpoint, ('norm0.', 'norm1.'))
    assert_trained_and_evaluated(
        probe, ['crowd_human/mAP', 'crowd_human/mMR', 'crowd_human/JI'])


def _classification_body(data_root: Path, sampler: str = '') -> str:
    loader = (f"dict(batch_size=4, num_workers=0, persistent_workers=False, "
              f"dataset=dict(data_root={str(data_root)!r}){sampler})")
    return (f"train_dataloader = {loader}\nval_dataloader = {loader.replace(sampler, '')}\n"
            f"test_dataloader = val_dataloader\n")


def test_reid_market1501_through_mmpretrain_train_tool(tmp_path, tinyvit_checkpoint):
    root = tmp_path / 'market1501'
    names = dict(  # 2 training identities x 2 images (one P x K = 2 x 2 batch), 2 queries
        bounding_box_train=['0002_c1s1_000451_03.jpg', '0002_c2s1_000551_01.jpg',
                            '0007_c3s1_000101_02.jpg', '0007_c4s1_000201_01.jpg'],
        query=['0001_c1s1_001051_00.jpg', '0003_c2s1_000101_00.jpg'],
        bounding_box_test=['0001_c2s1_000301_01.jpg', '0003_c5s1_000201_01.jpg',
                           '0000_c1s1_000151_01.jpg'])
    for folder, files in names.items():
        for i, name in enumerate(files):
            random_image(root / folder / name, 64, 32, seed=i)
    body = _classification_body(
        root, ', sampler=dict(num_identities=2, num_instances=2, seed=0)')
    config = write_derived_config(tmp_path / 'tiny_reid.py', MARKET, body)
    log, probe = train_with_tool('mmpretrain', config, tinyvit_checkpoint, tmp_path / 'work')
    assert_tinyvit_loaded(log, probe, tinyvit_checkpoint)
    assert_trained_and_evaluated(probe, ['reid/mAP', 'reid/rank-1'])


def test_attributes_pa100k_through_mmpretrain_train_tool(tmp_path, tinyvit_checkpoint):
    root = tmp_path / 'pa100k'
    classes = [f'attr{j}' for j in range(26)]
    for split, first in (('trainval', 1), ('test', 5)):
        data_list = []
        for i in range(first, first + 4):
            random_image(root / 'data' / f'{i:06d}.jpg', 64, 32, seed=i)
            data_list.append(dict(img_path=f'{i:06d}.jpg', gt_label=[i % 26, (3 * i) % 26]))
        (root / 'annotations').mkdir(exist_ok=True)
        (root / 'annotations' / f'{split}.json').write_text(json.dumps(dict(
            metainfo=dict(classes=classes, dataset_name='PA-100K'), data_list=data_list)))
    config = write_derived_config(tmp_path / 'tiny_par.py', PA100K, _classification_body(root))
    log, probe = train_with_tool('mmpretrain', config, tinyvit_checkpoint, tmp_path / 'work')
    assert_tinyvit_loaded(log, probe, tinyvit_checkpoint)
    assert_trained_and_evaluated(probe, ['attribute/mA'])
