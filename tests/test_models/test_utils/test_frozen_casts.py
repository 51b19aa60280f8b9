"""FrozenWeightCasts: a frozen module under autocast with its weights cast once per change."""
import torch
import torch.nn as nn
from mmengine.config import Config
from mmpretrain.registry import MODELS
from torch.utils._python_dispatch import TorchDispatchMode

from saip_testlib import MICRO_CONFIG
from saip_mm.models.utils.frozen_casts import FrozenWeightCasts

BF16 = dict(device_type='cpu', dtype=torch.bfloat16)


class ParameterCasts(TorchDispatchMode):
    """Counts dtype casts (``aten._to_copy``) of the parameters of ``module`` (or views)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.storages = {p.untyped_storage().data_ptr() for p in module.parameters()}
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is torch.ops.aten._to_copy and \
                args[0].untyped_storage().data_ptr() in self.storages:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _frozen():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(1), nn.LayerNorm(8 * 4 * 4),
                          nn.Linear(8 * 4 * 4, 16), nn.GELU(), nn.Linear(16, 4))
    return model.requires_grad_(False).eval()


def test_same_outputs_bit_for_bit_and_weights_cast_once_per_change():
    model, casts, x = _frozen(), FrozenWeightCasts(), torch.randn(2, 3, 6, 6)
    keys = set(model.state_dict())
    with torch.autocast(**BF16):
        plain = model(x)
        with ParameterCasts(model) as first:
            cached = casts(model, x)
        with ParameterCasts(model) as second:
            again = casts(model, x)
    assert plain.dtype is torch.bfloat16 and torch.equal(cached, plain) and torch.equal(again,
                                                                                         plain)
    assert first.count == 6  # conv and both linears: weight and bias, once
    assert second.count == 0
    # the EMA-style in-place update changes the weights: cast again, same result as plain
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    with torch.autocast(**BF16):
        with ParameterCasts(model) as third:
            updated = casts(model, x)
        assert torch.equal(updated, model(x)) and not torch.equal(updated, plain)
    assert third.count == 6
    # the module's own parameters are untouched: float32, same state-dict keys
    assert all(p.dtype is torch.float32 for p in model.parameters())
    assert set(model.state_dict()) == keys


def test_outside_autocast_and_for_trainable_modules_the_module_runs_as_it_is():
    model, casts, x = _frozen(), FrozenWeightCasts(), torch.randn(2, 3, 6, 6)
    out = casts(model, x)
    assert out.dtype is torch.float32 and torch.equal(out, model(x))
    trainable = nn.Linear(4, 4)
    with torch.autocast(**BF16), ParameterCasts(trainable) as counted:
        y = casts(trainable, torch.randn(2, 4))
    assert y.requires_grad and counted.count == 2  # autocast's own (cached) casts
    assert not casts._cache


def test_saip_teacher_backbone_matches_its_plain_call_under_autocast():
    """Every path of the teacher backbone (patch embedding as a matmul, partial last block,
    lean MLP, relation maps) gives the plain autocast call's outputs."""
    cfg = Config.fromfile(str(MICRO_CONFIG))
    model = MODELS.build(cfg.model)
    model.init_weights()
    teacher, x = model.teacher['backbone'], torch.randn(2, 3, 64, 32)
    with torch.no_grad(), torch.autocast(**BF16):
        plain = teacher(x, return_relations=True, cls_only=True)
        cached = model.teacher_casts(teacher, x, return_relations=True, cls_only=True)
        ref_plain = teacher(x, stop_at_inter=True)
        ref_cached = model.teacher_casts(teacher, x, stop_at_inter=True)
    for key in ('inter', 'last'):
        assert torch.equal(cached[key], plain[key]), key
    for key, rel in plain['relations'].items():
        assert torch.equal(cached['relations'][key], rel), key
    assert torch.equal(ref_cached['inter'], ref_plain['inter'])
    assert not any(k.startswith('teacher_casts') for k in model.state_dict())
