# AdamW (0.9, 0.95), wd 0.05 without decay on biases, norms, position embeddings and tokens,
# lr = 2.5e-4 x 2048 / 256, 10 linear warm-up epochs then cosine to 0, 300 epochs, AMP,
# gradient accumulation 4 (8 GPUs x 64 x 4 = 2048).
accumulative_counts = 4
paramwise_cfg = dict(
    norm_decay_mult=0.0,
    bias_decay_mult=0.0,
    custom_keys={
        'pos_embed': dict(decay_mult=0.0),  # backbone, CSR decoder and anchor-cls embeddings
        'cls_token': dict(decay_mult=0.0),
        'mask_token': dict(decay_mult=0.0),
    })
optim_wrapper = dict(
    type='AmpOptimWrapper',
    # the default constructor, minus the frozen EMA teacher (one log line instead of ~200)
    constructor='SAIPOptimWrapperConstructor',
    loss_scale='dynamic',
    accumulative_counts=accumulative_counts,
    # fused: one kernel per parameter tensor (CPU and CUDA, AMP included), the same update as
    # the default for-loop AdamW, several times faster on the ~70M parameters of SAIP's heads
    optimizer=dict(type='AdamW', lr=2.5e-4 * 2048 / 256, betas=(0.9, 0.95), weight_decay=0.05,
                   fused=True),
    paramwise_cfg=paramwise_cfg)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=290, eta_min=0.0, by_epoch=True, begin=10, end=300,
         convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300)

# MMEngine scales lr by (GPUs x batch_size) / base_batch_size and ignores gradient
# accumulation, so the base is the per-step batch of the recipe (8 x 64); with the fixed
# accumulation of 4 the effective batch is 4x that. Enable with `--auto-scale-lr`.
auto_scale_lr = dict(base_batch_size=512, enable=False)
