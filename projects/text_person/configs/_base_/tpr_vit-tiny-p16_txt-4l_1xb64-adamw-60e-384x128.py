# Text-based person retrieval: a dual encoder trained with the SDM loss (IRRA) + an identity loss.
# Image tower: ViT-Tiny/16 at 384x128 (the input size of IRRA-style methods; the SAIP position
# embeddings, learned on the 16x8 grid of 256x128, are resized in 2-D to 24x8 when loaded).
# Text tower: a 4-layer, 256-wide Transformer trained from scratch on a word vocabulary built
# from the training captions (TextVocabularyHook writes it to <work_dir>/text_vocab.json).
# 60 epochs, 5 warm-up, cosine (IRRA's schedule); AdamW, batch 64 of (image, caption) pairs.
# The SAIP method document fixes the datasets and the metric (rank-1), not these hyperparameters.
#
# The dataset configs next to this file set `data_root`, the dataset type, the number of
# training identities and `pretrained` (the converted SAIP backbone).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['saip_mm'], allow_failed_imports=False)

embed_dims = 256

model = dict(
    type='TextPersonRetriever',
    backbone=dict(
        type='VisionTransformer',
        arch='deit-tiny',
        img_size=(384, 128),
        patch_size=16,
        out_type='cls_token',
        norm_cfg=dict(type='LN', eps=1e-6),
        drop_path_rate=0.1),
    text_encoder=dict(
        type='TransformerTextEncoder',
        vocab_size=10000,  # embedding rows: the largest vocabulary
        min_freq=2,  # rarer training words become <unk>
        max_length=77,
        width=256,
        num_layers=4,
        num_heads=4,
        dropout=0.1),
    # Option: a Hugging Face text model the user already has, read from a local folder only:
    # text_encoder=dict(_delete_=True, type='HFTextEncoder', model_dir='checkpoints/bert-base-uncased'),
    embed_dims=embed_dims,
    num_classes=11003,  # training identities, set by the dataset config
    loss_sdm=dict(type='SDMLoss', temperature=0.02, loss_weight=1.0),
    loss_id=dict(type='CrossEntropyLoss', loss_weight=1.0))

data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 384), interpolation='bicubic'),  # scale is (w, h)
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomCrop', crop_size=(384, 128), padding=10),  # crop_size is (h, w)
    dict(type='RandomErasing', erase_prob=0.5, mode='const', fill_color=(104, 116, 124)),
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'flip', 'caption',
                    'pid')),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 384), interpolation='bicubic'),
    dict(type='PackInputs',
         meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape', 'captions', 'pid')),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(split='val', pipeline=test_pipeline))  # one sample per image, all its captions
test_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(split='test', pipeline=test_pipeline))
val_evaluator = dict(type='TextPersonRetrievalMetric', topk=(1, 5, 10))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
            'token_embed': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=55, eta_min=1e-6, by_epoch=True, begin=5, end=60,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=60, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64, enable=False)

# SAIPPretrainedHook loads `pretrained` into model.backbone, strictly (SAIP position
# embeddings: 16x8 grid); TextVocabularyHook builds the text vocabulary.
custom_hooks = [
    dict(type='SAIPPretrainedHook', src_grid=(16, 8)),
    dict(type='TextVocabularyHook'),
]
default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic writes: a killed run never leaves a truncated newest checkpoint
    checkpoint=dict(type='SafeCheckpointHook', interval=5, max_keep_ckpts=2,
                    save_best='t2i/rank-1', rule='greater'),
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
