import pytest
import torch
from mmpretrain.models import TinyViT

from saip_mm.models.backbones import SAIPTinyViT

# Every input size SAIP feeds the TinyViT variant: the 256x128 globals, the 128x64 locals and
# region view, those rescaled by {0.75, 0.875, 1.125} on the stride-16 grid (112x48 floored,
# 112x64 rounded: both are covered), and the 224x224 CSS reference.
SAIP_SIZES = [(256, 128), (128, 64), (96, 48), (112, 48), (112, 64), (144, 64), (224, 224)]


@pytest.fixture(scope='module')
def tinyvit():
    torch.manual_seed(0)
    model = SAIPTinyViT()
    model.init_weights()
    with torch.no_grad():  # informative values where the init leaves constants
        for name, p in model.named_parameters():
            if 'attention_biases' in name or 'bn2d' in name or 'norm' in name:
                p.normal_(mean=1.0 if name.endswith('weight') else 0.0, std=0.1)
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.normal_(std=0.1)
            elif name.endswith('running_var'):
                b.uniform_(0.5, 1.5)
    model.eval()
    return model


def stock_copy(model: SAIPTinyViT, img_size) -> TinyViT:
    """Stock mmpretrain TinyViT for ``img_size`` holding ``model``'s weights (all but ln_inter)."""
    stock = TinyViT(arch='5m', img_size=img_size)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith('ln_inter.')}
    stock.load_state_dict(state, strict=True)
    stock.eval()
    return stock


def test_arch_names_and_size(tinyvit):
    assert tinyvit.channels == [64, 128, 160, 320] and tinyvit.depths == [2, 2, 6, 2]
    assert tinyvit.input_stride == 16 and tinyvit.inter_stage == 2
    stock = TinyViT(arch='5m')
    ours = set(tinyvit.state_dict())
    assert ours - set(stock.state_dict()) == {'ln_inter.weight', 'ln_inter.bias'}
    assert set(stock.state_dict()) <= ours
    # TinyViT-5M is 5.39M parameters with its 1000-class ImageNet head; the backbone is 5.07M
    n_stock = sum(p.numel() for p in stock.parameters())
    assert n_stock == 5_071_764
    assert sum(p.numel() for p in tinyvit.parameters()) == n_stock + 2 * 160  # + ln_inter


@pytest.mark.parametrize('size', SAIP_SIZES)
def test_named_outputs_at_every_saip_size(tinyvit, size):
    with torch.no_grad():
        out = tinyvit(torch.randn(1, 3, *size))
    h, w = size[0] // 16, size[1] // 16
    last_n = -(-h // 2) * -(-w // 2)  # stride-2 merging rounds odd grids up
    assert set(out) == {'grid', 'inter', 'last'}
    assert out['grid'] == (h, w)
    assert out['inter'].shape == (1, 1 + h * w, 160)
    assert out['last'].shape == (1, 1 + last_n, 320)
    assert torch.isfinite(out['last']).all() and torch.isfinite(out['inter']).all()


def test_equals_stock_tinyvit(tinyvit):
    """Same function as mmpretrain's TinyViT built for the anchor size: the pooled ``last``
    token is its output, the ``inter`` tokens are its stage-2 block outputs through ln_inter."""
    stock = stock_copy(tinyvit, (256, 128))
    x = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        out = tinyvit(x)
        torch.testing.assert_close(out['last'][:, 0], stock(x)[0], rtol=1e-4, atol=1e-5)
        feats = stock.stages[1](stock.stages[0](stock.patch_embed(x)))
        for block in stock.stages[2].blocks:
            feats = block(feats)
    tokens = tinyvit.ln_inter(feats)
    torch.testing.assert_close(out['inter'][:, 1:], tokens, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out['inter'][:, 0], tinyvit.ln_inter(feats.mean(1)),
                               rtol=1e-4, atol=1e-5)
    assert out['grid'] == (16, 8)


def test_stop_at_inter(tinyvit):
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        early, full = tinyvit(x, stop_at_inter=True), tinyvit(x)
    assert set(early) == {'grid', 'inter'} and early['grid'] == (14, 14)
    torch.testing.assert_close(early['inter'], full['inter'], rtol=0, atol=0)


def test_attention_bias_read_at_call_time():
    """An EMA teacher stays in eval mode while its weights change in place: the stock
    attention caches its bias at ``eval()``, ours reads the current one."""
    torch.manual_seed(0)
    model = SAIPTinyViT()
    model.eval()
    stock = stock_copy(model, (256, 128))
    x = torch.randn(1, 3, 256, 128)
    with torch.no_grad():
        for m in (model, stock):
            for name, p in m.named_parameters():
                if 'attention_biases' in name:
                    p.add_(torch.linspace(-2, 2, p.numel()).view_as(p))
        ours, cached = model(x)['last'][:, 0], stock(x)[0]
        stock.train()
        stock.eval()  # refreshes the stock cache
        refreshed = stock(x)[0]
    torch.testing.assert_close(ours, refreshed, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours, cached, atol=1e-3)


def test_unsupported_requests_fail_clearly(tinyvit):
    x = torch.randn(1, 3, 256, 128)
    with pytest.raises(ValueError, match='attn_loss_weight=0'):
        tinyvit(x, return_relations=True)
    with pytest.raises(ValueError, match='csr_head=None'):
        tinyvit(x, ids_keep=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match='out_indices=-1'):
        SAIPTinyViT(out_indices=(0, 1, 2, 3))
    with pytest.raises(ValueError, match=r'inter_stage=0 must be an attention stage, in \[1, 3\]'):
        SAIPTinyViT(inter_stage=0)


def test_modules_unused_by_an_output(tinyvit):
    """``inter`` (stage 2's blocks) needs neither stage 2's patch merging nor stage 3 and
    ``norm3``; ``last`` needs everything but ``ln_inter``."""
    assert tinyvit.modules_unused_by({'inter'}) == ['stages.2.downsample', 'stages.3', 'norm3']
    assert tinyvit.modules_unused_by({'last'}) == ['ln_inter']
    assert tinyvit.modules_unused_by({'inter', 'last'}) == []
    with pytest.raises(ValueError, match='non-empty subset'):
        tinyvit.modules_unused_by(set())
