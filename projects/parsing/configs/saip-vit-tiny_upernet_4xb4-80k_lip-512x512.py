# Human parsing on LIP (20 classes) with a SAIP ViT-Tiny backbone and a UperNet decoder.
# Form of mmseg's MAE/BEiT + UperNet configs: features of blocks 4, 6, 8 and 12, rescaled x4,
# x2, x1, x0.5 by mmseg's Feature2Pyramid (a simple feature pyramid), then UPerHead.
_base_ = [
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]

# The SAIP backbone checkpoint: the output of tools/model_converters/saip_to_backbone.py.
# Switch it here or with `--cfg-options pretrained=PATH`; SAIPPretrainedHook loads it strictly.
pretrained = 'checkpoints/saip_vit-tiny_lup1m.pth'

custom_imports = dict(
    imports=['saip_mm', 'saip_mm.engine.hooks.pretrained_hook'], allow_failed_imports=False)
custom_hooks = [
    # SAIP position embeddings are learned on a 16x8 grid (256x128 anchor); resized in 2-D to
    # the crop's 32x32 grid when loaded.
    dict(type='SAIPPretrainedHook', src_grid=(16, 8)),
]

crop_size = (512, 512)
num_classes = 20
norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN when not distributed
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        # mmpretrain's VisionTransformer (same parameters) that also takes mmseg's
        # `model.pretrained=PATH`; the top-level `pretrained` above is the default.
        type='mmpretrain.PretrainedVisionTransformer',
        arch='deit-tiny',  # 192 wide, 12 blocks, 3 heads
        img_size=crop_size,
        patch_size=16,
        qkv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        drop_path_rate=0.1,
        out_indices=(3, 5, 7, 11),
        out_type='featmap'),  # 4 x (B, 192, 32, 32)
    neck=dict(
        type='Feature2Pyramid', embed_dim=192, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[192, 192, 192, 192],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=256,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=192,
        in_index=2,
        channels=128,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# Left/right part labels trade places when the image is flipped horizontally.
flip_label_pairs = [(14, 15), (16, 17), (18, 19)]  # arms, legs, shoes

dataset_type = 'LIPDataset'
data_root = 'data/LIP/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5, swap_seg_labels=flip_label_pairs),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    # annotations after Resize: metrics are computed at the original resolution
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='train_images', seg_map_path='train_segmentations'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='val_images', seg_map_path='val_segmentations'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # no weight decay on norms, biases, position embeddings and the cls token
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=80000, by_epoch=False)
]
