# Pedestrian attribute recognition on a ViT-Tiny/16 at 256x128: linear + BatchNorm logits, one
# sigmoid per attribute, BCE weighted against attribute imbalance (the strong baseline of
# Jia et al. 2021: exp(1 - r) for positives, exp(r) for negatives, r = the attribute's positive
# ratio in the training set, filled in by AttributePosRatioHook). SGD, 1 warm-up epoch, cosine
# over 30 epochs, batch 64; trained on train+val, evaluated on test (mA, instance accuracy,
# precision, recall, F1 by saip_mm.evaluation.AttributeMetric).
#
# The dataset configs next to this file set `data_root`, the dataset type, the number of
# attributes and `pretrained` (the converted SAIP backbone).
default_scope = 'mmpretrain'
# Until saip_mm/__init__.py imports these modules itself, they are listed one by one.
custom_imports = dict(
    imports=[
        'saip_mm', 'saip_mm.datasets.attributes', 'saip_mm.evaluation',
        'saip_mm.models.heads.attribute_head', 'saip_mm.models.losses.weighted_bce_loss',
        'saip_mm.engine.hooks.pretrained_hook',
        'saip_mm.engine.hooks.attribute_pos_ratio_hook'
    ],
    allow_failed_imports=False)

embed_dims = 192

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='deit-tiny',
        img_size=(256, 128),
        patch_size=16,
        out_type='cls_token',
        norm_cfg=dict(type='LN', eps=1e-6),
        drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='AttributeHead',
        in_channels=embed_dims,
        num_classes=26,  # set by the dataset config
        with_bn=True,
        loss=dict(type='WeightedBCELoss', weighting='exp'),
        thr=0.5))

data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 256), interpolation='bicubic'),  # scale is (w, h)
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomCrop', crop_size=(256, 128), padding=10),  # crop_size is (h, w)
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 256), interpolation='bicubic'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(split='trainval', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(split='test', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='AttributeMetric', thr=0.5)
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=29, eta_min=1e-6, by_epoch=True, begin=1, end=30,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=30, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64, enable=False)

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic writes: a killed run never leaves a truncated newest checkpoint
    checkpoint=dict(type='SafeCheckpointHook', interval=5, max_keep_ckpts=2,
                    save_best='attribute/mA', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
