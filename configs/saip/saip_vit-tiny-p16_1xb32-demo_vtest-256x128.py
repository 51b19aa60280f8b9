# The README demo: the SAIP reference method at a CPU budget, on person crops that
# tools/dataset_converters/video_to_persons.py cuts out of Debian's pedestrian video vtest.avi.
# Same backbone, heads, views and losses as the reference recipe; what changes is the budget:
# batch 16 on one process, fewer local crops (n_local 4: 3 local crops, 5 student views), fp32
# (tools/train.py --amp: bf16 autocast on CPU, which tools/demo.sh adds where the CPU has bf16
# units), a short schedule. Expect 3-6 minutes of training on 2 CPU cores (README).
_base_ = './saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'

data_root = 'data/vtest/'
n_local = 4

model = dict(n_local=n_local)

train_pipeline = [
    dict(type='LoadPersonImage'),
    dict(type='PersonGlobalViews', size=(256, 128), scale=(0.8, 1.0), ratio=(0.4, 0.6)),
    dict(type='PersonLocalViews', num_views=n_local - 1, size=(128, 64), scale=(0.05, 0.8),
         ratio=(0.4, 0.6)),
    dict(type='RegionView', size=(128, 64), interpolation='nearest'),  # = model.resize_mode
    dict(type='MultiPersonReference', size=(224, 224), scale=(0.2, 1.0), person_weight=0.7),
    dict(type='PackSAIPInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    pin_memory=False,
    dataset=dict(
        data_root=data_root,
        ann_file='persons.txt',
        # Full frames of the video's training part: real multi-person street scenes. Relative
        # to the dataset's data_root, so overriding data_root alone moves both sources.
        background=dict(_delete_=True, ann_file='frames.txt'),
        pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='SAIPOptimWrapperConstructor',
    # float32 unless --amp (CPUAmpOptimWrapper on CPU, AmpOptimWrapper on GPU); 4x the
    # recipe's per-256 lr because the run is so short.
    optimizer=dict(type='AdamW', lr=2.5e-4 * 16 / 256 * 4, betas=(0.9, 0.95), weight_decay=0.05,
                   fused=True),
    paramwise_cfg={{_base_.paramwise_cfg}})
max_iters = 40
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', T_max=max_iters - 5, eta_min=0.0, by_epoch=False, begin=5,
         end=max_iters),
]
# Online frozen-feature ReID on the video's held-out identities (data/vtest/reid, written by
# video_to_persons.py) every 10 iterations; best_reid_mAP_iter_N.pth keeps the best teacher.
# Cross-resolution too: the queries also down-sampled 2x, 3x, 4x and mixed (each its own factor
# of 2, 3, 4; seed 0), against the gallery as recorded (reid/mAP_r2 ... reid/mAP_mixed).
val_interval = 10
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=val_interval)
val_dataloader = dict(batch_size=32, num_workers=0,
                      dataset=dict(data_root=data_root + 'reid/',
                                   query_downsample=(1, 2, 3, 4, 'mixed')))
default_hooks = dict(
    # validation metrics logged at their iteration (MMEngine's default is the epoch, 0 here)
    logger=dict(type='LoggerHook', interval=5, log_metric_by_epoch=False),
    checkpoint=dict(type='SafeCheckpointHook', interval=max_iters, by_epoch=False,
                    max_keep_ckpts=1))
custom_hooks = [
    dict(type='SAIPTeacherHook'),
    # health metrics every 5 iterations; the collapse alarm warns after 3 crossing checks
    dict(type='SAIPHealthHook', interval=5),
    dict(type='TrainingCurvesHook', loss_interval=5),
    dict(type='SAIPVisualizationHook', interval=20, max_samples=2),
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
# an iteration-based run: the log counts iterations ("Iter(train) [40/40]"), not epochs
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=16)
