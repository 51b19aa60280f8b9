# CPU smoke run of the TinyViT-5M variant on the README demo's data (data/vtest/, written by
# `make demo`): the demo's budget settings with the TinyViT model of
# saip_tinyvit-5m_8xb256-amp-coslr-300e_lup1m-256x128.py, batch 8, 10 iterations.
_base_ = './saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'

model = dict(
    backbone=dict(
        _delete_=True, type='SAIPTinyViT', arch='5m', img_size=(256, 128), inter_stage=2,
        drop_path_rate=0.0),
    csm_head=dict(in_channels=320, loss=dict(attn_loss_weight=0.0)),  # windowed attention
    csr_head=None,
    css_head=dict(in_channels=160),
    rescale_factors=(0.75, 0.875, 1.0, 1.125))

train_dataloader = dict(batch_size=8)
optim_wrapper = dict(
    optimizer=dict(lr=2.5e-4 * 8 / 256 * 4),
    paramwise_cfg=dict(custom_keys={'attention_biases': dict(decay_mult=0.0)}))
max_iters = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', T_max=max_iters - 2, eta_min=0.0, by_epoch=False, begin=2,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=max_iters))
custom_hooks = [dict(type='SAIPTeacherHook')]
auto_scale_lr = dict(base_batch_size=8)
