# SAIP reference recipe: ViT-Tiny/16, LUP1M, 8 GPUs x 64 x accumulation 4 = 2048, 300 epochs.
_base_ = [
    '_base_/models/saip_vit-tiny-p16.py',
    '_base_/datasets/lup1m_saip-256x128.py',
    '_base_/datasets/market1501_online-eval-256x128.py',
    '_base_/schedules/adamw_coslr-300e_bs2048.py',
    '_base_/default_runtime.py',
]

# Online frozen-feature ReID on Market-1501 every 10 epochs (the online-eval base above); the
# checkpoint with the best validation mAP is kept as best_reid_mAP_epoch_N.pth (written aside,
# then renamed).
train_cfg = dict(val_interval=10)
default_hooks = dict(checkpoint=dict(save_best='reid/mAP', rule='greater'))
