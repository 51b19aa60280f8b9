# PA-100K attributes, TinyViT-5M initialised from a SAIP backbone, 256x128; the recipe of the
# ViT-Tiny config next to this file with the stock mmpretrain TinyViT (its pooled, normalised
# 320-d stage-3 feature).
#   python tools/train.py projects/attributes/configs/THIS.py --cfg-options pretrained=BACKBONE.pth
_base_ = ['./par_saip-vit-tiny-p16_1xb64-30e_pa100k-256x128.py']

pretrained = 'checkpoints/saip_tinyvit-5m_lup1m-256x128_backbone.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='TinyViT',
        arch='5m',  # widths 64/128/160/320
        img_size=(256, 128),  # stock TinyViT blocks are built for this input size
        drop_path_rate=0.1),  # out_indices=-1, gap_before_final_norm=True: (B, 320)
    head=dict(in_channels=320))
custom_hooks = [
    # loads `pretrained` into model.backbone, strictly (the exact pretrained tensor set)
    dict(type='SAIPPretrainedHook'),
    # the loss weights: each attribute's positive ratio in the training split
    dict(type='AttributePosRatioHook'),
]
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'attention_biases': dict(decay_mult=0.0)}))
