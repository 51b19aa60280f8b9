# A toy image classifier for wiring tests and the smoke demo: a 2-layer, 32-dim ViT on 32x32
# images, 2 iterations of batch 2, a checkpoint every iteration. It exercises the whole path
# a real config takes (registries, Runner, optimizer, schedulers, message hub, checkpoints,
# --resume) in seconds on a CPU. It is not a recipe and learns nothing useful.
#
# data_root must point at a folder of class subfolders (``<root>/<class>/<image>.png``),
# e.g. from tests/test_foundation or tools/demo.sh; pass it on the command line:
#   --cfg-options train_dataloader.dataset.data_root=DIR test_dataloader.dataset.data_root=DIR
default_scope = 'mmpretrain'
custom_imports = dict(imports=['saip_mm'], allow_failed_imports=False)

data_root = 'data/toy_generated'
num_classes = 2

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=32,
        patch_size=8,
        drop_rate=0.0,
        drop_path_rate=0.0),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=num_classes,
        in_channels=32,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='PackInputs'),
]

# num_workers=0: worker processes would cost more start-up time than the 2 iterations take.
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
val_dataloader = None
val_evaluator = None
val_cfg = None

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0))
# Warm-up then cosine, so that --resume has scheduler state worth restoring.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=2, end=100),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
log_processor = dict(by_epoch=False)

# On CPU-only machines tools/train.py replaces nccl by gloo (saip_mm/utils/cpu_distributed.py).
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
