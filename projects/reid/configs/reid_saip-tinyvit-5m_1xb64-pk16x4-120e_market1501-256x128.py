# Market-1501 ReID, TinyViT-5M initialised from a SAIP backbone, 256x128; the recipe of the
# ViT-Tiny config next to this file with the stock mmpretrain TinyViT (its pooled, normalised
# 320-d stage-3 feature, exactly the feature SAIP's CSM learned on).
#   python tools/train.py projects/reid/configs/THIS.py --cfg-options pretrained=BACKBONE.pth
_base_ = ['./reid_saip-vit-tiny-p16_1xb64-pk16x4-120e_market1501-256x128.py']

pretrained = 'checkpoints/saip_tinyvit-5m_lup1m-256x128_backbone.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='TinyViT',
        arch='5m',  # widths 64/128/160/320
        img_size=(256, 128),  # stock TinyViT blocks are built for this input size
        drop_path_rate=0.1),  # out_indices=-1, gap_before_final_norm=True: (B, 320)
    head=dict(in_channels=320))
# Loads `pretrained` into model.backbone, strictly (the exact pretrained tensor set).
custom_hooks = [dict(type='SAIPPretrainedHook')]
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'attention_biases': dict(decay_mult=0.0)}))
