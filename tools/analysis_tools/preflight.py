#!/usr/bin/env python
"""Rehearse a pretraining config on this machine before a long (multi-GPU) run: go / no-go.

    python tools/analysis_tools/preflight.py CONFIG [--ranks 2] [--iters 4] [--amp]
        [--work-dir DIR] [--samples 64] [--cfg-options k=v ...]

With the config's own model, data, hooks and optimizer (shrink the batch with
``--cfg-options train_dataloader.batch_size=4``), it checks, one line each:

1. ``train data``: the training set builds; ``--samples`` entries spread over it decode (person
   image and the background drawn with it), each corrupt one named; two samples go through the
   whole pipeline;
2. ``val data``: the validation set builds and two samples load (n/a without validation);
3. ``model``: the model builds (parameters, trainable parameters);
4. ``train``: ``--iters`` iterations in ``--ranks`` processes (``tools/train.py --launcher
   pytorch`` under ``torch.distributed.run``: gloo on CPU, NCCL on GPUs; one plain process for
   ``--ranks 1``), the training loop made iteration-based for the rehearsal, with a checkpoint
   half-way (a multiple of ``accumulative_counts``) and at the end;
5. ``gradients``: every trainable parameter received a gradient in the first iteration (DDP
   stops at the second step otherwise; the parameters are named);
6. ``losses``: every loss term finite at every iteration;
7. ``health + curves``: the health metrics were logged and ``curves.json`` written (n/a when the
   config has no ``SAIPHealthHook`` / ``TrainingCurvesHook``);
8. ``checkpoint``: the half-way and final checkpoints exist;
9. ``resume``: a second run resumed from the half-way checkpoint ends, on every rank, with the
   same model, optimizer and random-generator states as the uninterrupted run;
10. ``validation``: one validation pass with finite metrics (n/a without validation);
11. ``export``: the final checkpoint's backbone (``saip_to_backbone.py``) loads into a stock
    ``mmpretrain.VisionTransformer`` (``TinyViT``) with every tensor and, for the ViT, the cls
    feature equal.

Then per rank: median step time and peak memory (host RSS; CUDA peak when on a GPU), and a
rough per-GPU memory estimate at the batch of the config file (before ``--cfg-options``):
float32 parameters, gradients and AdamW moments plus the activations the first step saved for
its backward pass, scaled from the rehearsal's batch. A failed check prints the first error and
what to change; the exit status is 1 when any check fails. Everything (logs, the rehearsal
config, checkpoints, ``preflight.json``) stays in ``--work-dir`` (default
``work_dirs/preflight/<config name>``), which is refused when it already holds a preflight
unless ``--force`` is given; a non-empty folder preflight did not write is never used.
"""
import argparse
import copy
import glob
import json
import math
import os
import os.path as osp
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # a checkout that is not pip-installed
    sys.path.insert(0, ROOT)

import saip_mm  # noqa: E402,F401  (registers our modules)
import torch  # noqa: E402
from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402

GO, NOGO, NA = 'GO', 'NO-GO', 'n/a'
TRAIN = osp.join(ROOT, 'tools', 'train.py')
EXPORT = osp.join(ROOT, 'tools', 'model_converters', 'saip_to_backbone.py')
MARKER = '.preflight'  # marks a work dir as ours (only then is it reused with --force)
RANK_PREFIX = re.compile(r'^\[rank(\d+)\]:')
ERROR_LINE = re.compile(r'^(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt))(?::\s*(.*))?$')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Rehearse a pretraining config before a long run: a go/no-go table')
    parser.add_argument('config', help='the pretraining config file')
    parser.add_argument('--ranks', type=int, default=2,
                        help='processes of the rehearsal run (default 2; GPUs when present)')
    parser.add_argument('--iters', type=int, default=4,
                        help='iterations of the rehearsal (default 4; even, and rounded up so '
                             'that half of it is a multiple of accumulative_counts)')
    parser.add_argument('--amp', action='store_true', help='pass --amp to tools/train.py')
    parser.add_argument('--samples', type=int, default=64,
                        help='training entries decoded by the data check (default 64)')
    parser.add_argument('--work-dir', help='default: work_dirs/preflight/<config name>')
    parser.add_argument('--force', action='store_true',
                        help='reuse a work dir that holds an earlier preflight')
    parser.add_argument('--timeout', type=int, default=1800,
                        help='seconds allowed for each training run (default 1800)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value, as for tools/train.py')
    args = parser.parse_args(argv)
    if args.ranks < 1 or args.iters < 2 or args.samples < 1:
        parser.error('--ranks >= 1, --iters >= 2 and --samples >= 1 are needed')
    return args


class Report:
    """The go/no-go lines, in order."""

    def __init__(self) -> None:
        self.lines: List[dict] = []

    def add(self, check: str, status: str, detail: str, fix: str = '') -> None:
        self.lines.append(dict(check=check, status=status, detail=detail, fix=fix))
        mark = {GO: 'GO   ', NOGO: 'NO-GO', NA: 'n/a  '}[status]
        print(f'[preflight] {mark} {check:<16} {detail}', flush=True)
        if fix:
            print(f'[preflight]       {"":<16} fix: {fix}', flush=True)

    @property
    def ok(self) -> bool:
        return all(line['status'] != NOGO for line in self.lines)

    def table(self) -> str:
        rows = ['| check | status | detail | fix |', '| --- | --- | --- | --- |']
        for line in self.lines:
            cells = [line['check'], line['status'], line['detail'], line['fix']]
            rows.append('| ' + ' | '.join(c.replace('|', '\\|').replace('\n', ' ')
                                          for c in cells) + ' |')
        return '\n'.join(rows)


def first_error(text: str) -> str:
    """The ``SomeError: message`` line a run died of.

    In a multi-process log (lines prefixed ``[rankN]:``) the rank that reported an error
    first is the one that failed (the others then fail waiting for it): its last error line.
    Otherwise the last error line; the launcher's own ``ChildFailedError`` is never it.
    """
    by_rank: Dict[str, List[str]] = {}
    order: List[str] = []
    for line in text.splitlines():
        line = line.strip()
        prefix = RANK_PREFIX.match(line)
        rank = prefix.group(1) if prefix else ''
        body = line[prefix.end():].strip() if prefix else line
        match = ERROR_LINE.match(body)
        if not match or match.group(1) in ('Traceback', 'ChildFailedError'):
            continue
        if rank not in by_rank:
            by_rank[rank] = []
            order.append(rank)
        by_rank[rank].append(body)
    ranks = [r for r in order if r] or order
    if not ranks:
        return (text.strip().splitlines() or ['(no output)'])[-1][:600]
    return by_rank[ranks[0]][-1][:600]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- data and model checks
def check_train_data(cfg: Config, samples: int, report: Report) -> bool:
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    name = 'train data'
    try:
        dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
        size = len(dataset)
    except Exception as err:  # noqa: BLE001  (any build error is the finding)
        report.add(name, NOGO, f'{type(err).__name__}: {err}',
                   'fix train_dataloader.dataset (data_root / ann_file / source); '
                   'the converters are under tools/dataset_converters/')
        return False
    if size == 0:
        report.add(name, NOGO, 'the training set is empty', 'point data_root at the images')
        return False
    step = max(size // samples, 1)
    indices = sorted(set(list(range(0, size, step))[:samples] + [size - 1]))
    bad: List[str] = []
    loader = None
    if hasattr(dataset, 'get_data_info') and type(dataset).__name__ == 'PersonImageDataset':
        from saip_mm.datasets.transforms.loading import LoadPersonImage
        loader = LoadPersonImage()
    for idx in indices:
        try:
            if loader is not None:
                loader(dataset.get_data_info(idx))  # person image + its random background
            else:
                dataset.prepare_data(idx)
        except Exception as err:  # noqa: BLE001
            bad.append(f'#{idx}: {type(err).__name__}: {err}')
    try:
        for idx in indices[:2]:
            out = dataset.prepare_data(idx)
            if out is None:
                raise ValueError(f'sample {idx}: the pipeline returned None')
    except Exception as err:  # noqa: BLE001
        report.add(name, NOGO, f'the pipeline fails on sample {idx}: {type(err).__name__}: '
                   f'{err}', 'fix train_dataloader.dataset.pipeline (or the model/pipeline '
                   'settings it names)')
        return False
    if bad:
        report.add(name, NOGO, f'{len(bad)} of {len(indices)} sampled entries fail; '
                   f'{"; ".join(bad[:3])}',
                   'replace or remove those entries, or set train_dataloader.dataset.'
                   'skip_corrupt=True to skip undecodable ones with a logged warning')
        return False
    report.add(name, GO, f'{type(dataset).__name__}: {size} samples; {len(indices)} sampled '
               f'entries decode; the pipeline runs')
    return True


def has_validation(cfg: Config) -> bool:
    return bool(cfg.get('val_dataloader')) and bool(cfg.get('val_cfg')) and \
        bool(cfg.get('val_evaluator'))


def check_val_data(cfg: Config, report: Report) -> bool:
    from mmpretrain.registry import DATASETS
    name = 'val data'
    if not has_validation(cfg):
        report.add(name, NA, 'no validation in the config (val_dataloader/val_cfg unset)')
        return True
    try:
        dataset = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
        size = len(dataset)
        if size == 0:
            raise ValueError('the validation set is empty')
        for idx in (0, size - 1):
            dataset.prepare_data(idx)
    except Exception as err:  # noqa: BLE001
        root = cfg.val_dataloader.dataset.get('data_root', '')
        report.add(name, NOGO, f'{type(err).__name__}: {err}',
                   f'put the validation set at {root!r} (a Market-1501 layout: '
                   f'tools/dataset_converters/), point --cfg-options '
                   f'val_dataloader.dataset.data_root=DIR at it, or switch validation off: '
                   f'val_cfg=None val_dataloader=None val_evaluator=None '
                   f'default_hooks.checkpoint.save_best=None')
        return False
    report.add(name, GO, f'{type(dataset).__name__}: {size} samples; first and last load')
    return True


def check_model(cfg: Config, report: Report) -> bool:
    from mmpretrain.registry import MODELS
    try:
        model = MODELS.build(copy.deepcopy(cfg.model))
    except Exception as err:  # noqa: BLE001
        report.add('model', NOGO, f'{type(err).__name__}: {err}',
                   'fix the `model` field the error names')
        return False
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report.add('model', GO, f'{type(model).__name__}: {params / 1e6:.2f}M parameters, '
               f'{trainable / 1e6:.2f}M trainable')
    return True


# ---------------------------------------------------------------- the rehearsal runs
def rehearsal_config(cfg: Config, run_dir: str, iters: int, half: int, validate: bool) -> Config:
    """The config as it is, with an iteration-based loop of ``iters``, checkpoints at ``half``
    and ``iters``, deterministic algorithms, every custom hook's interval within the run, and
    the probe hook."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = run_dir
    cfg.train_cfg = ConfigDict(type='IterBasedTrainLoop', max_iters=iters,
                               val_interval=iters if validate else iters + 1)
    if not validate:
        for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
            cfg[key] = None
    randomness = dict(cfg.get('randomness') or {})
    randomness.setdefault('seed', 0)
    randomness['deterministic'] = True
    cfg.randomness = randomness
    hooks = cfg.get('default_hooks') or ConfigDict()
    if hooks.get('checkpoint'):
        hooks.checkpoint.update(interval=half, by_epoch=False, max_keep_ckpts=-1)
        if not validate:
            hooks.checkpoint.save_best = None
    if hooks.get('logger'):
        hooks.logger.update(interval=1)
    cfg.log_processor = dict(cfg.get('log_processor') or {}, by_epoch=False)
    custom = []
    for hook in cfg.get('custom_hooks') or []:
        hook = copy.deepcopy(hook)
        if hook.get('type') == 'SAIPHealthHook':
            hook['interval'] = 1
        elif hook.get('type') == 'TrainingCurvesHook':
            hook['loss_interval'] = 1
        elif isinstance(hook.get('interval'), int):
            hook['interval'] = min(hook['interval'], iters)
        custom.append(hook)
    custom.append(dict(type='PreflightProbeHook', out_dir=run_dir, max_iters=iters))
    cfg.custom_hooks = custom
    return cfg


def run_training(config_path: str, ranks: int, amp: bool, log_path: str, timeout: int,
                 extra: Tuple[str, ...] = ()) -> Tuple[int, str, float]:
    """Run tools/train.py; return (exit status, the log's text, wall seconds)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    if not torch.cuda.is_available():  # ranks share the CPU cores
        env.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // ranks)))
    args = [config_path] + (['--amp'] if amp else []) + list(extra)
    if ranks == 1:
        cmd = [sys.executable, TRAIN] + args
    else:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(ranks),
               '--master_port', str(free_port()), TRAIN] + args + ['--launcher', 'pytorch']
    start = time.time()
    with open(log_path, 'w') as log:
        log.write('$ ' + ' '.join(cmd) + '\n')
        log.flush()
        try:
            status = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            status = -1
            log.write(f'\nTimeoutError: the rehearsal run took more than {timeout} s\n')
    with open(log_path) as f:
        return status, f.read(), time.time() - start


def read_probes(run_dir: str, ranks: int) -> List[Optional[dict]]:
    out = []
    for rank in range(ranks):
        path = osp.join(run_dir, f'preflight_rank{rank}.json')
        if osp.isfile(path):
            with open(path) as f:
                out.append(json.load(f))
        else:
            out.append(None)
    return out


def scalar_keys(run_dir: str) -> set:
    """Scalar names the LocalVisBackend wrote (``<timestamp>/vis_data/scalars.json``)."""
    keys: set = set()
    for path in glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for line in f:
                try:
                    keys.update(json.loads(line))
                except ValueError:
                    continue
    return keys


def train_fix(error: str, grad_missing: List[str]) -> str:
    if grad_missing:
        return ('switch off the module those parameters belong to, or set '
                'model_wrapper_cfg=dict(type=\'MMDistributedDataParallel\', '
                'find_unused_parameters=True) (slower)')
    if 'AmpOptimWrapper' in error or '--amp' in error or 'cuda' in error.lower():
        return ('rehearse in float32: drop --amp and add --cfg-options '
                'optim_wrapper.type=OptimWrapper (tools/train.py runs AMP on CUDA, and on a '
                'CPU as bf16 autocast)')
    if 'out of memory' in error.lower() or 'Killed' in error:
        return 'shrink the rehearsal: --cfg-options train_dataloader.batch_size=2'
    return 'read the log named above; fix the field or file the error names'


def check_runs(cfg: Config, args, work_dir: str, report: Report) -> Optional[dict]:
    """The rehearsal run and its resumed twin; returns what the export check needs."""
    accum = int((cfg.get('optim_wrapper') or {}).get('accumulative_counts', 1) or 1)
    half = max(math.ceil(args.iters / 2 / accum) * accum, accum)
    iters = 2 * half
    if iters != args.iters:
        print(f'[preflight] {iters} iterations (checkpoint at {half}, a multiple of '
              f'accumulative_counts={accum})', flush=True)
    validate = has_validation(cfg)
    full_dir, resumed_dir = osp.join(work_dir, 'run_full'), osp.join(work_dir, 'run_resumed')
    full_cfg = rehearsal_config(cfg, full_dir, iters, half, validate)
    full_path = osp.join(work_dir, 'rehearsal_config.py')
    full_cfg.dump(full_path)
    where = f'{args.ranks} process(es)'
    status, log, wall = run_training(full_path, args.ranks, args.amp,
                                     osp.join(work_dir, 'train_full.log'), args.timeout)
    probes = read_probes(full_dir, args.ranks)
    grad_missing = sorted({n for p in probes if p and p.get('grad_missing') for n in
                           p['grad_missing']})
    if status != 0:
        error = first_error(log)
        detail = f'{iters} iterations in {where} failed after {wall:.0f} s: {error}'
        if grad_missing:
            detail += (f' — {len(grad_missing)} trainable parameter(s) got no gradient in '
                       f'iteration 1: {", ".join(grad_missing[:6])}')
        report.add('train', NOGO, detail + f' (log: {osp.join(work_dir, "train_full.log")})',
                   train_fix(error, grad_missing))
        return None
    report.add('train', GO, f'{iters} iterations in {where}, {wall:.0f} s in all')

    if grad_missing:
        report.add('gradients', NOGO, f'{len(grad_missing)} trainable parameter(s) got no '
                   f'gradient: {", ".join(grad_missing[:8])}', train_fix('', grad_missing))
    else:
        report.add('gradients', GO, 'every trainable parameter received a gradient')

    bad = [(i + 1, k, v) for p in probes if p for i, step in enumerate(p['losses'])
           for k, v in step.items() if not math.isfinite(v)]
    if bad:
        report.add('losses', NOGO, f'non-finite loss {bad[0][1]}={bad[0][2]} at iteration '
                   f'{bad[0][0]}', 'check data_preprocessor mean/std and the lr')
    else:
        last = probes[0]['losses'][-1] if probes[0] and probes[0]['losses'] else {}
        report.add('losses', GO, 'finite at every iteration; last: ' +
                   ', '.join(f'{k}={v:.4g}' for k, v in last.items()))

    hook_types = {h.get('type') for h in cfg.get('custom_hooks') or []}
    scalars = scalar_keys(full_dir)
    health = sorted(k for k in scalars if k.startswith('health/'))
    curves_path = osp.join(full_dir, 'curves.json')
    problems = []
    if 'SAIPHealthHook' in hook_types and not health:
        problems.append('no health/* scalar was written')
    if 'TrainingCurvesHook' in hook_types and not osp.isfile(curves_path):
        problems.append('curves.json was not written')
    if 'SAIPHealthHook' not in hook_types and 'TrainingCurvesHook' not in hook_types:
        report.add('health + curves', NA, 'no SAIPHealthHook / TrainingCurvesHook in the config')
    elif problems:
        report.add('health + curves', NOGO, '; '.join(problems),
                   'check custom_hooks (SAIPHealthHook, TrainingCurvesHook)')
    else:
        report.add('health + curves', GO, f'{len(health)} health scalars logged'
                   + (', curves.json written' if osp.isfile(curves_path) else ''))

    ckpts = [osp.join(full_dir, f'iter_{i}.pth') for i in (half, iters)]
    missing = [c for c in ckpts if not osp.isfile(c)]
    if missing:
        report.add('checkpoint', NOGO, f'not written: {", ".join(missing)}',
                   'check default_hooks.checkpoint')
        return None
    report.add('checkpoint', GO, f'iter_{half}.pth and iter_{iters}.pth written')

    resumed_cfg = rehearsal_config(cfg, resumed_dir, iters, half, validate=False)
    resumed_cfg.resume = True
    resumed_cfg.load_from = ckpts[0]
    resumed_path = osp.join(work_dir, 'rehearsal_config_resumed.py')
    resumed_cfg.dump(resumed_path)
    status, log, wall = run_training(resumed_path, args.ranks, args.amp,
                                     osp.join(work_dir, 'train_resumed.log'), args.timeout)
    if status != 0:
        report.add('resume', NOGO, f'resuming from iter_{half}.pth failed: {first_error(log)} '
                   f'(log: {osp.join(work_dir, "train_resumed.log")})',
                   'read the log; a checkpoint that does not resume loses the run')
    else:
        resumed = read_probes(resumed_dir, args.ranks)
        differ = []
        for rank, (a, b) in enumerate(zip(probes, resumed)):
            if not a or not b or not a.get('digests') or not b.get('digests'):
                differ.append(f'rank {rank}: no record')
                continue
            differ += [f'rank {rank}: {k}' for k in a['digests']
                       if a['digests'][k] != b['digests'][k]]
        if differ:
            report.add('resume', NOGO, f'the resumed run differs from the uninterrupted one '
                       f'({", ".join(differ)})',
                       'keep default_hooks.random_state=dict(type=\'RandomStateHook\') and '
                       'randomness.deterministic; check the hooks whose state is not in '
                       'checkpoints')
        else:
            report.add('resume', GO, f'resumed from iter_{half}.pth: model, optimizer and '
                       f'random states equal on all {args.ranks} rank(s)')

    if not validate:
        report.add('validation', NA, 'no validation in the config')
    else:
        metrics = (probes[0] or {}).get('metrics')
        if not metrics:
            report.add('validation', NOGO, 'no validation pass was recorded',
                       'check val_cfg / val_evaluator')
        else:
            numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
            bad = [k for k, v in numbers.items() if not math.isfinite(v)]
            if bad:
                report.add('validation', NOGO, f'non-finite metric(s) {bad}',
                           'check data_preprocessor mean/std')
            else:
                report.add('validation', GO, ', '.join(f'{k}={v:.4g}' for k, v in
                                                       list(numbers.items())[:4]))
    return dict(final=ckpts[1], probes=probes, full_dir=full_dir)


# ---------------------------------------------------------------- export
def stock_backbone_cfg(backbone_cfg: dict, path: str) -> Optional[dict]:
    """The stock mmpretrain backbone config that must load the exported file."""
    cfg = dict(copy.deepcopy(backbone_cfg))
    kind = cfg.pop('type', '')
    cfg.pop('init_cfg', None)
    if kind in ('SAIPViT', 'mmpretrain.SAIPViT'):
        from saip_mm.models.backbones import SAIPViT
        cfg.pop('inter_index', None)
        arch = cfg.get('arch', 'tiny')
        if isinstance(arch, str):  # SAIPViT's names ('tiny') as the dims stock archs take
            cfg['arch'] = dict(SAIPViT.arch_zoo[arch.lower()])
        cfg.setdefault('norm_cfg', dict(type='LN', eps=1e-6))
        cfg.setdefault('img_size', (256, 128))
        cfg.update(type='mmpretrain.VisionTransformer', out_type='cls_token')
    elif kind in ('SAIPTinyViT', 'mmpretrain.SAIPTinyViT'):
        cfg.pop('inter_stage', None)
        cfg.update(type='mmpretrain.TinyViT')
    else:
        return None
    cfg['init_cfg'] = dict(type='Pretrained', checkpoint=path, prefix='backbone.')
    return cfg


def check_export(cfg: Config, final_ckpt: str, work_dir: str, report: Report) -> None:
    from mmengine.registry import MODELS as ENGINE_MODELS
    out = osp.join(work_dir, 'backbone.pth')
    model_cfg = cfg.model
    anchor = [str(v) for v in (model_cfg.backbone.get('img_size') or (256, 128))]
    if isinstance(model_cfg.backbone.get('img_size'), int):
        anchor = [anchor[0], anchor[0]]
    ckpt = torch.load(final_ckpt, map_location='cpu', weights_only=True)
    source = 'teacher' if any(k.startswith('teacher.backbone.') for k in ckpt['state_dict']) \
        else 'student'
    cmd = [sys.executable, EXPORT, final_ckpt, out, '--source', source, '--force']
    if model_cfg.backbone.get('type') in ('SAIPViT', 'mmpretrain.SAIPViT'):
        cmd += ['--anchor'] + anchor
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        report.add('export', NOGO, f'saip_to_backbone.py failed: '
                   f'{first_error(res.stderr + res.stdout)}', 'read the converter\'s message')
        return
    stock_cfg = stock_backbone_cfg(model_cfg.backbone, out)
    if stock_cfg is None:
        report.add('export', NA, f'exported; no stock counterpart known for '
                   f'{model_cfg.backbone.get("type")}')
        return
    try:
        stock = ENGINE_MODELS.build(stock_cfg)
        stock.init_weights()
        stored = {k[len('backbone.'):]: v for k, v in
                  torch.load(out, weights_only=True)['state_dict'].items()}
        state = stock.state_dict()
        missing = sorted(set(state) - set(stored))
        unequal = [k for k in state if k in stored and not torch.equal(state[k], stored[k])]
        if missing or unequal:
            raise ValueError(f'stock keys not in the file: {missing[:4]}; loaded unequal: '
                             f'{unequal[:4]}')
        detail = f'{osp.relpath(out, ROOT)}: {len(state)} tensors load into stock ' \
                 f'{stock_cfg["type"]} unchanged'
        if stock_cfg['type'] == 'mmpretrain.VisionTransformer':
            # our backbone alone (not the whole model with its heads again), from the file
            from mmpretrain.registry import MODELS
            ours = MODELS.build(copy.deepcopy(model_cfg.backbone))
            prefix = 'teacher.backbone.' if source == 'teacher' else 'backbone.'
            ours.load_state_dict({k[len(prefix):]: v for k, v in ckpt['state_dict'].items()
                                  if k.startswith(prefix)})
            ours.eval()
            stock.eval()
            h, w = (int(v) for v in anchor)
            x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                diff = (ours(x)['last'][:, 0] - stock(x)[-1]).abs().max().item()
            if not diff < 1e-4:
                raise ValueError(f'the stock cls feature differs from ours by {diff:.3g}')
            detail += f'; cls feature max abs diff {diff:.2g}'
    except Exception as err:  # noqa: BLE001
        report.add('export', NOGO, f'{type(err).__name__}: {err}',
                   'the backbone config must match a stock mmpretrain arch')
        return
    report.add('export', GO, detail)


# ---------------------------------------------------------------- resources
def resources(probes: List[Optional[dict]], config_batch: int, amp: bool) -> List[str]:
    lines = []
    for p in probes:
        if not p:
            continue
        times = p['step_time'][1:] or p['step_time']
        mem = f'peak host RSS {p["peak_host_mb"]:.0f} MiB'
        if 'peak_cuda_mb' in p:
            mem += f', peak CUDA {p["peak_cuda_mb"]:.0f} MiB'
        lines.append(f'rank {p["rank"]}: median step {statistics.median(times):.2f} s '
                     f'(batch {p.get("batch_size")} on {p["device"]}), {mem}')
    first = next((p for p in probes if p and p.get('activation_bytes')), None)
    if first and first.get('batch_size'):
        per_sample = first['activation_bytes'] / first['batch_size']
        estimate = first['static_bytes'] + per_sample * config_batch
        lines.append(
            f'rough per-GPU memory at the config\'s batch {config_batch}: '
            f'{estimate / 2**30:.1f} GiB = {first["static_bytes"] / 2**30:.2f} GiB of fp32 '
            f'weights, gradients and AdamW moments + {per_sample / 2**20:.0f} MiB of saved '
            f'activations per sample (measured at batch {first["batch_size"]}'
            f'{", with --amp" if amp else ""}; allocator slack and '
            f'temporaries come on top)')
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    report = Report()
    name = osp.splitext(osp.basename(args.config))[0]
    work_dir = osp.abspath(args.work_dir or osp.join('work_dirs', 'preflight', name))
    marker = osp.join(work_dir, MARKER)
    if osp.isdir(work_dir) and os.listdir(work_dir):
        if not osp.isfile(marker):  # never write into (or clean) a folder that is not ours
            print(f'[preflight] {work_dir} is not empty and was not written by preflight; '
                  f'choose another --work-dir', file=sys.stderr)
            return 2
        if not args.force:
            print(f'[preflight] {work_dir} holds an earlier preflight; pass --force to '
                  f'replace it, or choose another --work-dir', file=sys.stderr)
            return 2
        for sub in ('run_full', 'run_resumed'):  # an earlier preflight's runs
            shutil.rmtree(osp.join(work_dir, sub), ignore_errors=True)
    os.makedirs(work_dir, exist_ok=True)
    open(marker, 'w').close()
    start = time.time()
    try:
        file_cfg = Config.fromfile(args.config)
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
    except Exception as err:  # noqa: BLE001
        report.add('config', NOGO, f'{type(err).__name__}: {err}', 'fix the config file')
        return finish(report, work_dir, args, start, [])
    report.add('config', GO, f'{args.config}' + (f' with {len(args.cfg_options)} '
                                                 f'--cfg-options' if args.cfg_options else ''))
    data_ok = check_train_data(cfg, args.samples, report)
    val_ok = check_val_data(cfg, report)
    model_ok = check_model(cfg, report)
    lines: List[str] = []
    if data_ok and val_ok and model_ok:
        result = check_runs(cfg, args, work_dir, report)
        if result is not None:
            check_export(cfg, result['final'], work_dir, report)
            lines = resources(result['probes'], int(file_cfg.train_dataloader.batch_size),
                              args.amp)
    else:
        report.add('train', NA, 'not run: fix the checks above first')
    return finish(report, work_dir, args, start, lines)


def finish(report: Report, work_dir: str, args, start: float, lines: List[str]) -> int:
    verdict = 'GO' if report.ok else 'NO-GO'
    print('\n' + report.table())
    for line in lines:
        print(f'[preflight] {line}')
    print(f'[preflight] {verdict}: {args.config} ({time.time() - start:.0f} s; files in '
          f'{work_dir})', flush=True)
    with open(osp.join(work_dir, 'preflight.json'), 'w') as f:
        json.dump(dict(config=args.config, verdict=verdict, ranks=args.ranks,
                       iters=args.iters, amp=args.amp, cfg_options=args.cfg_options,
                       checks=report.lines, resources=lines,
                       seconds=round(time.time() - start, 1)), f, indent=1, default=str)
    return 0 if report.ok else 1


if __name__ == '__main__':
    sys.exit(main())
