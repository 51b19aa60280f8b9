"""One SAIP training step on the real TinyViT-5M variant (configs/saip/saip_tinyvit-5m_*)."""
from pathlib import Path

import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from saip_mm.models.algorithms import saip as saip_module
from test_saip import make_inputs  # noqa: I100  (sibling test module)

RECIPE = (Path(__file__).resolve().parents[3] / 'configs' / 'saip' /
          'saip_tinyvit-5m_8xb256-amp-coslr-300e_lup1m-256x128.py')


def test_training_step_on_tinyvit_5m(monkeypatch):
    # Fixed rescale draws (last local crop, then region view): two different sizes, so two
    # passes (equal sizes would share one batched pass).
    draws = [0.75, 1.125]
    monkeypatch.setattr(saip_module.random, 'choice', lambda seq: draws.pop(0))
    cfg = Config.fromfile(str(RECIPE)).model
    cfg.n_local = 3  # 2 local crops: every kind of view (one untouched, one rescaled)
    model = MODELS.build(cfg)
    model.init_weights()
    backbone = model.backbone
    assert sum(p.numel() for p in backbone.parameters()) == 5_072_084  # TinyViT-5M + ln_inter
    assert model.patch_size == backbone.input_stride == 16  # SAIP's view grid

    seen = {'student': [], 'teacher': []}
    for name, module in (('student', backbone), ('teacher', model.teacher['backbone'])):
        module.register_forward_pre_hook(
            lambda m, args, name=name: seen[name].append(tuple(args[0].shape[-2:])))
    losses = model(make_inputs(batch=2, n_local=3), mode='loss')

    # CSM without its attention term (no relations in windowed attention), CSS, no CSR
    assert set(losses) == {'loss_csm', 'loss_css_inst', 'loss_css_roi'}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values()), losses
    assert seen['teacher'] == [(256, 128), (224, 224)]  # globals, then the CSS reference
    # globals; the last local crop ×0.75 (96×48) and the region view ×1.125 (144×72, floored
    # to the stride-16 grid: 144×64); the untouched local crop
    assert seen['student'] == [(256, 128), (96, 48), (144, 64), (128, 64)]

    sum(losses.values()).backward()
    no_grad = [n for n, p in backbone.named_parameters() if p.grad is None]
    assert not no_grad  # every stage, norm3 (CSM) and ln_inter (CSS) are trained
    assert all(torch.isfinite(p.grad).all() for p in backbone.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    before = next(model.teacher['backbone'].parameters()).clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.update_teacher(momentum=0.5)
    assert not torch.equal(next(model.teacher['backbone'].parameters()), before)
