"""``encoder_layer_rows``: the kept rows of a block equal the full block's, values and gradients."""
import pytest
import torch
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer

from saip_mm.models.backbones import SAIPViT, last_block_relations
from saip_mm.models.utils.partial_block import encoder_layer_rows, take_rows


def block(dims=32, heads=4):
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(dims, heads, 4 * dims, qkv_bias=True,
                                    norm_cfg=dict(type='LN', eps=1e-6))
    for p in layer.parameters():  # non-trivial biases and norms
        torch.nn.init.normal_(p, std=0.2)
    return layer


@pytest.mark.parametrize('rows', [1, 3, torch.tensor([[5, 0, 2], [1, 6, 4]])])
def test_rows_equal_the_full_block(rows):
    layer = block()
    x = torch.randn(2, 7, 32, requires_grad=True)
    full = take_rows(layer(x), rows)
    part = encoder_layer_rows(layer, x, rows)
    assert part.shape == (2, 3 if not isinstance(rows, int) else rows, 32)
    torch.testing.assert_close(part, full, rtol=1e-5, atol=1e-6)
    # Same gradients for the input and every weight, including the q/k/v parts of qkv.
    params = [x] + list(layer.parameters())
    g_full = torch.autograd.grad(full.square().sum(), params)
    g_part = torch.autograd.grad(part.square().sum(), params)
    for a, b in zip(g_part, g_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gathered_rows_follow_the_index_order():
    layer = block()
    x = torch.randn(1, 5, 32)
    out = encoder_layer_rows(layer, x, torch.tensor([[4, 1]]))
    torch.testing.assert_close(out[0, 0], layer(x)[0, 4], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[0, 1], layer(x)[0, 1], rtol=1e-5, atol=1e-6)


def test_backbone_cls_only_equals_the_cls_of_the_full_pass():
    torch.manual_seed(0)
    vit = SAIPViT(arch=dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64),
                  inter_index=1)
    vit.init_weights()
    x = torch.randn(2, 3, 64, 32)
    for rel in (False, True):
        full = vit(x, return_relations=rel)
        lean = vit(x, return_relations=rel, cls_only=True)
        assert lean['last'].shape == (2, 1, 32)
        torch.testing.assert_close(lean['last'][:, 0], full['last'][:, 0], rtol=1e-5,
                                   atol=1e-6)
        torch.testing.assert_close(lean['inter'], full['inter'])
        if rel:
            for k in ('qk', 'vv'):
                torch.testing.assert_close(lean['relations'][k], full['relations'][k])


def test_relations_cls_only_keeps_full_maps():
    layer = block()
    x = torch.randn(2, 6, 32)
    out_full, rel_full = last_block_relations(layer, x)
    out_cls, rel_cls = last_block_relations(layer, x, cls_only=True)
    assert out_cls.shape == (2, 1, 32) and rel_cls['qk'].shape == (2, 4, 6, 6)
    torch.testing.assert_close(out_cls[:, 0], out_full[:, 0], rtol=1e-5, atol=1e-6)
