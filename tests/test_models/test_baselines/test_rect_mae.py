"""Rectangular MAE (saip_mm.models.baselines): sin-cos grid, one training step, export."""
import math
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import saip_mm  # noqa: F401  (registers the Rect* classes)
from mmpretrain.registry import MODELS
from saip_mm.models.baselines import rect_sincos_position_embedding
from saip_mm.utils import extract_backbone

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / 'configs' / 'mae' / 'mae_vit-tiny-p16_1xb16-cpu_vtest-256x128.py'


def test_rect_sincos_by_hand():
    emb = rect_sincos_position_embedding((16, 8), 192)
    assert emb.shape == (1, 129, 192)
    assert torch.all(emb[0, 0] == 0)  # cls row
    # patch 29 in row-major order of a 16x8 grid: row 3, column 5; D/4 = 48 frequencies
    omega1 = 1 / 10000**(1 / 48)
    vec = emb[0, 1 + 29]
    assert vec[0].item() == torch.tensor(math.sin(5.0)).item()  # sin(col * omega_0)
    assert math.isclose(vec[1].item(), math.sin(5 * omega1), rel_tol=1e-5)
    assert math.isclose(vec[48].item(), math.cos(5.0), rel_tol=1e-5)
    assert math.isclose(vec[96].item(), math.sin(3.0), rel_tol=1e-5)
    assert math.isclose(vec[144 + 1].item(), math.cos(3 * omega1), rel_tol=1e-5)


def test_mae_config_trains_one_step_and_exports_a_stock_vit():
    cfg = Config.fromfile(str(CONFIG))
    if DefaultScope.get_current_instance() is None or \
            DefaultScope.get_current_instance().scope_name != 'mmpretrain':
        DefaultScope.get_instance('test_rect_mae', scope_name='mmpretrain')
    # MAE never reads a background: its loader does not decode the one the dataset names
    assert cfg.train_dataloader.dataset.pipeline[0] == dict(type='LoadPersonImage',
                                                            with_background=False)
    cfg.model.neck.decoder_depth = 1  # the config's wiring; one decoder block keeps it fast
    model = MODELS.build(cfg.model)
    model.init_weights()
    # the fixed embeddings are the rectangular grid's (stock MAE fails here: 11x11 != 128)
    assert torch.equal(model.backbone.pos_embed.data,
                       rect_sincos_position_embedding((16, 8), 192))
    assert torch.equal(model.neck.decoder_pos_embed.data,
                       rect_sincos_position_embedding((16, 8), 512))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    # as the config's default_collate stacks PackInputs' images
    data = dict(inputs=torch.randint(0, 255, (2, 3, 256, 128), dtype=torch.uint8),
                data_samples=None)
    before = model.backbone.layers[0].attn.qkv.weight.detach().clone()
    losses = model.train_step(data, optim)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, model.backbone.layers[0].attn.qkv.weight)
    assert torch.equal(model.backbone.pos_embed.data,  # not learnable in MAE
                       rect_sincos_position_embedding((16, 8), 192))

    # the encoder exports as the converter's 'student' and loads into a stock ViT, all keys
    backbone, dropped = extract_backbone(model.state_dict(), 'student')
    assert any(k.startswith('neck.') for k in dropped)
    from mmpretrain.models import VisionTransformer
    vit = VisionTransformer(arch='deit-tiny', img_size=(256, 128), patch_size=16,
                            out_type='cls_token', norm_cfg=dict(type='LN', eps=1e-6))
    missing, unexpected = vit.load_state_dict(
        {k[len('backbone.'):]: v for k, v in backbone.items()}, strict=True)
    assert not missing and not unexpected
