# Top-down heatmap pose estimation on COCO keypoints, 256x192, with a SAIP TinyViT-5M backbone.
# As mmpose does for hierarchical backbones (SimpleBaseline, e.g. its Swin and ResNet configs):
# the last stage's map (stride 32) and a HeatmapHead with three deconvolutions up to the
# stride-4 heatmap. Data, codec (UDP) and schedule: the ViT-Tiny config next to this file.
_base_ = ['./td-hm_saip-vit-tiny_8xb64-210e_coco-256x192.py']

# The SAIP backbone checkpoint: the output of tools/model_converters/saip_to_backbone.py for a
# saip_tinyvit-5m pretraining run. Switch it here or with `--cfg-options pretrained=PATH`.
pretrained = 'checkpoints/saip_tinyvit-5m_lup1m.pth'
custom_hooks = [
    dict(type='SyncBuffersHook'),
    # Loads `pretrained` into model.backbone, strictly: this backbone has exactly the
    # pretrained tensors (its stage-3 output norm is the pretrained norm3). Nothing to resize.
    dict(type='SAIPPretrainedHook'),
]

# AdamW without the ViT's layer-wise lr decay; no weight decay on norms and TinyViT's
# relative-position biases (as mmpose's Swin config).
optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'attention_biases': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=1., norm_type=2))

model = dict(
    backbone=dict(
        _delete_=True,
        # The stock mmpretrain TinyViT; SAIP TinyViT checkpoints use its parameter names.
        # Its blocks are built for one input size: img_size must be the codec's input (H, W).
        type='mmpretrain.TinyViT',
        arch='5m',  # widths 64/128/160/320
        img_size=(256, 192),
        out_indices=(3, ),
        gap_before_final_norm=False,  # a (B, 320, 8, 6) map, not the pooled vector
        drop_path_rate=0.1),
    head=dict(
        in_channels=320,
        deconv_out_channels=(256, 256, 256),  # stride 32 -> 4: the 64x48 heatmap
        deconv_kernel_sizes=(4, 4, 4)))
