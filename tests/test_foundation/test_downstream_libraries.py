"""Each downstream library builds a model from one of its own shipped configs and runs it.

The configs come from the installed package's ``.mim/configs`` folder, exactly what
``mim``/``mmpretrain::`` style inheritance would read. Pretrained weights are stripped (no
download); the models run on small CPU tensors and we check output shapes.
"""
import importlib
import os.path as osp
from typing import Any

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

import saip_mm  # noqa: F401  same import order as tools/train.py


def _shipped_config(package: str, relative_path: str) -> Config:
    module = importlib.import_module(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'configs', relative_path)
    assert osp.isfile(path), f'{package} does not ship {relative_path} (looked at {path})'
    return Config.fromfile(path)


def _strip_pretrained(cfg: Any) -> Any:
    """Drop every ``init_cfg`` / ``pretrained`` entry so building downloads nothing."""
    if isinstance(cfg, dict):
        return {k: _strip_pretrained(v) for k, v in cfg.items()
                if k not in ('init_cfg', 'pretrained')}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_strip_pretrained(v) for v in cfg)
    return cfg


def _build(package: str, scope: str, relative_path: str) -> torch.nn.Module:
    cfg = _shipped_config(package, relative_path)
    importlib.import_module(f'{package}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{package}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        # ConfigDict: detectors read their train/test cfg by attribute (test_cfg.rpn).
        model = registry.build(ConfigDict(_strip_pretrained(cfg.model.to_dict())))
    return model.eval()


@torch.no_grad()
def test_mmpretrain_deit_tiny():
    model = _build('mmpretrain', 'mmpretrain', 'deit/deit-tiny_4xb256_in1k.py')
    scores = model(torch.rand(1, 3, 224, 224), mode='tensor')
    assert scores.shape == (1, 1000)


@torch.no_grad()
def test_mmpose_vitpose_small_coco():
    model = _build('mmpose', 'mmpose',
                   'body_2d_keypoint/topdown_heatmap/coco/'
                   'td-hm_ViTPose-small_8xb64-210e_coco-256x192.py')
    assert type(model.backbone).__name__ == 'VisionTransformer'  # mmpretrain's, via scope
    heatmaps = model(torch.rand(1, 3, 256, 192), None, mode='tensor')
    assert heatmaps.shape == (1, 17, 64, 48)  # 17 COCO keypoints at 1/4 resolution


@torch.no_grad()
def test_mmdet_crowddet_crowdhuman_predict():
    """CrowdDet's predict runs the compiled RoIAlign and NMS of mmcv."""
    from mmcv.ops import RoIAlign
    from mmdet.structures import DetDataSample
    torch.manual_seed(0)
    model = _build('mmdet', 'mmdet', 'crowddet/crowddet-rcnn_r50_fpn_8xb2-30e_crowdhuman.py')
    assert isinstance(model.roi_head.bbox_roi_extractor.roi_layers[0], RoIAlign)
    height, width = 128, 128
    sample = DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
        batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))
    results = model.predict(torch.rand(1, 3, height, width), [sample], rescale=False)
    instances = results[0].pred_instances
    num = len(instances)
    # Untrained: scores hover near 0.5, far above test_cfg.rcnn.score_thr=0.01, so boxes survive.
    assert 0 < num <= 500  # test_cfg.rcnn.max_per_img
    assert instances.bboxes.shape == (num, 4) and instances.scores.shape == (num, )
    assert (instances.bboxes[:, 2:] >= instances.bboxes[:, :2]).all()


@torch.no_grad()
def test_mmseg_segformer_b0_ade20k():
    model = _build('mmseg', 'mmseg', 'segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py')
    logits = model(torch.rand(1, 3, 64, 64), None, mode='tensor')
    assert logits.shape == (1, 150, 16, 16)  # 150 ADE20K classes at 1/4 resolution
