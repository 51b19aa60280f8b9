# Top-down heatmap pose estimation on COCO keypoints, 256x192, with a SAIP ViT-Tiny backbone.
# Mirrors mmpose's td-hm_ViTPose-small_8xb64-210e_coco-256x192.py (HeatmapHead with two deconvs,
# UDP codec, layer-wise lr decay); only the backbone and its checkpoint differ.
_base_ = ['mmpose::_base_/default_runtime.py']

# The SAIP backbone checkpoint: the output of tools/model_converters/saip_to_backbone.py.
# Switch it here or with `--cfg-options pretrained=PATH`; SAIPPretrainedHook loads it strictly.
pretrained = 'checkpoints/saip_vit-tiny_lup1m.pth'

custom_imports = dict(
    imports=[
        'saip_mm', 'saip_mm.engine.hooks.pretrained_hook',
        'mmpose.engine.optim_wrappers.layer_decay_optim_wrapper'
    ],
    allow_failed_imports=False)
custom_hooks = [
    dict(type='SyncBuffersHook'),
    # Loads `pretrained` into model.backbone; SAIP position embeddings are learned on the
    # 256x128 anchor, a 16x8 grid, and are resized in 2-D to this config's 16x12 grid.
    dict(type='SAIPPretrainedHook', src_grid=(16, 8)),
]

# runtime
train_cfg = dict(max_epochs=210, val_interval=10)

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.1),
    # mmpose's constructor: lr scale decay_rate ** (13 - layer_id) per ViT block; no weight
    # decay on biases, norms and position embeddings.
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.8),
    constructor='LayerDecayOptimWrapperConstructor',
    clip_grad=dict(max_norm=1., norm_type=2),
)

param_scheduler = [
    dict(type='LinearLR', begin=0, end=500, start_factor=0.001, by_epoch=False),  # warm-up
    dict(type='MultiStepLR', begin=0, end=210, milestones=[170, 200], gamma=0.1, by_epoch=True)
]

auto_scale_lr = dict(base_batch_size=512)

default_hooks = dict(checkpoint=dict(save_best='coco/AP', rule='greater', max_keep_ckpts=1))

# codec settings
codec = dict(type='UDPHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)

# model settings
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        # The stock mmpretrain ViT; SAIP checkpoints use its parameter names.
        type='mmpretrain.VisionTransformer',
        arch='deit-tiny',  # 192 wide, 12 blocks, 3 heads
        img_size=(256, 192),
        patch_size=16,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        drop_path_rate=0.1,
        # SAIP pretrains with a cls token; keeping it uses every pretrained tensor.
        with_cls_token=True,
        out_type='featmap'),  # (B, 192, 16, 12)
    head=dict(
        type='HeatmapHead',
        in_channels=192,
        out_channels=17,
        deconv_out_channels=(256, 256),
        deconv_kernel_sizes=(4, 4),
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=False))

# base dataset settings
data_root = 'data/coco/'
dataset_type = 'CocoDataset'
data_mode = 'topdown'

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PackPoseInputs')
]

train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/person_keypoints_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline,
    ))
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/person_keypoints_val2017.json',
        # person boxes of a detector (AP 56 on COCO val), as in mmpose's COCO configs; mmpose
        # does not join bbox_file with data_root: override it with data_root (README)
        bbox_file=data_root + 'person_detection_results/'
        'COCO_val2017_detections_AP_H_56_person.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=val_pipeline,
    ))
test_dataloader = val_dataloader

# No ann_file: a test-mode mmpose dataset publishes its ann_file (joined with its data_root) and
# CocoMetric reads it from there, so the metric follows val_dataloader.dataset.data_root.
val_evaluator = dict(type='CocoMetric')
test_evaluator = val_evaluator
