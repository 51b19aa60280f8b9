"""Tiny versions of the real configs (SAIP pretraining, ReID, pose, parsing) and their
checkpoints, for the ONNX export and benchmark tests.

Each derived config inherits the project config and only shrinks the ViT (2 blocks, 32 wide)
and the heads, so the export runs the configs' real model types, heads and preprocessing on
CPU in a second. Checkpoints are written as the Runner writes them (``state_dict`` + ``meta``),
with BatchNorm statistics set away from 0/1 so that a missing or wrong BatchNorm shows.
"""
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
# in a derived config: replaces the base config's arch name
TINY_ARCH_CFG = dict(_delete_=True, **TINY_ARCH)
SAIP_CONFIG = ROOT / 'configs' / 'saip' / 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'
REID_CONFIG = (ROOT / 'projects' / 'reid' / 'configs' /
               'reid_saip-vit-tiny-p16_1xb64-pk16x4-120e_market1501-256x128.py')
POSE_CONFIG = (ROOT / 'projects' / 'pose' / 'configs' /
               'td-hm_saip-vit-tiny_8xb64-210e_coco-256x192.py')
PARSING_CONFIG = (ROOT / 'projects' / 'parsing' / 'configs' /
                  'saip-vit-tiny_upernet_4xb4-80k_lip-512x512.py')

# (base config, overrides, input size (H, W))
TINY_OVERRIDES = {
    'backbone': (SAIP_CONFIG, f'model = dict(backbone=dict(arch={TINY_ARCH_CFG!r}, '
                 'img_size=(64, 32), inter_index=1))', (64, 32)),
    'reid': (REID_CONFIG, f'model = dict(backbone=dict(arch={TINY_ARCH_CFG!r}, img_size=(64, 32), '
             'drop_path_rate=0.0), head=dict(in_channels=32, num_classes=5))', (64, 32)),
    'pose': (POSE_CONFIG, f'model = dict(backbone=dict(arch={TINY_ARCH_CFG!r}, img_size=(64, 48), '
             'drop_path_rate=0.0), head=dict(in_channels=32, deconv_out_channels=(16, 16)))',
             (64, 48)),
    # 128x128: an 8x8 grid, pyramid 32/16/8/4, so UPerHead pools 4x4 maps to 3x3 and 6x6 as the
    # real 512x512 config pools 16x16 ones (sizes that do not divide). 4 blocks: Feature2Pyramid
    # takes 4 distinct block outputs.
    'parsing': (PARSING_CONFIG, 'model = dict(backbone=dict('
                f'arch={dict(TINY_ARCH_CFG, num_layers=4)!r}, img_size=(128, 128), '
                'out_indices=(0, 1, 2, 3), drop_path_rate=0.0), '
                'neck=dict(embed_dim=32), decode_head=dict(in_channels=[32, 32, 32, 32], '
                'channels=16), auxiliary_head=dict(in_channels=32, channels=8))', (128, 128)),
}


def load_tool(name: str):
    """Import tools/deployment/<name>.py as a module (tools are scripts, not a package)."""
    path = ROOT / 'tools' / 'deployment' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomize_batchnorm(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def _saip_backbone_checkpoint(folder: Path) -> Path:
    """A SAIP pretraining checkpoint (tiny ViT) converted by saip_to_backbone.py."""
    from mmpretrain.registry import MODELS
    spec = importlib.util.spec_from_file_location(
        'saip_to_backbone', ROOT / 'tools' / 'model_converters' / 'saip_to_backbone.py')
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    model = MODELS.build(dict(
        type='SAIP', backbone=dict(type='SAIPViT', arch=TINY_ARCH, img_size=(64, 32),
                                   inter_index=1),
        csm_head=dict(type='CSMHead', in_channels=32, hidden_channels=32,
                      bottleneck_channels=16, out_channels=64),
        csr_head=None, css_head=None))
    model.init_weights()
    with torch.no_grad():  # pos_embed and cls_token start at zero: make them count
        model.teacher['backbone'].pos_embed.normal_(std=0.02)
        model.teacher['backbone'].cls_token.normal_(std=0.02)
    full = folder / 'saip_pretrain_epoch_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), full)
    out = folder / 'saip_backbone.pth'
    converter.convert(str(full), str(out), anchor=(64, 32))
    return out


@pytest.fixture(scope='session')
def tiny_models(tmp_path_factory) -> SimpleNamespace:
    """Per kind: ``config`` (derived file), ``checkpoint``, ``size`` (H, W). Also ``pretrain``,
    the unconverted SAIP checkpoint."""
    import saip_mm  # noqa: F401
    from mmengine.config import Config

    from saip_mm.deployment.onnx_export import _build_full_model
    folder = tmp_path_factory.mktemp('tiny_models')
    out = SimpleNamespace()
    torch.manual_seed(0)
    for kind, (base, body, size) in TINY_OVERRIDES.items():
        config = folder / f'tiny_{kind}.py'
        config.write_text(f'_base_ = [{str(base)!r}]\n{body}\n')
        if kind == 'backbone':
            checkpoint = _saip_backbone_checkpoint(folder)
        else:
            model = _build_full_model(Config.fromfile(str(config)))
            model.init_weights()
            _randomize_batchnorm(model)
            if kind == 'pose':  # its final layer starts at std 0.001: heatmaps near zero
                torch.nn.init.normal_(model.head.final_layer.weight, std=0.3)
            checkpoint = folder / f'tiny_{kind}_epoch_1.pth'
            torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), checkpoint)
        setattr(out, kind, SimpleNamespace(config=config, checkpoint=checkpoint, size=size))
    out.pretrain = folder / 'saip_pretrain_epoch_1.pth'
    return out


@pytest.fixture(scope='session')
def person_crops(market1501_split) -> Path:
    """A Market-1501-layout split of generated person crops (tests/conftest.py)."""
    return market1501_split
