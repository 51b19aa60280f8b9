# Ablation: SAIP with CSM + CSR only (the other objectives' heads are switched off).
_base_ = './saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'
model = dict(
    css_head=None,
)
