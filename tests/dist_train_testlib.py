"""Several ``tools/train.py`` runs in one 2-process torchrun (gloo on the CPU).

One interpreter start and one process group serve every run, which is what keeps a test that
trains many configs in DDP short. A test calls :func:`run_jobs`; the ranks run this file:

    python -m torch.distributed.run --nproc_per_node 2 --master_port P \\
        tests/dist_train_testlib.py JOBS.json OUT_DIR

``JOBS.json`` lists ``dict(name=..., argv=[...])`` (``tools/train.py`` arguments, without
``--launcher``). Each rank writes ``OUT_DIR/<name>.rank<r>.json``: ``error`` (None when the run
finished; the exception otherwise, a ``KeyboardInterrupt`` included) and what
:class:`DigestHook` recorded after training (iteration, digests of the student's weights and of
this process's random generator states, one draw of each generator).
"""
import json
import os
import random
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))  # saip_testlib

from mmengine.dist import get_rank  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmpretrain.registry import HOOKS  # noqa: E402

import saip_testlib  # noqa: E402,F401  (registers _CrashHook)
from saip_mm.engine.hooks.preflight_hook import rng_digest as state_rng_digest  # noqa: E402
from saip_mm.engine.hooks.preflight_hook import tensor_digest  # noqa: E402
from saip_mm.engine.hooks.random_state_hook import get_rng_state  # noqa: E402


def rng_digest() -> str:
    """SHA-1 of this process's generator states (:func:`get_rng_state`)."""
    return state_rng_digest(get_rng_state())


@HOOKS.register_module(name='_DigestHook')
class DigestHook(Hook):
    """After training, write what this rank ends with to ``<work_dir>/digest_rank<r>.json``."""

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        record = dict(
            iter=runner.iter, world_size=int(os.environ.get('WORLD_SIZE', 1)),
            weights=tensor_digest(dict(model.named_parameters())),
            rng=rng_digest(),
            frozen=[n for n, p in model.named_parameters()
                    if not p.requires_grad and not n.startswith('teacher.')])
        # one draw of each generator (after the digest): readable when two runs differ
        record['draws'] = [random.random(), float(np.random.rand()), torch.rand(1).item()]
        Path(runner.work_dir, f'digest_rank{get_rank()}.json').write_text(json.dumps(record))


# The small model of wiring tests: ViT 32 wide, 4 blocks, ``inter`` after block 2; a TinyViT
# with 1 block per stage; heads and the distillation teacher sized to match.
VIT_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
TINYVIT_ARCH = dict(channels=[16, 32, 32, 64], num_heads=[1, 1, 1, 2], depths=[1, 1, 1, 1])
TEACHER = dict(type='VisionTransformer', arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                                   feedforward_channels=64),
               img_size=(64, 32), patch_size=16)


def write_teacher_checkpoint(path: Path) -> Path:
    """A random :data:`TEACHER` ViT saved in mmpretrain's layout (``state_dict`` of
    ``backbone.*`` keys), which ``DistillHead`` loads directly."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    vit = MODELS.build(dict(TEACHER, norm_cfg=dict(type='LN', eps=1e-6), out_type='raw'))
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in vit.state_dict().items()}}, path)
    return path


def small_model(model, teacher_checkpoint: Path):
    """Shrink a SAIP ``model`` config in place: :data:`VIT_ARCH` or :data:`TINYVIT_ARCH`, heads
    that fit, the :data:`TEACHER` distillation teacher from ``teacher_checkpoint``."""
    if model.backbone.type == 'SAIPTinyViT':
        model.backbone.arch = TINYVIT_ARCH
        inter, last = TINYVIT_ARCH['channels'][model.backbone.get('inter_stage', 2)], 64
    else:
        model.backbone.update(arch=VIT_ARCH, inter_index=1)
        inter = last = 32
    if model.get('csm_head'):
        model.csm_head.update(in_channels=last, hidden_channels=64, bottleneck_channels=16,
                              out_channels=128)
        model.csm_head.loss.out_dim = 128
    if model.get('csr_head'):
        model.csr_head.update(in_channels=inter, embed_dims=32, depth=1, num_heads=2)
    if model.get('css_head'):
        model.css_head.update(in_channels=inter, embed_dims=32, num_heads=2)
    if model.get('distill_head'):
        model.distill_head.update(teacher=TEACHER, teacher_checkpoint=str(teacher_checkpoint),
                                  student_channels=last)
    return model


def rehearsal_config(src: Path, dst: Path, data_root: Path, teacher_checkpoint: Path,
                     iters: int = 2) -> Path:
    """Write ``dst``: the config ``src`` with :func:`small_model`, batch 2 of the images in
    ``data_root``, ``iters`` iterations at a constant lr, plain fp32 ``OptimWrapper`` without
    gradient accumulation (every step reduces gradients, as DDP does after accumulating), a
    checkpoint at the end, no validation, and :class:`DigestHook`. Everything else (pipeline,
    hooks, optimizer, paramwise rules) is the config's own."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(src))
    small_model(cfg.model, teacher_checkpoint)
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False,
                                pin_memory=False)
    cfg.train_dataloader.dataset.update(data_root=str(data_root), ann_file='', background=None)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0,
                                end=iters)]
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP is CUDA-only in MMEngine
    cfg.optim_wrapper.pop('loss_scale', None)
    cfg.optim_wrapper.pop('accumulative_counts', None)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.update(by_epoch=False, interval=iters, max_keep_ckpts=1,
                                        save_best=None)
    cfg.default_hooks.logger.update(interval=1)
    cfg.log_processor.by_epoch = False
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='_DigestHook')]
    cfg.env_cfg.dist_cfg = dict(backend='gloo', timeout=300)
    cfg.dump(str(dst))
    return dst


def run_jobs(jobs: List[dict], out: Path, port: int, timeout: int = 600) -> Dict[str, list]:
    """Run ``jobs`` in one 2-process torchrun; return ``{name: [rank 0 result, rank 1 ...]}``.

    Each result is the rank's JSON (see the module docstring) merged with its run's
    ``digest_rank<r>.json`` when there is one. ``port`` must be unique per test.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / 'jobs.json').write_text(json.dumps(jobs))
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    res = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_port', str(port), __file__, str(out / 'jobs.json'), str(out)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]
    results = {}
    for job in jobs:
        ranks = []
        for rank in range(2):
            result = json.loads((out / f'{job["name"]}.rank{rank}.json').read_text())
            digest = Path(result['work_dir'], f'digest_rank{rank}.json')
            if digest.is_file():
                result.update(json.loads(digest.read_text()))
            ranks.append(result)
        results[job['name']] = ranks
    return results


def main(jobs_file: str, out: str) -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location('saip_train_tool', ROOT / 'tools' / 'train.py')
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    rank = int(os.environ['RANK'])
    for job in json.loads(Path(jobs_file).read_text()):
        argv = list(job['argv'])
        work_dir = argv[argv.index('--work-dir') + 1]
        error = None
        try:
            train_tool.main(argv + ['--launcher', 'pytorch'])
        except (Exception, KeyboardInterrupt) as e:  # recorded; the next job still runs
            error = f'{type(e).__name__}: {e}'
            traceback.print_exc()
        Path(out, f'{job["name"]}.rank{rank}.json').write_text(
            json.dumps(dict(error=error, work_dir=work_dir)))


if __name__ == '__main__':
    main(*sys.argv[1:3])
