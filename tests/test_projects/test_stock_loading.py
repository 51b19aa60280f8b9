"""Converted SAIP checkpoints in configs with no saip_mm code, and mmseg's `model.pretrained`.

- mmpose's own ViTPose config (256×192) and an mmseg UperNet config (512×512) built from mmseg's
  own base file, both with a stock ``mmpretrain.VisionTransformer`` and
  ``init_cfg=dict(type='Pretrained')``, load a checkpoint written by
  ``saip_to_backbone.py --img-size``; checked in a fresh interpreter that never imports saip_mm,
  tensor by tensor.
- The parsing configs accept mmseg's ``model.pretrained=PATH``.
"""
import runpy
import subprocess
import sys
from types import SimpleNamespace

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmpretrain.models.utils import resize_pos_embed

from projects_testlib import CONVERTER, ROOT

LIP = ROOT / 'projects' / 'parsing' / 'configs' / 'saip-vit-tiny_upernet_4xb4-80k_lip-512x512.py'

# Runs in a fresh interpreter: saip_mm must not be imported (it patches the stock ViT loader).
STOCK_SCRIPT = r'''
import sys
import torch
from mmengine.config import Config

pose_ckpt, seg_ckpt, seg_config = sys.argv[1:4]


def verify(backbone, path):
    """Every tensor of the built backbone equals the file's (no resize happened on load)."""
    stored = {k[len('backbone.'):]: v for k, v in
              torch.load(path, weights_only=True)['state_dict'].items()}
    state = backbone.state_dict()
    for name, value in state.items():
        expected = stored[name]
        if name == 'pos_embed' and backbone.cls_token is None:
            expected = expected[:, 1:]  # the stock loader drops the cls position
        assert torch.equal(value, expected), name
    return len(state), sorted(set(stored) - set(state))


import os.path as osp

import mmpose
from mmpose.registry import MODELS as POSE_MODELS
from mmpose.utils import register_all_modules
register_all_modules()
cfg = Config.fromfile(osp.join(osp.dirname(mmpose.__file__), '.mim', 'configs', 'body_2d_keypoint',
                               'topdown_heatmap', 'coco',
                               'td-hm_ViTPose-small_8xb64-210e_coco-256x192.py'))
cfg.model.backbone.arch = dict(embed_dims=192, num_layers=12, num_heads=3,
                               feedforward_channels=768)  # ViT-Tiny instead of -Small
cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=pose_ckpt, prefix='backbone.')
cfg.model.head.in_channels = 192
pose = POSE_MODELS.build(cfg.model)
pose.init_weights()
n, extra = verify(pose.backbone, pose_ckpt)
print('pose', tuple(pose.backbone.patch_resolution), n, extra)

from mmseg.registry import MODELS as SEG_MODELS
from mmseg.utils import register_all_modules
register_all_modules()
cfg = Config.fromfile(seg_config)
seg = SEG_MODELS.build(cfg.model)
seg.init_weights()
n, extra = verify(seg.backbone, seg_ckpt)
print('seg', tuple(seg.backbone.patch_resolution), n, extra)
print('saip_mm imported:', any(m.startswith('saip_mm') for m in sys.modules))
'''

SEG_CONFIG = '''
_base_ = ['mmseg::_base_/models/upernet_mae.py']
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='deit-tiny',
        img_size=(512, 512),
        patch_size=16,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        out_indices=(3, 5, 7, 11),
        out_type='featmap',
        init_cfg=dict(type='Pretrained', checkpoint={ckpt!r}, prefix='backbone.')),
    neck=dict(embed_dim=192, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=64, num_classes=20,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=192, channels=32, num_classes=20, norm_cfg=norm_cfg))
'''


def test_stock_pose_and_seg_configs_load_a_converted_checkpoint(saip_checkpoints, tmp_path):
    convert = runpy.run_path(str(CONVERTER))['convert']
    pose_ckpt, seg_ckpt = tmp_path / 'saip_256x192.pth', tmp_path / 'saip_512x512.pth'
    convert(str(saip_checkpoints.full), str(pose_ckpt), img_size=(256, 192))
    convert(str(saip_checkpoints.full), str(seg_ckpt), img_size=(512, 512))
    seg_config = tmp_path / 'upernet_saip-vit-tiny_512x512.py'
    seg_config.write_text(SEG_CONFIG.format(ckpt=str(seg_ckpt)))
    res = subprocess.run([sys.executable, '-c', STOCK_SCRIPT, str(pose_ckpt), str(seg_ckpt),
                          str(seg_config)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    # ViTPose: no cls token (its tensor is the one left over), 16x12 grid
    assert "pose (16, 12) 149 ['cls_token']" in lines
    assert 'seg (32, 32) 150 []' in lines
    assert 'saip_mm imported: False' in lines
    # the files hold the anchor positions resized once, in 2-D, as the loader would
    anchor = torch.load(saip_checkpoints.tiny, weights_only=True)['state_dict']['backbone.pos_embed']
    seg_pos = torch.load(seg_ckpt, weights_only=True)['state_dict']['backbone.pos_embed']
    assert torch.equal(seg_pos, resize_pos_embed(anchor, (16, 8), (32, 32), 'bicubic', 1))


def _parsing_model(pretrained):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(LIP))
    # what `--cfg-options model.pretrained=PATH` does (plus a small crop for the test)
    cfg.merge_from_dict({'model.pretrained': pretrained, 'model.backbone.img_size': (128, 128),
                         'model.data_preprocessor.size': (128, 128)})
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def test_parsing_config_takes_mmseg_model_pretrained(saip_checkpoints):
    from saip_mm.engine.hooks.pretrained_hook import SAIPPretrainedHook
    model = _parsing_model(str(saip_checkpoints.tiny))
    # the config-wide default names a file that does not exist: model.pretrained wins, and
    # the hook leaves the loading to the backbone
    runner = SimpleNamespace(cfg=Config(dict(pretrained='/nonexistent/default.pth')), model=model,
                             logger=MMLogger.get_current_instance())
    hook = SAIPPretrainedHook(src_grid=(16, 8))
    hook.before_run(runner)
    model.init_weights()
    hook.before_train(runner)
    assert hook.checkpoint == str(saip_checkpoints.tiny)
    stored = {k[len('backbone.'):]: v for k, v in
              torch.load(saip_checkpoints.tiny, weights_only=True)['state_dict'].items()}
    state = model.backbone.state_dict()
    assert hook.report['loaded'] == sorted(state) == sorted(stored)
    for name, value in state.items():
        expected = stored[name]
        if name == 'pos_embed':  # 16x8 anchor -> 8x8 grid of the 128x128 test crop
            expected = resize_pos_embed(expected, (16, 8), (8, 8), 'bicubic', 1)
        assert torch.equal(value, expected), name
