# SAIP with the hierarchical TinyViT-5M backbone (METHOD §6): CSM on the pooled final feature,
# CSS on the third stage (160 wide, stride 16: a 14x14 reference map at 224x224), no CSR,
# rescale factors {0.75, 0.875, 1, 1.125}. Data, schedule and runtime are the ViT-Tiny recipe's.
_base_ = './saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SAIPTinyViT',  # mmpretrain.TinyViT parameter names (+ ln_inter, dropped on export)
        arch='5m',  # widths 64/128/160/320, depths 2/2/6/2
        img_size=(256, 128),
        inter_stage=2,  # 'inter' = the third stage's tokens (160 wide, stride 16)
        drop_path_rate=0.0),
    csm_head=dict(
        in_channels=320,  # the pooled last-stage feature
        # CSM's attention term needs full last-block attention maps; TinyViT's last stage
        # attends within 7x7 windows, so the term is off (SAIPTinyViT raises if asked for them).
        loss=dict(attn_loss_weight=0.0)),
    csr_head=None,  # no CSR in the TinyViT variant
    css_head=dict(in_channels=160),
    rescale_factors=(0.75, 0.875, 1.0, 1.125))

# TinyViT's relative-position biases are position parameters: no weight decay, as pos_embed.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'attention_biases': dict(decay_mult=0.0)}))
