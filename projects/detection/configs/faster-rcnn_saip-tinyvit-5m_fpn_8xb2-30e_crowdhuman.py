# Pedestrian detection on CrowdHuman (full-body boxes) with a SAIP TinyViT-5M backbone, FPN and
# Faster R-CNN; data, schedule and metrics as the ViT-Tiny CrowdHuman config next to this file.
# FPN takes the outputs of stages 0, 1 and 3 (128, 160, 320 channels at strides 8, 16, 32;
# stage 2's output has stage 3's stride and is refined by it) and pools two more levels.
_base_ = ['./faster-rcnn_saip-vit-tiny_sfp_8xb2-30e_crowdhuman.py']

# The SAIP backbone checkpoint: the output of tools/model_converters/saip_to_backbone.py for a
# saip_tinyvit-5m pretraining run. Switch it here or with `--cfg-options pretrained=PATH`.
pretrained = 'checkpoints/saip_tinyvit-5m_lup1m.pth'
custom_hooks = [
    # Strict load; norm0 and norm1 (the norms of the extra outputs) are not part of a
    # pretrained TinyViT (its only output is stage 3) and keep their initialisation.
    dict(type='SAIPPretrainedHook', keep_init=('norm0.', 'norm1.')),
]

# Stock TinyViT blocks are built for one input size (img_size): every image is resized to fit
# in 1400x800 (as the ViT config) and padded to 1408x800, a multiple of the stride 32.
input_size = (800, 1408)  # (H, W)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.TinyViT',
        arch='5m',  # widths 64/128/160/320
        img_size=input_size,
        out_indices=(0, 1, 3),
        gap_before_final_norm=False,  # maps, not pooled vectors
        drop_path_rate=0.1),
    neck=dict(
        _delete_=True,
        type='FPN',
        in_channels=[128, 160, 320],
        out_channels=256,
        num_outs=5),  # strides 8, 16, 32 and max-pooled 64, 128
    rpn_head=dict(
        # anchors 32-512 px as the stride-4 ResNet FPN (scale 8 at strides 4-64)
        anchor_generator=dict(scales=[4], strides=[8, 16, 32, 64, 128])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=[8, 16, 32, 64])))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1400, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=input_size[::-1]),  # (w, h)
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1400, 800), keep_ratio=True),
    dict(type='Pad', size=input_size[::-1]),
    # annotations after Resize: the metric compares with boxes at the original scale
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'attention_biases': dict(decay_mult=0.)}))
