# Person ReID on a ViT-Tiny/16 at 256x128: BNNeck head (ID loss with label smoothing 0.1 +
# batch-hard triplet, margin 0.3), P x K = 16 x 4 identity batches, SGD with 5 warm-up epochs
# and cosine decay over 120 epochs (a BoT / TransReID-style recipe; the SAIP method document
# fixes the datasets and metrics, not these hyperparameters). Retrieval by cosine distance on
# the BN feature, Market-1501 protocol (saip_mm.evaluation.ReIDMetric).
#
# The dataset configs next to this file set `data_root`, the dataset type, the number of
# training identities and `pretrained` (the converted SAIP backbone).
default_scope = 'mmpretrain'
# Until saip_mm/__init__.py imports these modules itself, they are listed one by one.
custom_imports = dict(
    imports=[
        'saip_mm', 'saip_mm.datasets.reid', 'saip_mm.datasets.samplers', 'saip_mm.evaluation',
        'saip_mm.models.heads.reid_head', 'saip_mm.models.losses.triplet_loss',
        'saip_mm.engine.hooks.pretrained_hook'
    ],
    allow_failed_imports=False)

num_identities = 16  # P
num_instances = 4  # K
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
        type='ReIDHead',
        in_channels=embed_dims,
        num_classes=751,  # set by the dataset config
        loss_id=dict(type='LabelSmoothLoss', label_smooth_val=0.1, loss_weight=1.0),
        loss_triplet=dict(type='TripletLoss', margin=0.3, loss_weight=1.0),
        test_feature='bn'))

data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)

# ReIDMetric reads pid / camid / split from the data samples.
meta_keys = ('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'flip', 'pid', 'camid', 'split')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 256), interpolation='bicubic'),  # scale is (w, h)
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomCrop', crop_size=(256, 128), padding=10),  # crop_size is (h, w)
    # random erasing (Zhong et al.) filled with the ImageNet mean, in BGR like the image here
    dict(type='RandomErasing', erase_prob=0.5, mode='const', fill_color=(104, 116, 124)),
    dict(type='PackInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 256), interpolation='bicubic'),
    dict(type='PackInputs', meta_keys=meta_keys),
]

train_dataloader = dict(
    batch_size=num_identities * num_instances,  # must equal P x K
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='IdentitySampler', num_identities=num_identities,
                 num_instances=num_instances),
    collate_fn=dict(type='default_collate'),
    dataset=dict(split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(split='test', pipeline=test_pipeline))  # query + gallery
test_dataloader = val_dataloader
val_evaluator = dict(type='ReIDMetric', dist='cosine', topk=(1, 5, 10))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.008, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=115, eta_min=1e-6, by_epoch=True, begin=5, end=120,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=120, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64, enable=False)

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic writes: a killed run never leaves a truncated newest checkpoint
    checkpoint=dict(type='SafeCheckpointHook', interval=10, max_keep_ckpts=2,
                    save_best='reid/mAP', rule='greater'),
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
