"""The SAIP step under CPUAmpOptimWrapper (bf16 autocast on CPU): the autocast dtype reaches
the backbone's matmuls (student and teacher), the loss terms stay close to float32's, the
teacher's float32 weights and the health metrics are unchanged in dtype.

The micro model of tests/data/configs/saip_micro_toy.py: the full method (all five losses,
the lean MLP, partial last blocks, the relation maps) at a width of 32.
"""
import copy
import math
import random

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from saip_testlib import MICRO_CONFIG

LOSSES = ('loss_csm', 'loss_csm_attn', 'loss_csr', 'loss_css_inst', 'loss_css_roi')
# Largest relative difference bf16 autocast may make to a loss term of the same step: bf16
# keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2%) per matmul; through 8 blocks and
# the heads the terms move by well under 1% (CSM: ~0.6% on ViT-Tiny, its 65536-way softmax at
# a teacher temperature of 0.04 amplifies logit rounding); 3% leaves room for the seed.
REL_TOL = 0.03


def _model():
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(MICRO_CONFIG)).model)
    model.init_weights()
    with torch.no_grad():  # a student that differs from its teacher: every term is non-zero
        for p in model.backbone.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.train()


def _inputs(model, batch=2):
    torch.manual_seed(1)
    masks = torch.zeros(batch, 224, 224)
    masks[:, 48:176, 16:80] = 1
    return dict(g1=torch.randn(batch, 3, 256, 128), g2=torch.randn(batch, 3, 256, 128),
                locals=torch.randn(batch, model.n_local - 1, 3, 128, 64),
                region=torch.randn(batch, 3, 128, 64),
                reference=torch.randn(batch, 3, 224, 224),
                instance_mask=masks, roi_mask=masks.flip(-1))


def _wrapper(model, wrapper_type):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return build_optim_wrapper(model, dict(
            type=wrapper_type, constructor='SAIPOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)))


def _losses(model, inputs, wrapper):
    random.seed(0)  # the method's random draws: rescale factors, CSR mask
    torch.manual_seed(2)
    with torch.no_grad(), wrapper.optim_context(model):
        return model(inputs, mode='loss')


def test_loss_terms_under_bf16_autocast_are_close_to_float32():
    model = _model()
    inputs = _inputs(model)
    bf16_model = copy.deepcopy(model)  # the CSM centre is state: each copy updates its own
    fp32 = _losses(model, inputs, _wrapper(model, 'OptimWrapper'))
    bf16 = _losses(bf16_model, inputs, _wrapper(bf16_model, 'CPUAmpOptimWrapper'))
    assert set(fp32) == set(bf16) == set(LOSSES)
    for name in LOSSES:
        a, b = fp32[name].item(), bf16[name].item()
        assert a != 0 and math.isfinite(b), (name, a, b)
        assert abs(b - a) <= REL_TOL * abs(a), (name, a, b)
    # the updated centres (an EMA of the teacher's logits) agree as well
    torch.testing.assert_close(bf16_model.csm_head.loss_module.center,
                               model.csm_head.loss_module.center, rtol=0.05, atol=1e-3)


def test_train_step_runs_the_matmuls_in_bf16_and_keeps_the_float32_teacher():
    model = _model()
    wrapper = _wrapper(model, 'CPUAmpOptimWrapper')
    inputs = _inputs(model)
    seen = {'student': [], 'teacher': [], 'student_mlp': []}
    model.backbone.layers[0].attn.qkv.register_forward_hook(
        lambda m, i, o: seen['student'].append(o.dtype))
    model.backbone.layers[0].ffn.layers[0][0].register_forward_hook(
        lambda m, i, o: seen['student_mlp'].append(o.dtype))
    model.teacher['backbone'].layers[0].attn.qkv.register_forward_hook(
        lambda m, i, o: seen['teacher'].append(o.dtype))
    teacher_keys = set(model.teacher.state_dict())
    for step in range(2):
        model.health_due = True
        # MMEngine's train_step without the data preprocessor
        with wrapper.optim_context(model):
            losses = model(inputs, mode='loss')
        loss, log_vars = model.parse_losses(losses)
        wrapper.update_params(loss)
        model.update_teacher(momentum=0.9)
        assert all(math.isfinite(float(v.detach())) for v in log_vars.values()), log_vars
        health = model.health
        assert health and all(type(v) is float and math.isfinite(v)
                              for v in health.values()), health
    # student: globals, locals, rescaled local + region, CSR view; teacher: globals, reference
    assert seen['student'] and set(seen['student']) == {torch.bfloat16}
    assert seen['student_mlp'] and set(seen['student_mlp']) == {torch.bfloat16}
    assert seen['teacher'] == [torch.bfloat16] * 4
    # the float32 master weights: what the EMA updates, checkpoints save and exports read
    assert all(p.dtype is torch.float32 for p in model.parameters())
    assert set(model.teacher.state_dict()) == teacher_keys
    assert all(p.grad is None or p.grad.dtype is torch.float32 for p in model.parameters())


def test_teacher_follows_the_ema_under_autocast():
    """The teacher's cast weights are remade after each EMA update: its outputs in step 2 are
    those of its updated float32 weights."""
    model = _model()
    wrapper = _wrapper(model, 'CPUAmpOptimWrapper')
    inputs = _inputs(model)
    for _ in range(2):
        with wrapper.optim_context(model):
            losses = model(inputs, mode='loss')
        wrapper.update_params(model.parse_losses(losses)[0])
        model.update_teacher(momentum=0.5)
        teacher = model.teacher['backbone']
        with torch.no_grad(), wrapper.optim_context(model):
            cached = model.teacher_casts(teacher, inputs['g1'], cls_only=True)['last']
            plain = teacher(inputs['g1'], cls_only=True)['last']
        assert torch.equal(cached, plain)
