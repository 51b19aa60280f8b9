"""CPUAmpOptimWrapper: bf16 autocast on CPU in the step, checkpoints, and the CPU detection."""
import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import OPTIM_WRAPPERS, DefaultScope

import saip_mm  # noqa: F401  (registers the wrapper)
from saip_mm.engine.optimizers import (CPUAmpOptimWrapper, amp_on_cpu, cpu_bf16_feature,
                                       native_amp_available)
from saip_mm.engine.optimizers import cpu_amp_optim_wrapper as module

OPTIMIZER = dict(type='AdamW', lr=1e-2, betas=(0.9, 0.95), weight_decay=0.05)


def _wrapper(model, **kwargs):
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # as a Runner sets it
        return build_optim_wrapper(model, dict(type='CPUAmpOptimWrapper', optimizer=OPTIMIZER,
                                               **kwargs))


def test_registered_in_mmengine_root_registry_and_built_from_mmpretrain_scope():
    assert OPTIM_WRAPPERS.get('CPUAmpOptimWrapper') is CPUAmpOptimWrapper
    wrapper = _wrapper(nn.Linear(4, 4))
    assert isinstance(wrapper, CPUAmpOptimWrapper) and wrapper.cast_dtype is torch.bfloat16
    assert not hasattr(wrapper, 'loss_scaler')  # bf16: no scaling


def test_optim_context_runs_the_forward_in_bf16_and_keeps_float32_parameters():
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 2))
    wrapper = _wrapper(model)
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        assert torch.get_autocast_dtype('cpu') is torch.bfloat16
        loss = model(torch.randn(4, 8)).float().pow(2).mean()
    assert not torch.is_autocast_enabled('cpu')
    before = model[0].weight.detach().clone()
    wrapper.update_params(loss)  # backward, step, zero_grad: outside autocast
    assert seen == [torch.bfloat16]
    assert all(p.dtype is torch.float32 and p.grad is None for p in model.parameters())
    assert not torch.equal(before, model[0].weight)


def test_only_bfloat16():
    with pytest.raises(ValueError, match='bfloat16 only'):
        _wrapper(nn.Linear(2, 2), dtype='float16')


def test_state_dict_round_trip_and_an_amp_optim_wrapper_checkpoint_loads():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    wrapper = _wrapper(model)
    for _ in range(2):
        with wrapper.optim_context(model):
            loss = model(torch.randn(5, 4)).float().sum()
        wrapper.update_params(loss)
    state = wrapper.state_dict()
    assert 'loss_scaler' not in state and set(state) >= {'state', 'param_groups'}

    fresh = _wrapper(nn.Linear(4, 3))
    fresh.load_state_dict(state)
    assert fresh.optimizer.state_dict()['state'][0]['step'] == 2
    # a GPU run's checkpoint (AmpOptimWrapper) carries its GradScaler state: dropped here
    gpu_state = dict(state, loss_scaler={'scale': 65536.0, '_growth_tracker': 0})
    again = _wrapper(nn.Linear(4, 3))
    again.load_state_dict(gpu_state)
    for (a, b) in zip(again.optimizer.state_dict()['state'][0].values(),
                      state['state'][0].values()):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    assert 'loss_scaler' in gpu_state  # the caller's dict is not changed


def test_amp_on_cpu_keeps_the_recipe_and_drops_the_loss_scale():
    recipe = dict(type='AmpOptimWrapper', loss_scale='dynamic', accumulative_counts=4,
                  constructor='SAIPOptimWrapperConstructor', optimizer=OPTIMIZER,
                  paramwise_cfg=dict(norm_decay_mult=0.0))
    cfg, note = amp_on_cpu(recipe)
    assert cfg == dict(type='CPUAmpOptimWrapper', dtype='bfloat16', accumulative_counts=4,
                       constructor='SAIPOptimWrapperConstructor', optimizer=OPTIMIZER,
                       paramwise_cfg=dict(norm_decay_mult=0.0))
    assert recipe['type'] == 'AmpOptimWrapper'  # not changed
    assert 'AmpOptimWrapper -> CPUAmpOptimWrapper' in note and 'dropped loss_scale' in note
    _, note16 = amp_on_cpu(dict(type='AmpOptimWrapper', dtype='float16', optimizer=OPTIMIZER))
    assert 'dtype float16 -> bfloat16' in note16


@pytest.mark.parametrize('caps,feature', [
    ({'avx2': True, 'avx512_bf16': True, 'amx_bf16': False}, 'avx512_bf16'),
    ({'avx512_bf16': True, 'amx_bf16': True}, 'amx_bf16'),
    ({'neon': True, 'bf16': True}, 'bf16'),  # Arm
    ({'avx2': True, 'avx512_f': True, 'avx512_bf16': False}, None),  # emulated bf16
])
def test_cpu_bf16_feature_from_torch_capabilities(monkeypatch, caps, feature):
    monkeypatch.setattr(module.torch.cpu, 'get_capabilities', lambda: caps)
    assert cpu_bf16_feature() == feature
    assert native_amp_available('cpu') == (feature is not None)
    assert native_amp_available('cuda')


def test_amp_on_cpu_says_when_bf16_is_emulated(monkeypatch):
    monkeypatch.setattr(module.torch.cpu, 'get_capabilities', lambda: {'avx2': True})
    _, note = amp_on_cpu(dict(type='AmpOptimWrapper', optimizer=OPTIMIZER))
    assert 'no bf16 units' in note and 'emulated and slower' in note
    monkeypatch.setattr(module.torch.cpu, 'get_capabilities', lambda: {'avx512_bf16': True})
    _, note = amp_on_cpu(dict(type='AmpOptimWrapper', optimizer=OPTIMIZER))
    assert 'runs bf16 natively (avx512_bf16)' in note


def test_cpu_bf16_feature_from_proc_cpuinfo_on_older_torch(monkeypatch, tmp_path):
    monkeypatch.delattr(module.torch.cpu, 'get_capabilities')
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\n'
                       'processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n')
    real_open = open
    monkeypatch.setattr('builtins.open', lambda path, *a, **k: real_open(
        cpuinfo if path == '/proc/cpuinfo' else path, *a, **k))
    assert cpu_bf16_feature() == 'avx512_bf16'
    cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx2\n')
    assert cpu_bf16_feature() is None
