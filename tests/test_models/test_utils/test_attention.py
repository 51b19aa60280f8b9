"""Attention products under CPU bf16 autocast (saip_mm/models/utils/attention.py)."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

import saip_mm  # noqa: F401
from saip_mm.models.utils.attention import (cpu_low_precision, scaled_dot_product_attention,
                                            use_fast_attention)


def qkv(n=9, m=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, n, 8, generator=g), torch.randn(2, 3, m, 8, generator=g),
            torch.randn(2, 3, m, 8, generator=g))


def test_float32_is_pytorchs_kernel_bit_for_bit():
    q, k, v = qkv()
    mask = torch.randn(3, 9, 9)
    for kwargs in (dict(), dict(attn_mask=mask, scale=0.3)):
        assert torch.equal(scaled_dot_product_attention(q, k, v, **kwargs),
                           F.scaled_dot_product_attention(q, k, v, **kwargs))


@pytest.mark.parametrize('mask', [None, 'float', 'bool'])
def test_bf16_autocast_gives_the_same_attention_as_float32(mask, monkeypatch):
    q, k, v = qkv(n=5, m=9)
    attn_mask = {None: None, 'float': torch.randn(3, 5, 9),
                 'bool': torch.rand(3, 5, 9) > 0.3}[mask]
    if mask == 'bool':
        attn_mask[..., 0] = True  # every row attends somewhere
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=0.2)

    def refuse(*args, **kwargs):
        raise AssertionError('the fused kernel ran under CPU bf16 autocast')

    monkeypatch.setattr(F, 'scaled_dot_product_attention', refuse)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert cpu_low_precision(q)
        out = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=0.2)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 5, 8)
    # bf16 has 8 bits of mantissa: products of unit-scale values agree to about 1e-2
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
    assert not cpu_low_precision(q)  # outside the region


def test_gradients_equal_the_fused_kernel_in_float32_maths():
    q, k, v = (t.double().requires_grad_() for t in qkv())
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=False):
        ref = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v).sum(), (q, k, v))
    # the explicit form, forced (what runs under autocast), in float64: the same gradients
    scale = q.shape[-1]**-0.5
    out = ((q * scale) @ k.transpose(-2, -1)).softmax(-1) @ v
    for a, b in zip(torch.autograd.grad(out.sum(), (q, k, v)), ref):
        torch.testing.assert_close(a, b)


def test_saip_switches_every_mmpretrain_attention_and_outputs_stay():
    model = MODELS.build(dict(
        type='SAIP',
        backbone=dict(type='SAIPViT', arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                                                feedforward_channels=64), inter_index=1),
        csm_head=dict(type='CSMHead', in_channels=32, hidden_channels=64,
                      bottleneck_channels=16, out_channels=128,
                      loss=dict(type='CSMLoss', out_dim=128)),
        csr_head=dict(type='CSRHead', in_channels=32, embed_dims=32, depth=1, num_heads=2)))
    attn = [m for m in model.modules() if hasattr(m, 'scaled_dot_product_attention')]
    # 4 student blocks, 4 teacher blocks, 1 CSR decoder block
    assert len(attn) == 9
    assert all(m.scaled_dot_product_attention is scaled_dot_product_attention for m in attn)
    assert use_fast_attention(model) == 0  # already switched: nothing left
    x = torch.randn(2, 3, 64, 32)
    model.eval()
    fused = MODELS.build(dict(type='SAIPViT', arch=dict(embed_dims=32, num_layers=4,
                                                        num_heads=2, feedforward_channels=64),
                              inter_index=1))
    fused.load_state_dict(model.backbone.state_dict())
    fused.eval()
    assert torch.equal(model.backbone(x)['last'], fused(x)['last'])  # float32: same kernel
