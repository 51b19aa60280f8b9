# SAIP with ViT-Small/16 (384 wide, 6 heads); heads take 384-d tokens.
_base_ = './saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'
model = dict(
    backbone=dict(arch='small'),
    csm_head=dict(in_channels=384),
    csr_head=dict(in_channels=384),
    css_head=dict(in_channels=384))
