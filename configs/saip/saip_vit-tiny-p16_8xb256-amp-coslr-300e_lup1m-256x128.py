# SAIP reference recipe: ViT-Tiny/16, LUP1M, 8 GPUs x 64 x accumulation 4 = 2048, 300 epochs.
_base_ = [
    '_base_/models/saip_vit-tiny-p16.py',
    '_base_/datasets/lup1m_saip-256x128.py',
    '_base_/schedules/adamw_coslr-300e_bs2048.py',
    '_base_/default_runtime.py',
]
