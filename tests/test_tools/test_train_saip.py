"""tools/train.py runs the full SAIP method; resume and 2-process training work."""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS

from saip_mm.models.algorithms import cosine_momentum

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'
LOSSES = ('loss_csm', 'loss_csm_attn', 'loss_csr', 'loss_css_inst', 'loss_css_roi')


def _scalars(work_dir: Path):
    files = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert files, f'no scalars.json under {work_dir}'
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_train_py_runs_all_five_losses(person_folder, tmp_path):
    work = tmp_path / 'work'
    res = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), str(CONFIG), '--work-dir', str(work),
         '--cfg-options', f'train_dataloader.dataset.data_root={person_folder}'],
        capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [r for r in _scalars(work) if 'loss' in r]
    assert [r['iter'] for r in rows] == [1, 2, 3]
    for row in rows:
        for name in LOSSES:
            assert name in row and torch.isfinite(torch.tensor(row[name])), (name, row)
        assert abs(row['loss'] - sum(row[n] for n in LOSSES)) < 1e-3 * max(1, abs(row['loss']))
    assert (work / 'iter_3.pth').is_file()


@HOOKS.register_module()
class _ResumeProbeHook(Hook):
    """Records the state the run starts from, after the Runner has resumed."""
    seen = {}

    def before_train(self, runner):
        model = runner.model
        _ResumeProbeHook.seen = dict(
            iter=runner.iter,
            teacher={k: v.clone() for k, v in model.teacher.state_dict().items()},
            center=model.csm_head.loss_module.center.clone(),
            lr=runner.optim_wrapper.get_lr()['lr'][0])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        _ResumeProbeHook.seen.setdefault('momenta', []).append(
            runner.message_hub.get_scalar('train/teacher_momentum').current())


def _runner(cfg_path, work_dir, data_root, **options):
    cfg = Config.fromfile(str(cfg_path))
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader.dataset.data_root = str(data_root)
    cfg.merge_from_dict(options)
    return Runner.from_cfg(cfg)


def test_resume_continues_teacher_center_and_schedules(person_folder, tmp_path):
    work = tmp_path / 'work'
    # interrupted run: 2 of 4 iterations, a cosine lr so the schedule position matters
    sched = [dict(type='CosineAnnealingLR', T_max=4, by_epoch=False, begin=0, end=4)]
    first = _runner(CONFIG, work, person_folder, **{'train_cfg.max_iters': 2,
                                                    'param_scheduler': sched})
    first.train()
    ckpt = torch.load(work / 'iter_2.pth', map_location='cpu')  # weights_only=True
    assert ckpt['meta']['iter'] == 2

    hooks = [dict(type='SAIPTeacherHook'), dict(type='_ResumeProbeHook')]
    second = _runner(CONFIG, work, person_folder, **{
        'train_cfg.max_iters': 4, 'param_scheduler': sched, 'resume': True,
        'load_from': str(work / 'iter_2.pth'), 'custom_hooks': hooks})
    second.train()
    seen = _ResumeProbeHook.seen
    assert seen['iter'] == 2
    saved_teacher = {k[len('teacher.'):]: v for k, v in ckpt['state_dict'].items()
                     if k.startswith('teacher.')}
    assert saved_teacher.keys() == seen['teacher'].keys()
    for k, v in saved_teacher.items():
        assert torch.equal(v, seen['teacher'][k]), k
    center = ckpt['state_dict']['csm_head.loss_module.center']
    assert center.abs().sum() > 0 and torch.equal(center, seen['center'])
    # the lr and the teacher momentum continue where the first run stopped (iterations 3, 4)
    lr0 = 2.5e-4 * 16 / 256 * 4
    assert math.isclose(seen['lr'], lr0 * (1 + math.cos(math.pi * 2 / 4)) / 2)
    expected = [cosine_momentum(0.996, 1.0, i, 4) for i in (3, 4)]
    assert [round(m, 9) for m in seen['momenta']] == [round(m, 9) for m in expected]
    final = torch.load(work / 'iter_4.pth', map_location='cpu')
    assert final['meta']['iter'] == 4
    steps = [s['step'] for s in final['optimizer']['state'].values()]
    assert steps and all(int(s) == 4 for s in steps)


def test_two_process_training_keeps_one_center(person_folder, tmp_path):
    probe = tmp_path / 'probe_hooks.py'
    probe.write_text(textwrap.dedent('''
        import torch
        from mmengine.dist import get_rank
        from mmengine.hooks import Hook
        from mmpretrain.registry import HOOKS

        @HOOKS.register_module()
        class DumpCenterHook(Hook):
            def after_train(self, runner):
                center = runner.model.module.csm_head.loss_module.center
                torch.save(center.cpu(), f'{runner.work_dir}/center_rank{get_rank()}.pt')
    '''))
    config = tmp_path / 'dist_probe.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = '{CONFIG}'
        custom_imports = dict(imports=['saip_mm', 'probe_hooks'], allow_failed_imports=False)
        custom_hooks = [dict(type='SAIPTeacherHook'), dict(type='DumpCenterHook')]
        train_cfg = dict(max_iters=2)
    '''))
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
               OMP_NUM_THREADS='1')
    res = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_port', '29617', str(ROOT / 'tools' / 'train.py'), str(config),
         '--launcher', 'pytorch', '--work-dir', str(work), '--cfg-options',
         f'train_dataloader.dataset.data_root={person_folder}'],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    c0 = torch.load(work / 'center_rank0.pt')
    c1 = torch.load(work / 'center_rank1.pt')
    assert c0.abs().sum() > 0
    assert torch.equal(c0, c1)
