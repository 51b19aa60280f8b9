# Wiring-test config: the full SAIP pipeline and algorithm with a micro model on tiny data.
# data_root is given by the test (--cfg-options train_dataloader.dataset.data_root=...).
_base_ = '../../../configs/saip/saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'

model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=8, num_heads=2, feedforward_channels=64)),
    csm_head=dict(in_channels=32, hidden_channels=64, bottleneck_channels=16, out_channels=128,
                  loss=dict(out_dim=128)),
    csr_head=dict(in_channels=32, embed_dims=32, depth=1, num_heads=2),
    css_head=dict(in_channels=32, embed_dims=32, num_heads=2))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file='', background=None))
max_iters = 3
train_cfg = dict(max_iters=max_iters)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=max_iters)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=10, save_best=None))
custom_hooks = [dict(type='SAIPTeacherHook')]
# no labelled split here: online evaluation off (tests that need it turn it on)
val_cfg = None
val_dataloader = None
val_evaluator = None
randomness = dict(seed=0)
