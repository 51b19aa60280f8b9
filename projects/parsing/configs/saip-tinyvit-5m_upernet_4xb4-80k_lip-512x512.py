# Human parsing on LIP (20 classes) with a SAIP TinyViT-5M backbone and UperNet on its four
# stage outputs. mmpretrain's TinyViT emits each stage after its patch merging: 128, 160, 320
# and 320 channels at strides 8, 16, 32 and 32 (UPerHead resizes every level to the finest).
# Data, schedule and optimiser as the ViT-Tiny LIP config next to this file.
_base_ = ['./saip-vit-tiny_upernet_4xb4-80k_lip-512x512.py']

# The SAIP backbone checkpoint: the output of tools/model_converters/saip_to_backbone.py for a
# saip_tinyvit-5m pretraining run. Switch it here or with `--cfg-options pretrained=PATH`.
pretrained = 'checkpoints/saip_tinyvit-5m_lup1m.pth'
custom_hooks = [
    # Strict load; norm0-norm2 (the norms of the extra outputs) are not part of a pretrained
    # TinyViT (its only output is stage 3) and keep their initialisation.
    dict(type='SAIPPretrainedHook', keep_init=('norm0.', 'norm1.', 'norm2.')),
]

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # plain BN when not distributed
model = dict(
    # Stock TinyViT blocks are built for one input size (img_size): test images are padded to
    # the crop size too (after a keep-ratio resize to fit in it).
    data_preprocessor=dict(test_cfg=dict(size=crop_size)),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.TinyViT',
        arch='5m',  # widths 64/128/160/320
        img_size=crop_size,
        out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False,  # maps, not pooled vectors
        drop_path_rate=0.1),
    neck=None,
    decode_head=dict(in_channels=[128, 160, 320, 320], in_index=[0, 1, 2, 3]),
    auxiliary_head=dict(in_channels=320, in_index=2))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'attention_biases': dict(decay_mult=0.)}))
