"""Model builders shared by test files in different folders (``tests/`` is on ``sys.path``)."""
import torch
from mmpretrain.registry import MODELS

import saip_mm  # noqa: F401  (registers SAIP)


def tinyvit_saip(seed: int = 0):
    """SAIP with the TinyViT-5M backbone of the TinyViT variant: CSM without its attention term,
    no CSR, a small CSS head (the heads hold no BatchNorm). ``init_weights`` is not called:
    the teacher is a deep copy of the student from construction, and the weight init (seconds
    on 2 cores) changes no BatchNorm buffer."""
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='SAIP', backbone=dict(type='SAIPTinyViT', arch='5m'),
        csm_head=dict(type='CSMHead', in_channels=320, out_channels=256,
                      loss=dict(type='CSMLoss', attn_loss_weight=0.0)),
        csr_head=None, css_head=dict(type='CSSHead', in_channels=160, embed_dims=32,
                                     num_heads=2)))
