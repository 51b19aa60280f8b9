import torch
import torch.nn.functional as F

from saip_mm.models import CSSHead


def _small_head():
    head = CSSHead(in_channels=8, embed_dims=16, num_query_blocks=2, num_heads=2)
    head.init_weights()
    return head


def test_shapes_and_shared_reference_encoding():
    head = _small_head()
    ref = torch.randn(2, 14 * 14, 8)
    kv, feats = head.encode_reference(ref, (14, 14))
    assert kv.shape == (2, 196, 16) and feats.shape == (2, 16, 14, 14)
    logits = head(torch.randn(2, 1 + 128, 8), kv, feats)
    assert logits.shape == (2, 14, 14)
    calls = []
    head.mask_convs.register_forward_hook(lambda *a: calls.append(1))
    head.loss(torch.randn(2, 129, 8), torch.randn(2, 33, 8), ref, (14, 14),
              torch.zeros(2, 224, 224), torch.zeros(2, 224, 224))
    assert len(calls) == 1  # mask features computed once for both queries


def test_targets_sit_where_the_patches_were_pasted():
    head = _small_head()
    inst = torch.zeros(1, 224, 224)
    inst[:, 32:160, 96:160] = 1  # a 128x64 person pasted at x=96, y=32
    roi = torch.zeros(1, 224, 224)
    roi[:, 64:192, 0:64] = 1
    ref = torch.randn(1, 196, 8)
    kv, feats = head.encode_reference(ref, (14, 14))
    q_inst, q_roi = torch.randn(1, 129, 8), torch.randn(1, 33, 8)
    losses = head.loss(q_inst, q_roi, ref, (14, 14), inst, roi)
    exp_inst = torch.zeros(1, 14, 14)
    exp_inst[:, 2:10, 6:10] = 1  # 16-pixel cells fully inside the box
    exp_roi = torch.zeros(1, 14, 14)
    exp_roi[:, 4:12, 0:4] = 1
    torch.testing.assert_close(
        losses['loss_css_inst'], F.binary_cross_entropy_with_logits(head(q_inst, kv, feats), exp_inst))
    torch.testing.assert_close(
        losses['loss_css_roi'], F.binary_cross_entropy_with_logits(head(q_roi, kv, feats), exp_roi))


def test_defaults_are_the_reference_recipe():
    head = CSSHead()
    assert head.query_embed.in_features == 192 and head.query_embed.out_features == 512
    assert len(head.query_blocks) == 2
    convs = [m for m in head.mask_convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1)] + [(3, 3)] * 3
    assert head.cross_block.mlp[0].out_features == 2048
