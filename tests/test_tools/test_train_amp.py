"""tools/train.py --amp on a CPU: CPUAmpOptimWrapper (bf16 autocast), the recipes' own
AmpOptimWrapper turned into it with one log line, checkpoints that resume."""
import logging
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from saip_mm.engine.optimizers import cpu_amp_optim_wrapper

ROOT = Path(__file__).resolve().parents[2]
MICRO = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'
DEMO = ROOT / 'configs' / 'saip' / 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'
RECIPE = ROOT / 'configs' / 'saip' / 'saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason='the CPU path: with a GPU --amp is AmpOptimWrapper')


def _merged(train_tool, config, *argv):
    args = train_tool.parse_args([str(config)] + list(argv))
    notes = []
    return train_tool.merge_args(Config.fromfile(str(config)), args, notes), notes


def test_amp_flag_picks_the_cpu_wrapper(train_tool, monkeypatch):
    monkeypatch.setattr(cpu_amp_optim_wrapper.torch.cpu, 'get_capabilities',
                        lambda: {'avx512_bf16': True})
    cfg, notes = _merged(train_tool, DEMO, '--amp')
    opt = cfg.optim_wrapper
    assert opt.type == 'CPUAmpOptimWrapper' and opt.dtype == 'bfloat16'
    assert 'loss_scale' not in opt
    assert opt.constructor == 'SAIPOptimWrapperConstructor' and opt.optimizer.fused
    (level, note), = notes
    assert level == logging.INFO and 'OptimWrapper -> CPUAmpOptimWrapper' in note
    assert 'runs bf16 natively (avx512_bf16)' in note and 'dropped' not in note


def test_recipe_amp_config_runs_on_cpu_without_the_flag(train_tool, monkeypatch):
    """MMEngine's AmpOptimWrapper asserts an accelerator; on a CPU the recipe gets the CPU
    wrapper with the rest of its optimiser settings, and a warning when bf16 is emulated."""
    monkeypatch.setattr(cpu_amp_optim_wrapper.torch.cpu, 'get_capabilities',
                        lambda: {'avx2': True})
    cfg, notes = _merged(train_tool, RECIPE)
    opt = cfg.optim_wrapper
    assert opt.type == 'CPUAmpOptimWrapper' and 'loss_scale' not in opt
    assert opt.accumulative_counts == 4 and opt.paramwise_cfg.norm_decay_mult == 0.0
    (level, note), = notes
    assert level == logging.WARNING and 'AmpOptimWrapper -> CPUAmpOptimWrapper' in note
    assert 'dropped loss_scale' in note
    assert 'no bf16 units' in note
    with pytest.raises(ValueError, match='already AmpOptimWrapper'):
        _merged(train_tool, RECIPE, '--amp')
    plain, notes = _merged(train_tool, DEMO)
    assert plain.optim_wrapper.type == 'OptimWrapper' and not notes


def test_amp_training_logs_the_switch_and_resumes(train_tool, person_folder, tmp_path):
    work = tmp_path / 'work'
    data = f'train_dataloader.dataset.data_root={person_folder}'
    train_tool.main([str(MICRO), '--amp', '--work-dir', str(work), '--cfg-options', data,
                     'train_cfg.max_iters=2'])
    logs = list(work.glob('*/*.log'))
    text = logs[0].read_text()
    assert 'OptimWrapper -> CPUAmpOptimWrapper' in text
    ckpt = torch.load(work / 'iter_2.pth', map_location='cpu')  # weights_only=True
    assert 'loss_scaler' not in ckpt['optimizer'] and ckpt['optimizer']['state']
    assert all(v.dtype is torch.float32 for k, v in ckpt['state_dict'].items()
               if k.startswith('teacher.') and v.is_floating_point())
    # resume the bf16 run for one more iteration, from its checkpoint
    train_tool.main([str(MICRO), '--amp', '--work-dir', str(work), '--resume',
                     '--cfg-options', data, 'train_cfg.max_iters=3'])
    final = torch.load(work / 'iter_3.pth', map_location='cpu')
    steps = {int(s['step']) for s in final['optimizer']['state'].values()}
    assert final['meta']['iter'] == 3 and steps == {3}
