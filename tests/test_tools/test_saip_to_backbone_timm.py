"""tools/model_converters/saip_to_backbone.py ``--to timm``: the output is a plain state dict
that timm's model of the same shape loads with ``strict=True``, and whose features equal those
of the SAIP backbone it came from (the max abs difference is printed by the converter and here).
"""
import re
import runpy
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from mmengine.config import Config

import saip_mm  # noqa: F401  (registers SAIPViT / SAIPTinyViT)
from mmpretrain.registry import MODELS
from saip_mm.utils.vit_checkpoint import ViTLayoutError, map_vit_keys, to_timm_state_dict

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'model_converters' / 'saip_to_backbone.py'
# A micro ViT that also exercises the arguments a usual ViT-Tiny lacks: MLP ratio 2, a norm
# before the blocks and layer scale (timm's pre_norm, init_values; the tensors norm_pre, ls1).
MICRO = dict(type='SAIPViT', arch=dict(embed_dims=48, num_layers=2, num_heads=3,
                                       feedforward_channels=96),
             inter_index=0, pre_norm=True, layer_scale_init_value=0.1)
TIMM_MICRO = dict(patch_size=16, embed_dim=48, depth=2, num_heads=3, mlp_ratio=2.0,
                  pre_norm=True, init_values=1.0)
TINY = dict(type='SAIPViT', arch='tiny')
TOLERANCE = 1e-5


def _tool():
    return SimpleNamespace(**runpy.run_path(str(TOOL)))  # the CLI's code path, in-process


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Every tensor away from its init (zero pos_embed, unit norms): each one must map."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        for name, b in module.named_buffers():
            if name.endswith(('running_mean', 'running_var')):
                b.uniform_(0.5, 1.5, generator=gen)


def saip_checkpoint(path, backbone_cfg: dict):
    """A SAIP checkpoint as the Runner writes it: student and (different) EMA teacher
    backbones, and the run's config text in meta (where the number of heads is read)."""
    torch.manual_seed(0)
    teacher = MODELS.build(backbone_cfg)
    _randomise(teacher, seed=1)
    state = OrderedDict()
    for name, value in teacher.state_dict().items():
        state['backbone.' + name] = value + 0.01 if value.is_floating_point() else value
        state['teacher.backbone.' + name] = value
    cfg_text = Config(dict(model=dict(type='SAIP', backbone=backbone_cfg))).pretty_text
    torch.save(dict(state_dict=state, meta=dict(epoch=1, iter=10, cfg=cfg_text)), path)
    teacher.eval()  # (mmpretrain backbones' train() returns None)
    return teacher


def run_converter(capsys, *argv) -> str:
    _tool().main([str(a) for a in argv])
    return capsys.readouterr().out


def printed_diff(out: str) -> float:
    return float(re.search(r'timm check: strict load ok; .* max abs diff (\S+)', out).group(1))


@pytest.mark.parametrize('arch', ['micro', 'vit-tiny'])
def test_timm_output_loads_strictly_with_the_backbones_features(arch, tmp_path, capsys):
    cfg, extra = (MICRO, TIMM_MICRO) if arch == 'micro' else (TINY, {})
    teacher = saip_checkpoint(tmp_path / 'epoch_1.pth', cfg)
    out = tmp_path / 'timm.pth'
    log = run_converter(capsys, tmp_path / 'epoch_1.pth', out, '--to', 'timm')
    print(log)
    assert printed_diff(log) < TOLERANCE
    if arch == 'vit-tiny':  # the call the converter prints is the one of the issue
        assert ("load it with: timm.create_model('vit_tiny_patch16_224', img_size=(256, 128), "
                "num_classes=0)") in log

    state = torch.load(out, weights_only=True)
    assert all(torch.is_tensor(v) for v in state.values())  # tensors only, timm's names
    assert 'blocks.0.norm1.weight' in state and not any(k.startswith('backbone.') for k in state)
    model = timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=(256, 128),
                              num_classes=0, **extra)
    model.load_state_dict(state, strict=True)
    model.eval()
    images = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        ours = teacher(images)['last']  # (B, 1 + 16*8, C) after the final norm
        tokens = model.forward_features(images)
        pooled = model(images)  # num_classes=0: the cls token after the final norm
    diff = float((tokens - ours).abs().max())
    print(f'{arch}: timm vs SAIPViT (EMA teacher) features, max abs diff {diff:.3g}')
    assert diff < TOLERANCE
    assert float((pooled - ours[:, 0]).abs().max()) < TOLERANCE
    assert float(ours.std()) > 0.5  # real features, not a degenerate match


def test_timm_output_for_another_input_size(tmp_path, capsys):
    """--img-size 256 192: position embeddings resized once, as SAIPViT resizes them."""
    teacher = saip_checkpoint(tmp_path / 'epoch_1.pth', MICRO)
    out = tmp_path / 'timm_256x192.pth'
    log = run_converter(capsys, tmp_path / 'epoch_1.pth', out, '--to', 'timm',
                        '--img-size', 256, 192)
    assert 'img_size=(256, 192)' in log and printed_diff(log) < TOLERANCE
    model = timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=(256, 192),
                              num_classes=0, **TIMM_MICRO)
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    model.eval()
    images = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        diff = float((model.forward_features(images) - teacher(images)['last']).abs().max())
    print(f'256x192: timm vs SAIPViT features, max abs diff {diff:.3g}')
    assert diff < 1e-4  # bicubic resize of the same tensors, at load vs at call


def test_tinyvit_timm_output(tmp_path, capsys):
    """A TinyViT-5M checkpoint gives timm's tiny_vit_5m_224, same pooled features."""
    teacher = saip_checkpoint(tmp_path / 'epoch_1.pth', dict(type='SAIPTinyViT', arch='5m'))
    out = tmp_path / 'timm_tinyvit.pth'
    log = run_converter(capsys, tmp_path / 'epoch_1.pth', out, '--to', 'timm')
    print(log)
    assert "load it with: timm.create_model('tiny_vit_5m_224', num_classes=0)" in log
    assert printed_diff(log) < TOLERANCE
    model = timm.create_model('tiny_vit_5m_224', pretrained=False, num_classes=0)
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    model.eval()
    images = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        diff = float((model(images) - teacher(images)['last'][:, 0]).abs().max())
    print(f'tinyvit-5m: timm vs SAIPTinyViT pooled features, max abs diff {diff:.3g}')
    assert diff < TOLERANCE


def test_timm_names_are_the_import_tables_reversed():
    """mmpretrain → timm → mmpretrain gives the same tensors under the same names."""
    vit = MODELS.build(MICRO)
    state = OrderedDict((k, v) for k, v in vit.state_dict().items()
                        if not k.startswith('ln_inter.'))
    timm_state = to_timm_state_dict(state)
    assert {'norm_pre.weight', 'blocks.1.ls2.gamma', 'blocks.0.mlp.fc1.bias',
            'norm.bias', 'patch_embed.proj.weight'} <= set(timm_state)
    back, report = map_vit_keys(timm_state, prefix='')
    assert list(back) == list(state)
    assert all(back[k] is state[k] or torch.equal(back[k], state[k]) for k in state)
    with pytest.raises(ViTLayoutError, match=r'ckpt\.pth: 1 tensors have no timm .*'
                                             r'layers\.0\.attn\.relative_position_bias_table'):
        to_timm_state_dict({**state, 'layers.0.attn.relative_position_bias_table':
                            torch.zeros(3)}, path='ckpt.pth')


def test_a_failed_check_writes_nothing_and_no_check_skips_it(tmp_path, capsys):
    saip_checkpoint(tmp_path / 'epoch_1.pth', MICRO)
    tool = _tool()
    # features that disagree (as a wrong mapping would give): an error naming the file
    tool.convert.__globals__['check_timm_features'] = lambda *args: 0.5
    with pytest.raises(ValueError, match=r'epoch_1\.pth: the timm model\'s features differ '
                                         r'from mmpretrain\'s by 0\.5 .*nothing was written'):
        tool.convert(str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'bad.pth'), to='timm')
    assert not (tmp_path / 'bad.pth').exists()
    log = run_converter(capsys, tmp_path / 'epoch_1.pth', tmp_path / 'unchecked.pth', '--to',
                        'timm', '--no-check')
    assert 'timm check: not run (--no-check)' in log
    assert (tmp_path / 'unchecked.pth').exists()
