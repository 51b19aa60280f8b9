"""SAIP freezes exactly the backbone modules that its enabled objectives leave without a
gradient (what made DDP stop at step 2), for every config in configs/saip/ and for variants
the configs do not ship (TinyViT ablations, distillation levels of weight 0)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

from dist_train_testlib import small_model, write_teacher_checkpoint
from saip_testlib import LogRecords

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted(p.name for p in (ROOT / 'configs' / 'saip').glob('*.py'))
AFTER_INTER = ['backbone.layers.2', 'backbone.layers.3', 'backbone.ln1']  # inter: block 2 of 4


def expected_frozen(config: str):
    if config.startswith(('saip-csm_', 'kd_')):  # nothing reads `inter`
        return ['backbone.ln_inter']
    if config.startswith(('saip-csr_', 'saip-css_', 'saip-csr-css_')):  # nothing reads `last`
        return AFTER_INTER
    return []


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    return write_teacher_checkpoint(tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def views(n_local: int, batch: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(batch, 224, 224)
    mask[:, 48:176, 60:160] = 1
    return dict(g1=torch.randn(batch, 3, 256, 128, generator=g),
                g2=torch.randn(batch, 3, 256, 128, generator=g),
                locals=torch.randn(batch, n_local - 1, 3, 128, 64, generator=g),
                region=torch.randn(batch, 3, 128, 64, generator=g),
                reference=torch.randn(batch, 3, 224, 224, generator=g),
                instance_mask=mask, roi_mask=mask.flip(-1))


def student(model):
    return [(n, p) for n, p in model.named_parameters() if not n.startswith('teacher.')]


def assert_frozen_is_what_gets_no_gradient(model, frozen_modules):
    """The frozen parameters are those of ``frozen_modules``; with every parameter trainable
    again, one step leaves exactly them without a gradient."""
    assert model.frozen_modules == frozen_modules
    frozen = {n for n, p in student(model) if not p.requires_grad}
    assert frozen == {n for n, _ in student(model)
                      if n.startswith(tuple(m + '.' for m in frozen_modules))}
    assert all(not p.requires_grad for p in model.teacher.parameters())
    for _, p in student(model):
        p.requires_grad_(True)
    losses = model.loss(views(model.n_local))
    sum(losses.values()).backward()
    assert {n for n, p in student(model) if p.grad is None} == frozen


@pytest.mark.parametrize('config', CONFIGS)
def test_config_freezes_what_its_objectives_leave_unused(config, teacher):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'saip' / config))
    torch.manual_seed(0)
    model = MODELS.build(small_model(cfg.model, teacher))
    model.init_weights()  # loads the distillation teacher
    assert_frozen_is_what_gets_no_gradient(model, expected_frozen(config))


TINYVIT = dict(type='SAIPTinyViT', arch=dict(channels=[16, 32, 32, 64], num_heads=[1, 1, 1, 2],
                                             depths=[1, 1, 1, 1]))
CSM = dict(type='CSMHead', in_channels=64, hidden_channels=64, bottleneck_channels=16,
           out_channels=128, loss=dict(type='CSMLoss', out_dim=128, attn_loss_weight=0.0))
CSS = dict(type='CSSHead', in_channels=32, embed_dims=32, num_heads=2)


@pytest.mark.parametrize('heads,frozen', [
    (dict(csm_head=CSM), ['backbone.ln_inter']),
    (dict(css_head=CSS), ['backbone.stages.2.downsample', 'backbone.stages.3', 'backbone.norm3']),
])
def test_tinyvit_ablation_freezes_what_it_leaves_unused(heads, frozen):
    torch.manual_seed(0)
    model = MODELS.build(dict(type='SAIP', backbone=TINYVIT, n_local=2, **heads))
    assert_frozen_is_what_gets_no_gradient(model, frozen)


@pytest.mark.parametrize('weights,built', [((0.0, 1.0, 1.0), (False, True)),
                                           ((1.0, 0.0, 0.0), (True, False))])
def test_distillation_level_of_weight_0_has_no_projector(teacher, weights, built):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'saip' /
                               'kd_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'))
    small_model(cfg.model, teacher).distill_head.loss.update(
        global_weight=weights[0], patch_weight=weights[1], relation_weight=weights[2])
    cfg.model.n_local = 2
    model = MODELS.build(cfg.model)
    model.init_weights()
    head = model.distill_head
    assert (head.global_proj is not None, head.patch_proj is not None) == built
    assert_frozen_is_what_gets_no_gradient(model, ['backbone.ln_inter'])
    # a checkpoint that holds both projectors (written with every weight above 0) loads
    state = model.state_dict()
    for name in ('global_proj', 'patch_proj'):
        state.update({f'distill_head.{name}.weight': torch.zeros(32, 32),
                      f'distill_head.{name}.bias': torch.zeros(32)})
    model.load_state_dict(state, strict=True)  # the unbuilt projector's keys are dropped


def test_the_log_names_the_frozen_modules_and_why():
    logger = MMLogger.get_current_instance()
    records = LogRecords()
    logger.addHandler(records)
    try:
        MODELS.build(dict(type='SAIP', backbone=dict(type='SAIPViT', arch=dict(
            embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64), inter_index=1),
            css_head=CSS, n_local=2))
    finally:
        logger.removeHandler(records)
    assert ('SAIP: frozen (requires_grad=False) because no enabled objective reads the backbone '
            'output `last` (CSM and distillation read it; all off): backbone.layers.2-3, '
            'backbone.ln1') in records.messages
