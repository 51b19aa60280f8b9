# Ablation: cross-scale distillation only (CSM, CSR and CSS off), the teacher of saip-kd.
# The EMA teacher is still kept: it is what online validation and the exported backbone use.
_base_ = './saip-kd_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'
model = dict(
    csm_head=None,
    csr_head=None,
    css_head=None,
)
