"""One SAIP training step on the real TinyViT-5M variant (configs/saip/saip_tinyvit-5m_*)."""
from pathlib import Path

import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from test_saip import make_inputs

RECIPE = (Path(__file__).resolve().parents[3] / 'configs' / 'saip' /
          'saip_tinyvit-5m_8xb256-amp-coslr-300e_lup1m-256x128.py')


def test_training_step_on_tinyvit_5m():
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
    # globals; the untouched local crops (batched); the last local crop and the region view,
    # each rescaled by a factor of {0.75, 0.875, 1, 1.125} onto the stride-16 grid
    assert len(seen['student']) == 4 and seen['student'][0] == (256, 128)
    rescaled = seen['student'][1:]
    rescaled.remove((128, 64))
    for h, w in rescaled:
        assert h % 16 == 0 and w % 16 == 0 and 96 <= h <= 144 and 48 <= w <= 64, (h, w)

    sum(losses.values()).backward()
    no_grad = [n for n, p in backbone.named_parameters() if p.grad is None]
    assert not no_grad  # every stage, norm3 (CSM) and ln_inter (CSS) are trained
    assert all(torch.isfinite(p.grad).all() for p in backbone.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    before = next(model.teacher['backbone'].parameters()).clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.update_teacher(momentum=0.5)
    assert not torch.equal(next(model.teacher['backbone'].parameters()), before)
