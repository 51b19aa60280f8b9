"""float32 where ``.float()`` says so, inside ``torch.autocast`` (saip_mm/models/utils/precision.py
and the computations that use it: health metrics, distillation losses, the last block's
relation maps; the CSM/CSR/CSS losses and the CSM centre need it not: no matmul).

Each check runs under ``torch.autocast('cpu', torch.bfloat16)``, compares with the plain
float32 computation at a tight tolerance, and shows that a bf16 matmul would differ by more
(so the comparison can fail).
"""
import pytest
import torch
import torch.nn.functional as F

from saip_mm.models.backbones.saip_vit import SAIPViT, last_block_relations
from saip_mm.models.losses import CSMLoss, CSRLoss, CSSLoss
from saip_mm.models.losses.distill_loss import (global_alignment, patch_alignment,
                                                relation_alignment, token_relations)
from saip_mm.models.utils.health import entropy_ratio, mean_offdiag_cosine, rankme
from saip_mm.models.utils.precision import autocast_off

BF16 = dict(device_type='cpu', dtype=torch.bfloat16)


def _close_to_fp32_not_bf16(got, fp32, bf16, atol=1e-6):
    """``got`` equals the fp32 result within ``atol``; the bf16 result is off by > 10 atol."""
    assert (got - fp32).abs().max() <= atol
    assert (bf16.float() - fp32).abs().max() > 10 * atol


def test_autocast_off_gives_float32_matmuls():
    x = torch.randn(16, 64)
    with torch.autocast(**BF16):
        assert (x @ x.t()).dtype == torch.bfloat16  # what autocast does to .float() inputs
        with autocast_off(x):
            inside = x @ x.t()
    assert inside.dtype == torch.float32
    assert torch.equal(inside, x @ x.t())


def test_health_metrics_run_in_float32_under_autocast():
    torch.manual_seed(0)
    # close directions: their cosines differ in the 3rd-4th decimal, below bf16's resolution
    feats = torch.randn(1, 64) + 0.05 * torch.randn(8, 64)
    with torch.autocast(**BF16):
        cos, rank = mean_offdiag_cosine(feats), rankme(feats)
        entropy = entropy_ratio(feats, torch.zeros(1, 64), 0.04)
    assert cos == pytest.approx(mean_offdiag_cosine(feats), abs=1e-7)
    assert rank == pytest.approx(rankme(feats), rel=1e-6)
    assert entropy == pytest.approx(entropy_ratio(feats, torch.zeros(1, 64), 0.04), abs=1e-7)
    z = F.normalize(feats, dim=-1).bfloat16()
    sim = (z @ z.t()).float()
    cos_bf16 = float((sim.sum() - sim.diagonal().sum()) / (8 * 7))
    assert abs(cos_bf16 - mean_offdiag_cosine(feats)) > 1e-5


def test_distillation_losses_run_in_float32_under_autocast():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 12, 32), torch.randn(2, 12, 48)
    with torch.autocast(**BF16):
        rel = token_relations(student, 0.1)
        losses = (relation_alignment(student, teacher), global_alignment(student[:, 0],
                                                                        teacher[:, 0, :32]),
                  patch_alignment(student, teacher[..., :32]))
    assert rel.dtype == torch.float32 and all(v.dtype == torch.float32 for v in losses)
    x = F.normalize(student, dim=-1)
    bf16 = ((x.bfloat16() @ x.bfloat16().transpose(1, 2)).float() / 0.1).log_softmax(-1)
    _close_to_fp32_not_bf16(rel, token_relations(student, 0.1), bf16, atol=1e-5)
    expected = (relation_alignment(student, teacher),
                global_alignment(student[:, 0], teacher[:, 0, :32]),
                patch_alignment(student, teacher[..., :32]))
    for got, want in zip(losses, expected):
        assert abs(float(got - want)) <= 1e-6


def test_last_block_relations_are_float32_products_under_autocast():
    torch.manual_seed(0)
    vit = SAIPViT(arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                  img_size=(64, 32), inter_index=0)
    vit.eval()
    tokens = torch.randn(2, 9, 32)
    layer = vit.layers[-1]
    with torch.no_grad():
        _, want = last_block_relations(layer, tokens)
        with torch.autocast(**BF16):
            _, got = last_block_relations(layer, tokens)
            # the inputs autocast gives the products (the qkv projection runs in bf16)
            qkv = layer.attn.qkv(layer.ln1(tokens)).reshape(2, 9, 3, 2, 16)
        q, k, v = qkv.float().permute(2, 0, 3, 1, 4)
        fp32_of_bf16_inputs = (q @ k.transpose(-2, -1) * 16**-0.5).softmax(-1)
        bf16 = ((q.bfloat16() @ k.bfloat16().transpose(-2, -1)).float() * 16**-0.5).softmax(-1)
    for key in ('qk', 'vv'):
        assert got[key].dtype == torch.float32
    # fp32 products of the (bf16) projections, not bf16 products
    _close_to_fp32_not_bf16(got['qk'], fp32_of_bf16_inputs, bf16, atol=1e-6)
    # and near the all-fp32 maps (the projection's bf16 rounding is the only difference)
    assert (got['qk'] - want['qk']).abs().max() < 2e-2


def test_csm_csr_css_losses_and_the_centre_need_no_guard():
    """Elementwise ops, log-sum-exp and softmax keep float32 inputs in float32 under autocast:
    the same numbers as without autocast, bit for bit."""
    torch.manual_seed(0)
    loss = CSMLoss(out_dim=64, attn_loss_weight=1.0)
    loss.center.copy_(torch.randn(1, 64))
    student, teacher = torch.randn(4 * 3, 64), list(torch.randn(2, 3, 64))
    rel = {k: torch.rand(6, 2, 5, 5).softmax(-1) for k in ('qk', 'vv')}
    rel_t = {k: torch.rand(6, 2, 5, 5).softmax(-1) for k in ('qk', 'vv')}
    pred, target, mask = torch.randn(2, 6, 12), torch.randn(2, 6, 12), torch.rand(2, 6) > 0.5
    logits, binary = torch.randn(2, 4, 4), (torch.rand(2, 4, 4) > 0.5).float()
    plain = (loss(student, teacher), loss.attention_loss(rel, rel_t),
             CSRLoss()(pred, target, mask), CSSLoss()(logits, binary))
    with torch.autocast(**BF16):
        under = (loss(student, teacher), loss.attention_loss(rel, rel_t),
                 CSRLoss()(pred, target, mask), CSSLoss()(logits, binary))
        centre = loss.center.clone()
        loss.update_center(teacher)
    for a, b in zip(under, plain):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    expected = centre * 0.9 + torch.cat(teacher).mean(0, keepdim=True) * 0.1
    assert loss.center.dtype == torch.float32
    torch.testing.assert_close(loss.center, expected, atol=1e-6, rtol=0)
