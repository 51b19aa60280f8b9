# Ablation: SAIP with CSM only (the other objectives' heads are switched off).
_base_ = './saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'
model = dict(
    csr_head=None,
    css_head=None,
)
