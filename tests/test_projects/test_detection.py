"""projects/detection: SAIP ViT-Tiny + simple feature pyramid in stock mmdet detectors."""
import json
from pathlib import Path

import torch

from projects_testlib import (ROOT, assert_backbone_loaded, assert_trained_and_evaluated,
                              is_finite_number, logged_metrics, random_image, train_in_process,
                              train_with_tool, write_derived_config)

CONFIGS = ROOT / 'projects' / 'detection' / 'configs'
CROWDHUMAN = CONFIGS / 'faster-rcnn_saip-vit-tiny_sfp_8xb2-30e_crowdhuman.py'
FASHIONPEDIA = CONFIGS / 'mask-rcnn_saip-vit-tiny_sfp_8xb2-12e_fashionpedia.py'
SCALE = (160, 128)  # the tests' Resize scale (w, h); the configs use 1400x800 / 1024x1024


def write_crowdhuman(root: Path) -> None:
    """CrowdHuman as released: Images/<ID>.jpg and annotation_{train,val}.odgt (one json per
    line, boxes x, y, w, h; a 'mask' box is an ignore region)."""
    lines = []
    for i in range(2):
        image_id = f'273271,c9db000d51{i:05d}'
        random_image(root / 'Images' / f'{image_id}.jpg', 96, 128, seed=i)
        people = [dict(tag='person', fbox=[10 + 50 * k, 12, 34, 70], vbox=[12 + 50 * k, 14, 30, 60],
                       hbox=[20 + 50 * k, 12, 14, 14], extra=dict(box_id=k, occ=0),
                       head_attr=dict(ignore=0, occ=0, unsure=0)) for k in range(2)]
        people.append(dict(tag='mask', fbox=[110, 60, 12, 20], vbox=[110, 60, 12, 20],
                           hbox=[110, 60, 6, 6], extra=dict(box_id=2, ignore=1),
                           head_attr={}))
        lines.append(json.dumps(dict(ID=image_id, gtboxes=people)))
    for split in ('train', 'val'):
        (root / f'annotation_{split}.odgt').write_text('\n'.join(lines) + '\n')


def write_fashionpedia(root: Path) -> None:
    """Fashionpedia as released: {train,test}/*.jpg and instances_attributes_*2020.json (COCO
    format, category ids 0-45, polygons and uncompressed RLE, attribute ids)."""
    from mmengine.config import Config
    classes = Config.fromfile(str(FASHIONPEDIA)).metainfo['classes']
    categories = [dict(id=i, name=name, supercategory='x', level=2, taxonomy_id=str(i))
                  for i, name in enumerate(classes)]
    for split, folder in (('train', 'train'), ('val', 'test')):
        images, annotations = [], []
        for i in range(1, 3):
            name = f'{split}_{i}.jpg'
            random_image(root / folder / name, 96, 128, seed=i)
            images.append(dict(id=i, file_name=name, width=128, height=96))
            annotations.append(dict(  # a dress (10) as a polygon
                id=2 * i, image_id=i, category_id=10, iscrowd=0, bbox=[20, 10, 40, 70],
                area=2800, attribute_ids=[115],
                segmentation=[[20, 10, 60, 10, 60, 80, 20, 80]]))
            # a sleeve (31) as uncompressed RLE: column-major runs, zeros first; columns
            # 70-98 hold ones on rows 20-59
            counts = [70 * 96 + 20, 40] + [36 + 20, 40] * 28 + [36 + 29 * 96]
            assert sum(counts) == 96 * 128
            annotations.append(dict(
                id=2 * i + 1, image_id=i, category_id=31, iscrowd=0, bbox=[70, 20, 29, 40],
                area=1160, attribute_ids=[], segmentation=dict(size=[96, 128], counts=counts)))
        (root / f'instances_attributes_{split}2020.json').write_text(json.dumps(dict(
            images=images, annotations=annotations, categories=categories, attributes=[])))


def tiny_detection_config(tmp_path: Path, base: Path) -> Path:
    data_root = tmp_path / 'data'
    is_crowdhuman = base is CROWDHUMAN
    (write_crowdhuman if is_crowdhuman else write_fashionpedia)(data_root)
    with_mask = ', with_mask=True' if not is_crowdhuman else ''
    val_ann = 'annotation_val.odgt' if is_crowdhuman else 'instances_attributes_val2020.json'
    evaluator = "dict(num_ji_process=1, " if is_crowdhuman else 'dict('
    # Fewer proposals and boxes than the configs (tiny images, CPU). Random weights score
    # about 1/47 per Fashionpedia class, under the config's 0.05: keep every box so the COCO
    # evaluator gets results.
    score_thr = 0.01 if is_crowdhuman else 0.0
    sizes = (f"model = dict(train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), "
             f"rcnn=dict(sampler=dict(num=64))), test_cfg=dict(rpn=dict(nms_pre=200, "
             f"max_per_img=50), rcnn=dict(score_thr={score_thr}, max_per_img=20)))")
    body = f"""
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True{with_mask}),
    dict(type='Resize', scale={SCALE!r}, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={SCALE!r}, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True{with_mask}),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={str(data_root) + '/'!r}, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={str(data_root) + '/'!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = {evaluator}ann_file={str(data_root / val_ann)!r})
test_evaluator = val_evaluator
{sizes}"""
    return write_derived_config(tmp_path / 'tiny_detection.py', base, body)


def test_crowdhuman_through_mmdet_train_tool(tmp_path, saip_checkpoints):
    """tools/train.py of mmdet, `--cfg-options pretrained=...`: weights, one step, AP/MR/JI."""
    config = tiny_detection_config(tmp_path, CROWDHUMAN)
    log, probe = train_with_tool('mmdet', config, saip_checkpoints.tiny, tmp_path / 'work')
    assert f'from {saip_checkpoints.tiny}' in log and 'loaded all' in log
    # position embeddings stay on the pretraining grid (resized per input in forward)
    assert probe.patch_resolution == (16, 8)
    assert_backbone_loaded(probe, saip_checkpoints.tiny)
    metrics = ('crowd_human/mAP', 'crowd_human/mMR', 'crowd_human/JI')
    assert_trained_and_evaluated(probe, metrics)
    assert all(is_finite_number(logged_metrics(tmp_path / 'work').get(m)) for m in metrics)


def test_fashionpedia_in_process(tmp_path, saip_checkpoints):
    config = tiny_detection_config(tmp_path, FASHIONPEDIA)
    runner, probe = train_in_process(config, saip_checkpoints.tiny, tmp_path / 'work')
    model = runner.model
    assert type(model.neck).__name__ == 'SimpleFeaturePyramid'
    assert len(runner.val_dataloader.dataset.metainfo['classes']) == 46
    assert model.roi_head.bbox_head.num_classes == model.roi_head.mask_head.num_classes == 46
    assert_backbone_loaded(probe, saip_checkpoints.tiny)
    assert_trained_and_evaluated(probe, ['coco/bbox_mAP', 'coco/segm_mAP'])


def test_simple_feature_pyramid_levels():
    from mmengine.registry import MODELS
    import saip_mm.models.necks  # noqa: F401
    neck = MODELS.build(dict(type='SimpleFeaturePyramid', in_channels=192, out_channels=32))
    outs = neck([torch.randn(2, 192, 6, 4)])  # a stride-16 map of a 96x64 image
    assert [tuple(o.shape[2:]) for o in outs] == [(24, 16), (12, 8), (6, 4), (3, 2), (2, 1)]
    assert all(o.shape[:2] == (2, 32) for o in outs)
