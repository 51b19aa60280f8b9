# mmpretrain's MAE on the demo's person crops, as the equal-budget baseline of
# tools/analysis_tools/compare_pretraining.py: ViT-Tiny/16 at the 256x128 person anchor (a 16x8
# grid), 75% masking, an 8-block 512-wide decoder, normalised-pixel L2 loss. The Rect* classes
# (saip_mm.models.baselines) only make the sin-cos position embeddings and the target patchify
# rectangular. Optimiser values are the SAIP demo config's (AdamW lr 2.5e-4, betas (0.9, 0.95),
# wd 0.05, no decay on norms, biases, position embeddings and tokens); the comparison tool
# overrides the iterations, batch, schedule end points, seed and data paths.
_base_ = ['../saip/_base_/default_runtime.py']

data_root = 'data/vtest/'

model = dict(
    type='MAE',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=False),  # LoadPersonImage already gives RGB
    backbone=dict(type='RectMAEViT', arch='deit-tiny', img_size=(256, 128), patch_size=16,
                  mask_ratio=0.75),
    neck=dict(type='RectMAEPretrainDecoder', grid=(16, 8), num_patches=128, patch_size=16,
              in_chans=3, embed_dim=192, decoder_embed_dim=512, decoder_depth=8,
              decoder_num_heads=16, mlp_ratio=4.),
    head=dict(type='RectMAEPretrainHead', norm_pix=True, patch_size=16,
              loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

train_pipeline = [
    # the dataset names a background for every sample; MAE never reads one: not decoded
    dict(type='LoadPersonImage', with_background=False),
    # MAE's crop (area 0.2-1.0, bicubic) with the person aspect ratio (w/h 0.4-0.6) of SAIP's
    # views, so that a crop is not squeezed into the 1:2 anchor
    dict(type='RandomResizedCrop', scale=(256, 128), crop_ratio_range=(0.2, 1.0),
         aspect_ratio_range=(0.4, 0.6), backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    pin_memory=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    # background=None (the person images) and with_background=False above: MAE decodes the
    # person image only
    dataset=dict(type='PersonImageDataset', data_root=data_root, ann_file='persons.txt',
                 background=None, pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2.5e-4 * 16 / 256 * 4, betas=(0.9, 0.95), weight_decay=0.05,
                   fused=True),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),
        }))
max_iters = 40
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', T_max=max_iters - 5, eta_min=0.0, by_epoch=False, begin=5,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='SafeCheckpointHook', interval=max_iters, by_epoch=False,
                    max_keep_ckpts=1))
custom_hooks = []  # no teacher: the default runtime's SAIPTeacherHook does not apply
env_cfg = dict(dist_cfg=dict(backend='gloo'))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=16)
