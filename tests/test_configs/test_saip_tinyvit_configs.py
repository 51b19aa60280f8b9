from pathlib import Path

import pytest
from mmengine.config import Config

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'saip'
RECIPE = CONFIG_DIR / 'saip_tinyvit-5m_8xb256-amp-coslr-300e_lup1m-256x128.py'
SMOKE = CONFIG_DIR / 'saip_tinyvit-5m_1xb8-smoke_vtest-256x128.py'


def check_tinyvit_variant(model: dict) -> None:
    """METHOD §6: CSM on the pooled output, CSS on the third stage, no CSR, its factors."""
    assert model.backbone.type == 'SAIPTinyViT' and model.backbone.arch == '5m'
    assert model.backbone.inter_stage == 2
    assert model.csr_head is None
    assert model.csm_head.in_channels == 320 and model.css_head.in_channels == 160
    assert model.csm_head.loss.attn_loss_weight == 0  # windowed attention: no relations
    assert tuple(model.rescale_factors) == (0.75, 0.875, 1.0, 1.125)


def test_recipe_is_the_vit_recipe_with_the_tinyvit_model():
    cfg = Config.fromfile(str(RECIPE))
    check_tinyvit_variant(cfg.model)
    assert cfg.model.n_local == 8 and cfg.model.css_head.embed_dims == 512
    assert cfg.model.csm_head.out_channels == 65536
    opt = cfg.optim_wrapper
    assert opt.type == 'AmpOptimWrapper' and opt.accumulative_counts == 4
    assert opt.optimizer.lr == pytest.approx(2.5e-4 * 2048 / 256)
    assert opt.paramwise_cfg.custom_keys.attention_biases.decay_mult == 0
    assert opt.paramwise_cfg.custom_keys.pos_embed.decay_mult == 0  # the base's keys stay
    assert cfg.train_cfg.max_epochs == 300 and cfg.train_dataloader.batch_size == 64


def test_smoke_config():
    cfg = Config.fromfile(str(SMOKE))
    check_tinyvit_variant(cfg.model)
    assert cfg.model.n_local == 4 and cfg.train_dataloader.batch_size == 8
    assert cfg.train_cfg.max_iters == 10 and cfg.param_scheduler[-1].end == 10
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # fp32 on CPU
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.attention_biases.decay_mult == 0
    assert [h.type for h in cfg.custom_hooks] == ['SAIPTeacherHook']
