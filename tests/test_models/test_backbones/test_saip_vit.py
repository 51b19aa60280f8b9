import pytest
import torch
from mmpretrain.models import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed

from saip_mm.models import SAIPViT


@pytest.fixture(scope='module')
def vit():
    torch.manual_seed(0)
    model = SAIPViT(arch='tiny')
    model.init_weights()
    model.eval()  # mmpretrain backbones' train() returns None: no chaining
    return model


def test_arch_and_names(vit):
    assert vit.embed_dims == 192 and vit.num_layers == 12
    assert vit.layers[0].attn.num_heads == 3
    assert vit.patch_resolution == (16, 8)
    assert vit.pos_embed.shape == (1, 1 + 16 * 8, 192)
    # Same parameter names as mmpretrain's VisionTransformer, plus ln_inter only.
    stock = VisionTransformer(arch='deit-tiny', img_size=(256, 128))
    ours = set(vit.state_dict())
    assert ours - set(stock.state_dict()) == {'ln_inter.weight', 'ln_inter.bias'}
    assert set(stock.state_dict()) <= ours


def test_pos_embed_resize_is_identity_at_anchor(vit):
    resized = resize_pos_embed(vit.pos_embed, (16, 8), (16, 8), num_extra_tokens=1)
    assert torch.equal(resized, vit.pos_embed)
    x = torch.randn(2, 3, 256, 128)
    tokens, grid = vit.embed(x)
    patches, _ = vit.patch_embed(x)
    assert grid == (16, 8)
    torch.testing.assert_close(tokens[:, 1:], patches + vit.pos_embed[:, 1:])
    torch.testing.assert_close(tokens[:, :1], (vit.cls_token + vit.pos_embed[:, :1]).expand(2, -1, -1))


def test_pos_embed_resize_2d():
    # A field linear along rows and constant along columns stays so after a 2-D resize:
    # a 1-D resize of the flattened sequence would mix rows and break this.
    rows = torch.arange(16.).view(16, 1).expand(16, 8)
    pos = torch.cat([torch.zeros(1, 1), rows.reshape(-1, 1)]).view(1, 129, 1)
    out = resize_pos_embed(pos, (16, 8), (20, 10), num_extra_tokens=1)[0, 1:, 0].view(20, 10)
    assert torch.allclose(out, out[:, :1].expand(20, 10), atol=1e-5)  # constant along columns
    assert (out[1:, 0] > out[:-1, 0]).all()  # still increasing along rows


@pytest.mark.parametrize('size', [(128, 64), (96, 48), (320, 160), (224, 224)])
def test_any_input_size(vit, size):
    out = vit(torch.randn(1, 3, *size))
    n = (size[0] // 16) * (size[1] // 16)
    assert out['grid'] == (size[0] // 16, size[1] // 16)
    assert out['inter'].shape == out['last'].shape == (1, 1 + n, 192)


def test_inter_and_early_exit(vit):
    x = torch.randn(2, 3, 256, 128)
    full = vit(x)
    early = vit(x, stop_at_inter=True)
    assert set(early) == {'grid', 'inter'}
    torch.testing.assert_close(early['inter'], full['inter'])
    # inter is block 7 (index 6) through its own LayerNorm
    tokens, _ = vit.embed(x)
    for layer in vit.layers[:7]:
        tokens = layer(tokens)
    torch.testing.assert_close(full['inter'], vit.ln_inter(tokens))


def test_relations_sum_to_one_and_match_fused(vit):
    x = torch.randn(2, 3, 256, 128)
    plain = vit(x)
    with_rel = vit(x, return_relations=True)
    torch.testing.assert_close(with_rel['last'], plain['last'], atol=1e-5, rtol=1e-4)
    for key in ('qk', 'vv'):
        rel = with_rel['relations'][key]
        assert rel.shape == (2, 3, 129, 129)
        torch.testing.assert_close(rel.sum(-1), torch.ones(2, 3, 129))
        assert (rel >= 0).all()


def test_ids_keep_gathers_visible_tokens(vit):
    x = torch.randn(2, 3, 256, 128)
    all_ids = torch.arange(128).expand(2, -1)
    torch.testing.assert_close(vit(x, ids_keep=all_ids)['last'], vit(x)['last'])
    ids = torch.tensor([[0, 5, 77], [3, 4, 127]])
    tokens, _ = vit.embed(x, ids)
    full, _ = vit.embed(x)
    assert tokens.shape == (2, 4, 192)
    torch.testing.assert_close(tokens[0, 1:], full[0, 1 + ids[0]])
    torch.testing.assert_close(tokens[1, 1:], full[1, 1 + ids[1]])


def test_features_equal_stock_vit(vit):
    stock = VisionTransformer(arch='deit-tiny', img_size=(256, 128), out_type='cls_token',
                              norm_cfg=dict(type='LN', eps=1e-6))
    stock.eval()
    state = {k: v for k, v in vit.state_dict().items() if not k.startswith('ln_inter')}
    missing, unexpected = stock.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 3, 256, 128)
    torch.testing.assert_close(stock(x)[-1], vit(x)['last'][:, 0], atol=1e-5, rtol=1e-4)


def test_bad_config():
    with pytest.raises(ValueError, match='out_type'):
        SAIPViT(out_type='cls_token')
    with pytest.raises(ValueError, match='inter_index'):
        SAIPViT(inter_index=12)


def test_modules_unused_by_an_output(vit):
    """``inter`` (after block 7) needs neither blocks 8-12 nor the final norm; ``last`` needs
    everything but ``ln_inter``."""
    assert vit.modules_unused_by({'inter'}) == [f'layers.{i}' for i in range(7, 12)] + ['ln1']
    assert vit.modules_unused_by({'last'}) == ['ln_inter']
    assert vit.modules_unused_by({'inter', 'last'}) == []
    with pytest.raises(ValueError, match=r"outputs must be a non-empty subset of \('inter', "
                                         r"'last'\), got \['relations'\]"):
        vit.modules_unused_by({'relations'})
