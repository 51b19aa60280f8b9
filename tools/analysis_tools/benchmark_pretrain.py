#!/usr/bin/env python
"""Time one SAIP training step against mmpretrain's MAE on the same backbone, batch and size.

Both models get a ViT of the same arch, the same per-step batch and the same anchor input
(256×128 by default; SAIP also sees its other views: locals, region, reference, the ×1.25 CSR
view). Each model runs in its own process so peak memory is its own: CUDA peak allocated
memory on a GPU, peak resident set size (RSS growth over the process's start) on CPU.

    python tools/analysis_tools/benchmark_pretrain.py --batch 8 --steps 5
    python tools/analysis_tools/benchmark_pretrain.py --device cuda --batch 64 --amp

Prints a table and the SAIP/MAE ratios; ``--json`` also writes them to a file.

``--baseline REF`` also measures SAIP as it is at git revision ``REF`` (a temporary
``git worktree``, imported in its own process), in the same run, and prints this tree's SAIP
step time and peak memory as ratios of that baseline:

    python tools/analysis_tools/benchmark_pretrain.py --batch 8 --steps 3 --threads 2 --baseline main

``--teachers vit-small vit-base`` also measures SAIP with cross-scale distillation from a
frozen ViT-S/16 or ViT-B/16 teacher (random weights, same cost; 256×128 input): the step time
and peak memory with each teacher, and the teacher's share of the step (its forward pass,
timed alone over the same steps):

    python tools/analysis_tools/benchmark_pretrain.py --batch 8 --steps 3 --teachers vit-small vit-base

Both trees get the same inputs and the same rescale factors (``--rescale-factors``, default
1.25 for both views, the case where every revision feeds the backbone the same sizes), so the
work is the same; each tree trains with the optimiser of its own reference config (type,
options, parameter groups). Time nothing else on the machine meanwhile.
"""
import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='SAIP vs MAE training-step benchmark')
    parser.add_argument('--arch', default='tiny', choices=['tiny', 'small', 'tinyvit-5m'],
                        help='ViT-Tiny/-Small (SAIPViT) or TinyViT-5M (SAIPTinyViT, SAIP only: '
                             'built from its reference config, CSR off, no MAE counterpart)')
    parser.add_argument('--batch', type=int, default=8, help='per-step batch')
    parser.add_argument('--steps', type=int, default=5, help='timed steps (after 2 warm-up)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--amp', action='store_true', help='bfloat16/float16 autocast (CUDA)')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (0: torch default)')
    parser.add_argument('--json', help='also write the figures to this JSON file')
    parser.add_argument('--baseline', metavar='REF',
                        help='also measure SAIP at this git revision, in the same run')
    parser.add_argument('--rescale-factors', type=float, nargs='+', default=[1.25],
                        help='SAIP rescale factors for the last local crop and the region view')
    parser.add_argument('--models', nargs='+', default=['MAE', 'SAIP'],
                        choices=['MAE', 'SAIP'], help='which models to measure')
    parser.add_argument('--teachers', nargs='+', default=[], choices=sorted(TEACHERS),
                        help='also measure SAIP + distillation from these frozen teachers')
    return parser.parse_args()


# Teacher ViTs of the distillation benchmark (mmpretrain arch names), at SAIP's 256x128 input.
TEACHERS = {'vit-small': 'small', 'vit-base': 'base'}


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _saip(arch: str, factors=(1.25, ), distill_head: Optional[dict] = None):
    from mmpretrain.registry import MODELS
    if arch == 'tinyvit-5m':
        return _saip_from_config(TINYVIT_CONFIG, factors)
    width = 192 if arch == 'tiny' else 384
    model = MODELS.build(dict(
        type='SAIP', backbone=dict(type='SAIPViT', arch=arch), rescale_factors=tuple(factors),
        csm_head=dict(type='CSMHead', in_channels=width),
        csr_head=dict(type='CSRHead', in_channels=width),
        css_head=dict(type='CSSHead', in_channels=width),
        distill_head=None if distill_head is None else dict(distill_head,
                                                            student_channels=width)))
    model.init_weights()
    return model


TINYVIT_CONFIG = 'configs/saip/saip_tinyvit-5m_8xb256-amp-coslr-300e_lup1m-256x128.py'


def _saip_kd(arch: str, factors, teacher: str):
    """SAIP with a distillation head whose frozen teacher is a random ``teacher`` ViT.

    The teacher is saved to a temporary folder in the converter's layout and loaded as a run
    would (``init_weights``); random weights cost the same as pretrained ones.
    """
    from mmpretrain.models import VisionTransformer

    from saip_mm.utils.vit_checkpoint import build_backbone_checkpoint
    teacher_cfg = dict(type='VisionTransformer', arch=TEACHERS[teacher], img_size=(256, 128),
                       patch_size=16)
    vit = VisionTransformer(**{k: v for k, v in teacher_cfg.items() if k != 'type'})
    with tempfile.TemporaryDirectory(prefix='saip_bench_teacher_') as folder:
        path = os.path.join(folder, f'{teacher}.pth')
        torch.save(build_backbone_checkpoint(vit.state_dict(), vit.patch_resolution)[0], path)
        return _saip(arch, factors, dict(type='DistillHead', teacher=teacher_cfg,
                                         teacher_checkpoint=path))


def _tree_config(config: str):
    """A config of the ``saip_mm`` tree this process imports (this checkout or the baseline)."""
    import saip_mm
    from mmengine.config import Config
    tree = Path(saip_mm.__file__).resolve().parents[1]
    return Config.fromfile(str(tree / config))


def _saip_from_config(config: str, factors):
    """The SAIP model of a reference config of the imported tree, at the given rescale factors."""
    from mmpretrain.registry import MODELS
    cfg = _tree_config(config)
    cfg.model.rescale_factors = tuple(factors)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _saip_inputs(batch: int, device: str) -> Dict[str, torch.Tensor]:
    masks = torch.zeros(batch, 224, 224, device=device)
    masks[:, 48:176, 16:80] = 1
    return dict(g1=torch.randn(batch, 3, 256, 128, device=device),
                g2=torch.randn(batch, 3, 256, 128, device=device),
                locals=torch.randn(batch, 7, 3, 128, 64, device=device),
                region=torch.randn(batch, 3, 128, 64, device=device),
                reference=torch.randn(batch, 3, 224, 224, device=device),
                instance_mask=masks, roi_mask=masks.flip(-1))


def _mae(arch: str):
    """mmpretrain's MAE (ViT, 8-block 512-wide decoder, 75% masking) at 256×128.

    Stock MAE assumes square inputs in its sin-cos init and its patchify; the benchmark keeps
    the default (random) init and patchifies on the rectangular grid, which changes no cost.
    """
    from mmpretrain.models.heads import MAEPretrainHead
    from mmpretrain.registry import MODELS

    from saip_mm.models.heads import patchify

    class RectMAEHead(MAEPretrainHead):
        def patchify(self, imgs):
            return patchify(imgs, self.patch_size)

    width = 192 if arch == 'tiny' else 384
    model = MODELS.build(dict(
        type='MAE',
        backbone=dict(type='MAEViT', arch=f'deit-{arch}', img_size=(256, 128), patch_size=16,
                      mask_ratio=0.75),
        neck=dict(type='MAEPretrainDecoder', num_patches=128, patch_size=16, in_chans=3,
                  embed_dim=width, decoder_embed_dim=512, decoder_depth=8,
                  decoder_num_heads=16, mlp_ratio=4.),
        head=RectMAEHead(loss=dict(type='PixelReconstructionLoss', criterion='L2'),
                         norm_pix=True, patch_size=16)))
    return model


def _optim_wrapper(model, args: argparse.Namespace):
    """The optimiser of the reference config of the ``saip_mm`` tree this process imports.

    Each tree is measured with its own recipe (optimiser type and options, parameter groups,
    constructor), with gradient accumulation off (one update per step); ``AmpOptimWrapper``
    with ``--amp`` on CUDA, the plain ``OptimWrapper`` otherwise.
    """
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    cfg = _tree_config('configs/saip/saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py')
    wrapper = cfg.optim_wrapper.copy()
    wrapper.pop('accumulative_counts', None)
    if not (args.amp and args.device.startswith('cuda')):
        wrapper['type'] = 'OptimWrapper'
        wrapper.pop('loss_scale', None)
    if DefaultScope.get_current_instance() is None:
        DefaultScope.get_instance('benchmark_pretrain', scope_name='mmpretrain')
    return build_optim_wrapper(model, wrapper)


def _measure(name: str, args: argparse.Namespace, queue: mp.Queue, tree: str) -> None:
    import sys
    # First on the path: a develop-mode install would otherwise put its checkout before
    # PYTHONPATH.
    sys.path.insert(0, tree)
    import saip_mm  # noqa: F401  (registers SAIP)
    if not saip_mm.__file__.startswith(tree):
        raise SystemExit(f'{name}: imported saip_mm from {saip_mm.__file__}, not from {tree}')
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rss0 = _rss_bytes()
    device = args.device
    if name.startswith('SAIP+KD'):
        model = _saip_kd(args.arch, args.rescale_factors, name.split(':')[1])
    elif name.startswith('SAIP'):
        model = _saip(args.arch, args.rescale_factors)
    else:
        model = _mae(args.arch)
    model = model.to(device).train()
    optim_wrapper = _optim_wrapper(model, args)
    if name.startswith('SAIP'):
        inputs = _saip_inputs(args.batch, device)
    else:
        inputs = torch.randn(args.batch, 3, 256, 128, device=device)
    amp_dtype = torch.bfloat16 if device == 'cpu' else torch.float16

    def step():
        with torch.autocast(device_type=device.split(':')[0], dtype=amp_dtype,
                            enabled=args.amp):
            losses = model(inputs, mode='loss')
        optim_wrapper.update_params(sum(losses.values()))  # backward, step, zero_grad
        if name.startswith('SAIP'):
            model.update_teacher(momentum=0.996)

    def sync():
        if device.startswith('cuda'):
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    sync()
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    step_time = (time.perf_counter() - start) / args.steps
    if device.startswith('cuda'):
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_bytes() - rss0
    teacher_s = None
    if name.startswith('SAIP+KD'):  # the teacher's forward alone, as the step runs it
        head = model.distill_head
        start = time.perf_counter()
        for _ in range(args.steps):
            with torch.autocast(device_type=device.split(':')[0], dtype=amp_dtype,
                                enabled=args.amp):
                head.teacher_tokens(inputs['g1'], 1.25, (20, 10), 16)
        sync()
        teacher_s = (time.perf_counter() - start) / args.steps
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    queue.put(dict(model=name, step_s=step_time, peak_mib=peak / 2**20,
                   trainable_params_m=params / 1e6, teacher_s=teacher_s,
                   saip_mm=os.path.dirname(saip_mm.__file__)))


def _run(name: str, args: argparse.Namespace, tree: str) -> dict:
    """Measure one model in a fresh process (its own peak memory, ``saip_mm`` from ``tree``)."""
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(name, args, queue, tree))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f'{name} benchmark process failed (exit code {proc.exitcode})')
    return queue.get()


def main() -> None:
    args = parse_args()
    if args.arch == 'tinyvit-5m' and 'MAE' in args.models:
        raise SystemExit('--arch tinyvit-5m: mmpretrain has no MAE for TinyViT; pass --models SAIP')
    if args.arch == 'tinyvit-5m' and args.teachers:
        raise SystemExit('--teachers: distillation needs a ViT student (--arch tiny or small)')
    root = Path(__file__).resolve().parents[2]
    results = {}
    for name in args.models + [f'SAIP+KD:{t}' for t in args.teachers]:
        results[name] = _run(name, args, str(root))
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix='saip_baseline_') as tmp:
            tree = Path(tmp) / 'tree'
            subprocess.run(['git', '-C', str(root), 'worktree', 'add', '--detach', str(tree),
                            args.baseline], check=True, capture_output=True)
            try:
                results['SAIP@base'] = _run('SAIP@base', args, str(tree))
            finally:
                subprocess.run(['git', '-C', str(root), 'worktree', 'remove', '--force',
                                str(tree)], check=False, capture_output=True)
    memory_kind = 'CUDA peak allocated' if args.device.startswith('cuda') else 'peak RSS growth'
    print(f'device={args.device} arch={args.arch} batch={args.batch} input=256x128 '
          f'amp={args.amp} steps={args.steps}')
    print(f'{"model":<18} {"step (s)":>10} {"img/s":>8} {memory_kind + " (MiB)":>28} '
          f'{"trainable (M)":>14}')
    for r in results.values():
        print(f'{r["model"]:<18} {r["step_s"]:>10.3f} {args.batch / r["step_s"]:>8.1f} '
              f'{r["peak_mib"]:>28.0f} {r["trainable_params_m"]:>14.2f}')
    ratios = {}
    for name, r in results.items():
        if r.get('teacher_s') is not None:
            line = (f'{name}: teacher forward {r["teacher_s"]:.3f} s = '
                    f'{100 * r["teacher_s"] / r["step_s"]:.0f}% of the step')
            if 'SAIP' in results:
                line += (f'; step {r["step_s"] / results["SAIP"]["step_s"]:.2f}x and peak memory '
                         f'{r["peak_mib"] / max(results["SAIP"]["peak_mib"], 1e-9):.2f}x SAIP '
                         f'without a teacher')
            print(line)
    for other in ('MAE', 'SAIP@base'):
        if 'SAIP' in results and other in results:
            ratios[other] = dict(
                step_time=results['SAIP']['step_s'] / results[other]['step_s'],
                peak_memory=results['SAIP']['peak_mib'] / max(results[other]['peak_mib'], 1e-9))
            print(f'SAIP/{other} step time ratio: {ratios[other]["step_time"]:.2f}x; '
                  f'peak memory ratio: {ratios[other]["peak_memory"]:.2f}x')
    if 'SAIP@base' in results:
        print(f'baseline: {args.baseline} ({results["SAIP@base"]["saip_mm"]}); '
              f'this tree: {results["SAIP"]["saip_mm"] if "SAIP" in results else "-"}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), results=results, ratios=ratios), f, indent=2)


if __name__ == '__main__':
    main()
