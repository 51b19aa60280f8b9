# SAIP with a ViT-Tiny/16 backbone; every value is the reference recipe (docs: SAIP_METHOD.md).
model = dict(
    type='SAIP',
    backbone=dict(
        type='SAIPViT',
        arch='tiny',
        img_size=(256, 128),  # anchor (H, W): a 16x8 patch grid
        patch_size=16,
        inter_index=6,  # 'inter' = tokens after block 7
        drop_path_rate=0.0),
    csm_head=dict(
        type='CSMHead',
        in_channels=192,
        hidden_channels=2048,
        bottleneck_channels=256,
        out_channels=65536,
        loss=dict(
            type='CSMLoss',
            student_temp=0.1,
            teacher_temp=0.04,
            warmup_teacher_temp=0.07,
            warmup_teacher_temp_epochs=0,
            center_momentum=0.9,
            loss_weight=1.0,
            attn_loss_weight=1.0)),
    csr_head=dict(
        type='CSRHead',
        in_channels=192,
        embed_dims=512,
        depth=8,
        num_heads=16,
        anchor_grid=(16, 8),
        norm_pix=True,
        loss=dict(type='CSRLoss', loss_weight=1.0)),
    css_head=dict(
        type='CSSHead',
        in_channels=192,
        embed_dims=512,
        num_query_blocks=2,
        num_heads=16,
        num_mask_convs=3,
        loss=dict(type='CSSLoss', loss_weight=1.0)),
    n_local=8,
    rescale_factors=(0.75, 0.875, 1.125, 1.25),
    csr_scale=1.25,
    mask_ratio=0.75,
    resize_mode='nearest',  # = the pipeline's RegionView.interpolation
    base_momentum=0.996,
    end_momentum=1.0,
    data_preprocessor=dict(type='SAIPDataPreprocessor'))
