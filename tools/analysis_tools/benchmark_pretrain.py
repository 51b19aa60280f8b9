#!/usr/bin/env python
"""Time one SAIP training step against mmpretrain's MAE on the same backbone, batch and size.

Both models get a ViT of the same arch, the same per-step batch and the same anchor input
(256×128 by default; SAIP also sees its other views: locals, region, reference, the ×1.25 CSR
view). Each model runs in its own process so peak memory is its own: CUDA peak allocated
memory on a GPU, peak resident set size (RSS growth over the process's start) on CPU.

    python tools/analysis_tools/benchmark_pretrain.py --batch 8 --steps 5
    python tools/analysis_tools/benchmark_pretrain.py --device cuda --batch 64 --amp

Prints a table and the SAIP/MAE ratios; ``--json`` also writes them to a file.

``--amp`` measures every model twice, in float32 and under autocast (``torch.autocast`` around
the forward and the losses, as ``CPUAmpOptimWrapper``/``AmpOptimWrapper`` do): bfloat16 on CPU
(no loss scaler), float16 on CUDA (dynamic loss scaling); ``--amp-dtype`` picks the other.
Ratios are printed per precision.

``--reference DIR`` also measures the authors' training step: DIR is a checkout of their code
(https://github.com/stoa-xh91/SAIPv1, not part of this repository; ViT-Tiny only). It runs
their model (``models_pretrain.csl_vit_tiny_patch16``, 256×128, ``norm_pix_loss``), their
``CSMLoss`` (read from their ``main_pretrain.py``) and the body of their training loop: teacher
and student forwards, the five losses, backward, the gradient norm their loss scaler computes,
AdamW (0.9, 0.95) with their weight-decay groups, the EMA over all parameters. Their code
imports timm 0.3.2, which does not import on current torch: a stand-in with timm 0.3.2's ViT
block (explicit attention) and layer helpers is provided in the measuring process. Same inputs
as ours (2 globals, 7 locals + the region view, one 224×224 reference, ``--rescale-factors``
as their scales); ``SAIP/SAIPv1`` ratios are printed per precision:

    python tools/analysis_tools/benchmark_pretrain.py --batch 8 --steps 3 --threads 2 \
        --models SAIP --reference /path/to/SAIPv1 --amp

``--profile-casts`` profiles one more step of each model (``torch.profiler``) and prints how
many ``aten::copy_`` / ``aten::_to_copy`` calls it made (dtype casts and copies).

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
    parser.add_argument('--amp', action='store_true',
                        help='also measure every model under autocast (bfloat16 on CPU, '
                             'float16 on CUDA)')
    parser.add_argument('--amp-dtype', choices=['bfloat16', 'float16'],
                        help='the autocast dtype of --amp (default: bfloat16 on CPU, float16 '
                             'on CUDA)')
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
    parser.add_argument('--reference', metavar='DIR',
                        help='a checkout of the authors\' SAIPv1 code: also measure their step')
    parser.add_argument('--profile-casts', action='store_true',
                        help='count aten::copy_ and aten::_to_copy calls in one profiled step')
    args = parser.parse_args()
    if args.amp_dtype is None:
        args.amp_dtype = 'bfloat16' if args.device == 'cpu' else 'float16'
    return args


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


def _optim_wrapper(model, args: argparse.Namespace, precision: str):
    """The optimiser of the reference config of the ``saip_mm`` tree this process imports.

    Each tree is measured with its own recipe (optimiser type and options, parameter groups,
    constructor), with gradient accumulation off (one update per step); ``AmpOptimWrapper``
    (its loss scaler) under autocast on CUDA, the plain ``OptimWrapper`` otherwise (bf16 on CPU
    needs no scaler; the step enters autocast itself, as ``CPUAmpOptimWrapper`` would).
    """
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    cfg = _tree_config('configs/saip/saip_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py')
    wrapper = cfg.optim_wrapper.copy()
    wrapper.pop('accumulative_counts', None)
    if precision != 'fp32' and args.device.startswith('cuda'):
        wrapper['type'] = 'AmpOptimWrapper'
        wrapper['dtype'] = precision
    else:
        wrapper['type'] = 'OptimWrapper'
        wrapper.pop('loss_scale', None)
    if DefaultScope.get_current_instance() is None:
        DefaultScope.get_instance('benchmark_pretrain', scope_name='mmpretrain')
    return build_optim_wrapper(model, wrapper)


PRECISIONS = {'fp32': None, 'bfloat16': 'bf16', 'float16': 'fp16'}  # label of each


def _label(name: str, precision: str) -> str:
    """``SAIP`` (float32) or ``SAIP bf16``: a model's key in the results."""
    return name if precision == 'fp32' else f'{name} {PRECISIONS[precision]}'


def _count_casts(step) -> Dict[str, int]:
    """Calls of ``aten::copy_`` and ``aten::_to_copy`` (casts and copies) in one ``step()``."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    counts = {e.key: e.count for e in prof.key_averages()}
    return {op: counts.get(op, 0) for op in ('aten::copy_', 'aten::_to_copy')}


# ------------------------------------------------------------------ the authors' step
def _install_timm032_stand_in() -> None:
    """Register a minimal ``timm`` with what the SAIPv1 code imports from timm 0.3.2.

    timm 0.3.2 (which their code pins) imports ``torch._six``, gone since torch 2.0. Their
    decoders import ``timm.models.vision_transformer.Block`` (timm 0.3.2's pre-norm ViT
    block: explicit softmax attention, ``qk_scale``, returns the tokens only) and their
    ``tinyvit.py`` three layer helpers. Same modules and arithmetic as timm 0.3.2.
    """
    import sys
    import types

    import torch.nn as nn

    class Attention(nn.Module):
        def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.,
                     proj_drop=0.):
            super().__init__()
            self.num_heads = num_heads
            self.scale = qk_scale or (dim // num_heads) ** -0.5
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
            self.attn_drop = nn.Dropout(attn_drop)
            self.proj = nn.Linear(dim, dim)
            self.proj_drop = nn.Dropout(proj_drop)

        def forward(self, x):
            B, N, C = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 × (B, heads, N, head_dim)
            attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
            return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(B, N, C)))

    class Mlp(nn.Module):
        def __init__(self, in_features, hidden_features, act_layer=nn.GELU, drop=0.):
            super().__init__()
            self.fc1 = nn.Linear(in_features, hidden_features)
            self.act = act_layer()
            self.fc2 = nn.Linear(hidden_features, in_features)
            self.drop = nn.Dropout(drop)

        def forward(self, x):
            return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    class DropPath(nn.Module):
        def __init__(self, drop_prob=0.):
            super().__init__()
            self.drop_prob = drop_prob or 0.

        def forward(self, x):
            if self.drop_prob == 0. or not self.training:
                return x
            keep = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(
                1 - self.drop_prob)
            return x.div(1 - self.drop_prob) * keep

    class Block(nn.Module):
        def __init__(self, dim, num_heads, mlp_ratio=4., qkv_bias=False, qk_scale=None,
                     drop=0., attn_drop=0., drop_path=0., act_layer=nn.GELU,
                     norm_layer=nn.LayerNorm):
            super().__init__()
            self.norm1 = norm_layer(dim)
            self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
            self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
            self.norm2 = norm_layer(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, drop)

        def forward(self, x):
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    timm = types.ModuleType('timm')
    timm.__version__ = '0.3.2'
    models = types.ModuleType('timm.models')
    vit = types.ModuleType('timm.models.vision_transformer')
    vit.Block = Block
    layers = types.ModuleType('timm.models.layers')
    layers.DropPath, layers.to_2tuple = DropPath, to_2tuple
    layers.trunc_normal_ = nn.init.trunc_normal_
    timm.models, models.vision_transformer, models.layers = models, vit, layers
    sys.modules.update({'timm': timm, 'timm.models': models,
                        'timm.models.vision_transformer': vit, 'timm.models.layers': layers})


def _definitions(path: Path, names, namespace: dict) -> dict:
    """Execute only the top-level classes/functions ``names`` of the source file ``path``.

    Their ``main_pretrain.py`` and ``util/misc.py`` import training-only packages at module
    level (tensorboard, timm 0.3.2, ``torch._six``); the loss and the gradient norm of their
    step need none of them.
    """
    import ast
    tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
    body = [node for node in tree.body
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in names]
    missing = set(names) - {node.name for node in body}
    if missing:
        raise SystemExit(f'--reference: {path} defines no {sorted(missing)}; is it a SAIPv1 '
                         f'checkout?')
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), 'exec'), namespace)
    return {name: namespace[name] for name in names}


def _saipv1(args: argparse.Namespace, device: str, precision: str):
    """The authors' model, loss, optimiser and one training step (``main_pretrain.py``).

    Returns:
        tuple: (student, step function taking the inputs of :func:`_saip_inputs`).
    """
    import math
    import sys

    import numpy as np
    import torch.distributed as dist
    import torch.nn as nn
    import torch.nn.functional as F
    folder = Path(args.reference).resolve()
    if not (folder / 'models_pretrain.py').is_file():
        raise SystemExit(f'--reference {folder}: no models_pretrain.py (a SAIPv1 checkout is '
                         f'needed: https://github.com/stoa-xh91/SAIPv1)')
    _install_timm032_stand_in()
    sys.path.insert(0, str(folder))
    import models_pretrain  # their model file
    namespace = dict(torch=torch, nn=nn, F=F, np=np, dist=dist, math=math, inf=math.inf)
    CSMLoss = _definitions(folder / 'main_pretrain.py', ['CSMLoss'], namespace)['CSMLoss']
    grad_norm = _definitions(folder / 'util' / 'misc.py', ['get_grad_norm_'],
                             namespace)['get_grad_norm_']
    if not dist.is_initialized():  # CSMLoss.update_center all-reduces the centre
        dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo',
                                store=dist.HashStore(), rank=0, world_size=1)

    # their README's command: 256x128, norm_pix_loss, 8 local crops (7 + the region view)
    student = models_pretrain.csl_vit_tiny_patch16(img_size=(256, 128), norm_pix_loss=True)
    teacher = models_pretrain.csl_vit_tiny_patch16(img_size=(256, 128), norm_pix_loss=True)
    student.to(device).train()
    teacher.to(device)  # their teacher stays in train mode, as in main_pretrain.py
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    student.scales = teacher.scales = list(args.rescale_factors)  # ours: the same sizes
    n_local = 8
    # out_dim, ncrops, warm-up / final teacher temperature, warm-up epochs, epochs (defaults)
    csm_loss = CSMLoss(65536, n_local + 2, 0.07, 0.04, 0, 300).to(device)
    decay, no_decay = [], []  # timm 0.3.2's add_weight_decay
    for name, p in student.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim == 1 or name.endswith('.bias') else decay).append(p)
    optimizer = torch.optim.AdamW([dict(params=no_decay, weight_decay=0.),
                                   dict(params=decay, weight_decay=0.05)],
                                  lr=2.5e-4 * 2048 / 256, betas=(0.9, 0.95))
    amp = precision != 'fp32'
    scaler = torch.amp.GradScaler(device.split(':')[0], enabled=amp and precision == 'float16')
    amp_dtype = getattr(torch, precision) if amp else None

    def step(inputs):
        g1 = inputs['g1']
        region_imgs = list(inputs['locals'].unbind(1)) + [inputs['region']]
        meta = dict(mask_ratio=0.75, aug_img=inputs['g2'], region_imgs=region_imgs,
                    ref_img=inputs['reference'],
                    gt_mask=[inputs['instance_mask'], inputs['roi_mask']])
        with torch.autocast(device_type=device.split(':')[0], dtype=amp_dtype, enabled=amp):
            pred_t = teacher(g1, meta, is_student=False)
            meta['ref_feats'] = pred_t['ref_feats']
            pred_s = student(g1, meta)
            d_loss = csm_loss(pred_s['csm_preds'], pred_s['qkv_atten'], pred_t['csm_preds'],
                              pred_t['qkv_atten'], 0)
            loss = (d_loss['csm_rep_loss'] + d_loss['csm_att_loss'] + pred_s['csr_loss'] +
                    pred_s['css_inst_loss'] + pred_s['css_roi_loss'])
        loss.item()  # their loop reads the loss value (finite check) every step
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm(student.parameters())  # their loss scaler's gradient norm
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        with torch.no_grad():
            m = 0.996
            for param_q, param_k in zip(student.parameters(), teacher.parameters()):
                param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)

    return student, step


def _measure(name: str, args: argparse.Namespace, queue: mp.Queue, tree: str,
             precision: str = 'fp32') -> None:
    import sys
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rss0 = _rss_bytes()
    device = args.device
    amp = precision != 'fp32'
    amp_dtype = getattr(torch, precision) if amp else None
    source = None
    if name == 'SAIPv1':
        model, reference_step = _saipv1(args, device, precision)
        inputs = _saip_inputs(args.batch, device)
        source = str(Path(args.reference).resolve())

        def step():
            reference_step(inputs)
    else:
        # First on the path: a develop-mode install would otherwise put its checkout before
        # PYTHONPATH.
        sys.path.insert(0, tree)
        import saip_mm  # noqa: F401  (registers SAIP)
        if not saip_mm.__file__.startswith(tree):
            raise SystemExit(f'{name}: imported saip_mm from {saip_mm.__file__}, not from {tree}')
        source = os.path.dirname(saip_mm.__file__)
        if name.startswith('SAIP+KD'):
            model = _saip_kd(args.arch, args.rescale_factors, name.split(':')[1])
        elif name.startswith('SAIP'):
            model = _saip(args.arch, args.rescale_factors)
        else:
            model = _mae(args.arch)
        model = model.to(device).train()
        optim_wrapper = _optim_wrapper(model, args, precision)
        if name.startswith('SAIP'):
            inputs = _saip_inputs(args.batch, device)
        else:
            inputs = torch.randn(args.batch, 3, 256, 128, device=device)

        def step():
            with torch.autocast(device_type=device.split(':')[0], dtype=amp_dtype,
                                enabled=amp):
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
                                enabled=amp):
                head.teacher_tokens(inputs['g1'], 1.25, (20, 10), 16)
        sync()
        teacher_s = (time.perf_counter() - start) / args.steps
    casts = _count_casts(step) if args.profile_casts else None
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    queue.put(dict(model=_label(name, precision), precision=precision, step_s=step_time,
                   peak_mib=peak / 2**20, trainable_params_m=params / 1e6, teacher_s=teacher_s,
                   casts=casts, saip_mm=source))


def _run(name: str, args: argparse.Namespace, tree: str, precision: str = 'fp32') -> dict:
    """Measure one model in a fresh process (its own peak memory, ``saip_mm`` from ``tree``)."""
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(name, args, queue, tree, precision))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f'{_label(name, precision)} benchmark process failed (exit code '
                         f'{proc.exitcode})')
    return queue.get()


def main() -> None:
    args = parse_args()
    if args.arch == 'tinyvit-5m' and 'MAE' in args.models:
        raise SystemExit('--arch tinyvit-5m: mmpretrain has no MAE for TinyViT; pass --models SAIP')
    if args.arch == 'tinyvit-5m' and args.teachers:
        raise SystemExit('--teachers: distillation needs a ViT student (--arch tiny or small)')
    if args.reference and args.arch != 'tiny':
        raise SystemExit('--reference: the authors\' code has ViT-Tiny (csl_vit_tiny_patch16) '
                         'at 256x128; use --arch tiny')
    root = Path(__file__).resolve().parents[2]
    precisions = ['fp32'] + ([args.amp_dtype] if args.amp else [])
    results = {}
    names = args.models + [f'SAIP+KD:{t}' for t in args.teachers]
    names += ['SAIPv1'] if args.reference else []
    for name in names:
        for precision in precisions:  # back to back
            results[_label(name, precision)] = _run(name, args, str(root), precision)
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix='saip_baseline_') as tmp:
            tree = Path(tmp) / 'tree'
            subprocess.run(['git', '-C', str(root), 'worktree', 'add', '--detach', str(tree),
                            args.baseline], check=True, capture_output=True)
            try:
                for precision in precisions:
                    results[_label('SAIP@base', precision)] = _run('SAIP@base', args, str(tree),
                                                                   precision)
            finally:
                subprocess.run(['git', '-C', str(root), 'worktree', 'remove', '--force',
                                str(tree)], check=False, capture_output=True)
    memory_kind = 'CUDA peak allocated' if args.device.startswith('cuda') else 'peak RSS growth'
    print(f'device={args.device} arch={args.arch} batch={args.batch} input=256x128 '
          f'amp={args.amp_dtype if args.amp else False} steps={args.steps} '
          f'threads={torch.get_num_threads() if not args.threads else args.threads}')
    casts = ' copy_ / _to_copy' if args.profile_casts else ''
    print(f'{"model":<22} {"step (s)":>10} {"img/s":>8} {memory_kind + " (MiB)":>28} '
          f'{"trainable (M)":>14}{casts}')
    for r in results.values():
        line = (f'{r["model"]:<22} {r["step_s"]:>10.3f} {args.batch / r["step_s"]:>8.1f} '
                f'{r["peak_mib"]:>28.0f} {r["trainable_params_m"]:>14.2f}')
        if r.get('casts'):
            line += f' {r["casts"]["aten::copy_"]:>6} / {r["casts"]["aten::_to_copy"]}'
        print(line)
    ratios = {}
    for precision in precisions:
        saip = results.get(_label('SAIP', precision))
        for name, r in results.items():
            if r.get('teacher_s') is not None and r['precision'] == precision:
                line = (f'{name}: teacher forward {r["teacher_s"]:.3f} s = '
                        f'{100 * r["teacher_s"] / r["step_s"]:.0f}% of the step')
                if saip is not None:
                    line += (f'; step {r["step_s"] / saip["step_s"]:.2f}x and peak memory '
                             f'{r["peak_mib"] / max(saip["peak_mib"], 1e-9):.2f}x SAIP '
                             f'without a teacher')
                print(line)
        for other in ('MAE', 'SAIP@base', 'SAIPv1'):
            theirs = results.get(_label(other, precision))
            if saip is None or theirs is None:
                continue
            key = _label(other, precision)
            ratios[key] = dict(step_time=saip['step_s'] / theirs['step_s'],
                               peak_memory=saip['peak_mib'] / max(theirs['peak_mib'], 1e-9))
            print(f'{_label("SAIP", precision)}/{key} step time ratio: '
                  f'{ratios[key]["step_time"]:.2f}x; peak memory ratio: '
                  f'{ratios[key]["peak_memory"]:.2f}x')
    if args.amp:
        for name in names + (['SAIP@base'] if args.baseline else []):
            fp32, low = results.get(name), results.get(_label(name, args.amp_dtype))
            if fp32 is not None and low is not None:
                print(f'{low["model"]}: {fp32["step_s"] / low["step_s"]:.2f}x the float32 '
                      f'step\'s speed')
    if 'SAIP@base' in results:
        print(f'baseline: {args.baseline} ({results["SAIP@base"]["saip_mm"]}); '
              f'this tree: {results["SAIP"]["saip_mm"] if "SAIP" in results else "-"}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), results=results, ratios=ratios), f, indent=2)


if __name__ == '__main__':
    main()
