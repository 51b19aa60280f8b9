# Pedestrian detection on CrowdHuman (full-body boxes) with a SAIP ViT-Tiny backbone, ViTDet's
# simple feature pyramid and Faster R-CNN; evaluated with mmdet's CrowdHumanMetric (AP, MR^-2,
# JI). Data and schedule follow mmdet's crowddet-rcnn_r50_fpn_8xb2-30e_crowdhuman.py.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py', 'mmdet::_base_/default_runtime.py'
]

# The SAIP backbone checkpoint: the output of tools/model_converters/saip_to_backbone.py.
# Switch it here or with `--cfg-options pretrained=PATH`; SAIPPretrainedHook loads it strictly.
pretrained = 'checkpoints/saip_vit-tiny_lup1m.pth'

custom_imports = dict(
    imports=['saip_mm', 'saip_mm.engine.hooks.pretrained_hook', 'saip_mm.models.necks'],
    allow_failed_imports=False)
custom_hooks = [dict(type='SAIPPretrainedHook', src_grid=(16, 8))]

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='deit-tiny',  # 192 wide, 12 blocks, 3 heads
        # The pretraining anchor: as in ViTDet, the position embeddings keep the pretraining
        # grid and are resized in 2-D (bicubic) to each input's grid in forward.
        img_size=(256, 128),
        patch_size=16,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        drop_path_rate=0.1,
        out_type='featmap'),  # (B, 192, H/16, W/16)
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',  # strides 4, 8, 16, 32 (+ 64 pooled) for RPN and RoI heads
        in_channels=192,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5),
    rpn_head=dict(
        # upright pedestrians: tall anchors (h/w 1, 2, 3), as in mmdet's CrowdHuman configs
        anchor_generator=dict(ratios=[1.0, 2.0, 3.0])),
    roi_head=dict(bbox_head=dict(num_classes=1)),
    test_cfg=dict(
        rpn=dict(nms_pre=1200, max_per_img=1000),
        # crowded scenes: keep many boxes, the metrics sweep the score
        rcnn=dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.5), max_per_img=500)))

dataset_type = 'CrowdHumanDataset'
data_root = 'data/CrowdHuman/'
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1400, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1400, 800), keep_ratio=True),
    # annotations after Resize: the metric compares with boxes at the original scale
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotation_train.odgt',
        data_prefix=dict(img='Images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotation_val.odgt',
        data_prefix=dict(img='Images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CrowdHumanMetric',
    ann_file=data_root + 'annotation_val.odgt',
    metric=['AP', 'MR', 'JI'],
    backend_args=backend_args)
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=30, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=800),
    dict(type='MultiStepLR', begin=0, end=30, by_epoch=True, milestones=[24, 27], gamma=0.1)
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    # no weight decay on norms, biases, position embeddings and the cls token
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }),
    clip_grad=dict(max_norm=1., norm_type=2))
auto_scale_lr = dict(base_batch_size=16)
