#!/usr/bin/env python
"""Equal-budget comparison of pretraining methods: SAIP, its ablations, MAE and random init.

For each method and seed, the tool pretrains a ViT-Tiny/16 (256×128) with ``tools/train.py``
in a subprocess (its own log and config in ``<work_dir>/<method>/seed<S>/``), with the same
iterations, batch, optimiser (AdamW, the SAIP demo values) and schedule shape for every
method; exports the backbone (``tools/model_converters/saip_to_backbone.py``: the EMA
teacher for SAIP, the encoder for MAE); and evaluates its frozen features on a
Market-1501-layout split (cosine kNN, mAP and rank-1/5/10, ``reid_frozen_eval.py``). It
records the training process's wall time and the images seen (iterations × batch), then writes
``compare.md`` (mean ± sample std over seeds), ``compare.json`` (every run, the aggregates, the
command, the preset and the machine) and ``compare.png`` (bars with error bars) into the work
dir. SAIP runs also validate online (``CURVE_POINTS`` times per run, on the evaluation split;
this time is part of their wall time) and log health metrics; each run's result keeps its
curves (validation mAP, RankMe) and ``compare_curves.png`` draws every method's curves on one
figure. Every run's final RankMe (effective rank of the evaluation split's frozen features) is
a column of the table.

Every backbone is also evaluated across resolutions (``reid_frozen_eval.py --query-downsample
1 2 3 4 mixed``): the queries shrunk 2, 3 and 4 times from their recorded size (area
interpolation) and mixed (each query its own factor of 2, 3, 4; seed 0, the same factors for
every method and seed), then resized to the input, against the gallery as recorded.
``compare.md`` has a second table with mAP and rank-1 per setting (mean ± std over seeds);
each run keeps every setting's metrics (``mAP_r2``, ``rank-1_r2`` ... ``rank-10_mixed``) and
its online validation curves of every setting (``val/reid/mAP_r2`` ...: the demo config
validates across resolutions, which is part of the SAIP runs' wall time).

Methods (``--methods``; default all): ``saip`` (all objectives), ``mae`` (mmpretrain's MAE,
``configs/mae/``), ``random`` (no training: the same ViT with its default init under the
seed), and the six ablations ``saip-csm`` (CSM only: the DINO-like baseline),
``saip-csr``, ``saip-css``, ``saip-csm-csr``, ``saip-csm-css``, ``saip-csr-css``. The ablation
configs in ``configs/saip/`` are built on the 8-GPU LUP1M recipe; the tool reads which heads
each of them switches off (``model.csm_head/csr_head/css_head`` = None) and applies exactly
that to the preset's base config, so the objective is the only difference between methods.
With ``--teacher PATH`` (a teacher ViT checkpoint in any layout that
``tools/model_converters/to_mmpretrain_vit.py`` reads, or its output) two more methods run:
``saip-kd`` (SAIP + cross-scale distillation from that frozen teacher) and ``kd``
(distillation only), with the heads and distillation settings of their configs in
``configs/saip/`` and the teacher's shape read from the file
(:func:`saip_mm.models.heads.distill_head.teacher_config_from_checkpoint`).

Presets:

- ``cpu`` (``make compare``): the demo video's data as ``make demo`` builds it
  (``data/vtest``: a few hundred person crops from one pedestrian video, its frames as
  backgrounds, its held-out time window as the ReID split), batch 16, ``n_local`` 4, seeds
  0 and 1, 20 iterations (``--iters`` overrides). **A small-data proxy**: one video, one
  camera scene, tens of iterations; it says what each method gives at this budget on this
  data, not what the methods give on LUPerson at 300 epochs (the paper's comparison).
- ``gpu``: documented defaults for a larger budget (batch 256, ``n_local`` 8, seeds 0 1 2,
  5000 iterations, lr 1e-3, 8 loader workers); give your own LUP1M-layout paths with
  ``--data-root``, ``--background`` and ``--eval-root``. Not run by the tests nor in this
  repository.

    python tools/analysis_tools/compare_pretraining.py --preset cpu
    python tools/analysis_tools/compare_pretraining.py --preset cpu --methods saip mae random \\
        --seeds 0 1 2 --iters 40 --work-dir work_dirs/compare_cpu
    python tools/analysis_tools/compare_pretraining.py --preset gpu --data-root /data/lup1m \\
        --background /data/lup1m --eval-root /data/market1501 --work-dir work_dirs/compare_gpu

Every method trains in mixed precision where the hardware runs it natively (``tools/train.py
--amp``: bf16 autocast on a CPU with bf16 units, float16 AMP on a GPU) and in float32
elsewhere; ``--no-amp`` trains in float32 anyway. The precision is part of each run's record.

Re-running with the same work dir skips every run whose ``result.json`` exists (an
interrupted comparison continues where it stopped). The tool refuses a non-empty work dir it
did not create unless ``--resume`` is given, and deletes nothing but the training checkpoints
it wrote itself once their backbone is exported (``--keep-checkpoints`` keeps them).
"""
import argparse
import json
import math
import os
import os.path as osp
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
# reid_frozen_eval (next to this file) and the backbone converter, imported as modules
sys.path.insert(0, str(ROOT / 'tools' / 'model_converters'))
sys.path.insert(0, str(Path(__file__).resolve().parent))

METRICS = ('mAP', 'rank-1', 'rank-5', 'rank-10')
# cross-resolution evaluation: reid_frozen_eval's query settings, the names of those other than
# r = 1 and their metrics
QUERY_DOWNSAMPLE = (1, 2, 3, 4, 'mixed')
QUERY_SETTINGS = ('r2', 'r3', 'r4', 'mixed')
CROSS_METRICS = tuple(f'{m}_{s}' for s in QUERY_SETTINGS for m in METRICS)
CURVE_POINTS = 5  # online validations per SAIP run
# what each SAIP run's result keeps of its curves.json (TrainingCurvesHook)
CURVE_KEYS = ('val/reid/mAP', 'health/rankme_teacher', 'health/rankme_student') + tuple(
    f'val/reid/mAP_{s}' for s in QUERY_SETTINGS)
HEADS = ('csm_head', 'csr_head', 'css_head')
MARKER = '.compare_pretraining.json'  # written into a work dir this tool created

SAIP_DEMO = 'configs/saip/saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'
MAE_CPU = 'configs/mae/mae_vit-tiny-p16_1xb16-cpu_vtest-256x128.py'
ABLATION = 'configs/saip/saip-{}_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'
ABLATIONS = ('saip-csm', 'saip-csr', 'saip-css', 'saip-csm-csr', 'saip-csm-css', 'saip-csr-css')
KD_CONFIGS = {'saip-kd': 'configs/saip/saip-kd_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py',
              'kd': 'configs/saip/kd_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'}
METHODS = ('saip', 'mae', 'random') + ABLATIONS + tuple(KD_CONFIGS)

PRECISION_NAMES = {'fp32': 'float32', 'bf16': 'bf16 autocast (tools/train.py --amp)',
                   'fp16': 'float16 AMP (tools/train.py --amp)'}

PRESETS = {
    'cpu': dict(data_root='data/vtest', background='data/vtest/frames.txt',
                eval_root='data/vtest/reid', work_dir='work_dirs/compare_cpu', batch=16,
                n_local=4, seeds=[0, 1], iters=20, lr=2.5e-4, num_workers=2),
    'gpu': dict(data_root=None, background=None, eval_root=None,
                work_dir='work_dirs/compare_gpu', batch=256, n_local=8, seeds=[0, 1, 2],
                iters=5000, lr=1e-3, num_workers=8),
}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', choices=sorted(PRESETS), default='cpu',
                        help='budget and data defaults (default: cpu)')
    parser.add_argument('--data-root', help='person images: a folder (its persons.txt is used '
                        'when present, else every image under it) or a list file')
    parser.add_argument('--background', help='background images of the CSS references: a '
                        'folder or a list file (default: the person images)')
    parser.add_argument('--eval-root', help='Market-1501-layout split (query/, '
                        'bounding_box_test/) for the frozen-feature evaluation')
    parser.add_argument('--work-dir', help='where runs and the table go')
    parser.add_argument('--methods', nargs='+', choices=METHODS,
                        help='default: all (saip-kd and kd only with --teacher)')
    parser.add_argument('--teacher', help='teacher checkpoint of the distillation methods '
                        '(saip-kd, kd): any layout to_mmpretrain_vit.py reads')
    parser.add_argument('--seeds', type=int, nargs='+')
    parser.add_argument('--iters', type=int, help='training iterations of every method')
    parser.add_argument('--batch', type=int, help='per-iteration batch of every method')
    parser.add_argument('--resume', action='store_true',
                        help='accept an existing non-empty work dir this tool did not create')
    parser.add_argument('--keep-checkpoints', action='store_true',
                        help='keep the training checkpoints after export (about 1 GB per SAIP '
                        'run)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to every tools/train.py run (after the tool\'s own)')
    parser.add_argument('--no-amp', action='store_true',
                        help='train in float32 (default: mixed precision, tools/train.py --amp, '
                        'where the hardware runs it natively: a GPU or a CPU with bf16 units)')
    args = parser.parse_args(argv)
    preset = dict(PRESETS[args.preset])
    for key in ('data_root', 'background', 'eval_root', 'work_dir', 'seeds', 'iters', 'batch'):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    for key in ('data_root', 'eval_root'):
        if not preset[key]:
            parser.error(f'--{key.replace("_", "-")} is required with --preset {args.preset}')
    if preset['iters'] < 2:
        parser.error('--iters must be at least 2 (one warm-up iteration, then the cosine)')
    if preset['batch'] < 1:
        parser.error('--batch must be at least 1')
    kd = [m for m in (args.methods or []) if m in KD_CONFIGS]
    if kd and not args.teacher:
        parser.error(f'--methods {" ".join(kd)} distil from a teacher: give its checkpoint with '
                     f'--teacher PATH (any layout tools/model_converters/to_mmpretrain_vit.py '
                     f'reads)')
    if args.teacher:
        if not osp.isfile(args.teacher):
            parser.error(f'--teacher {args.teacher}: no such file')
        preset['teacher'] = osp.abspath(args.teacher)
    preset['precision'] = training_precision(args.no_amp)
    args.settings = preset
    default = METHODS if args.teacher else tuple(m for m in METHODS if m not in KD_CONFIGS)
    args.methods = list(dict.fromkeys(args.methods or default))
    return args


def training_precision(no_amp: bool = False) -> str:
    """``'bf16'`` (a CPU with bf16 units), ``'fp16'`` (an accelerator) or ``'fp32'``."""
    from mmengine.device import get_device

    from saip_mm.engine.optimizers import native_amp_available
    device = get_device()
    if no_amp or not native_amp_available(device):
        return 'fp32'
    return 'bf16' if device == 'cpu' else 'fp16'


# ------------------------------------------------------------------ aggregation and reports
def mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean and sample standard deviation (ddof=1; None with a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError('mean_std: no values')
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean)**2 for v in values) / (n - 1)) if n > 1 else None
    return dict(mean=mean, std=std, n=n)


def format_mean_std(stat: Dict[str, Optional[float]]) -> str:
    """``'32.0 ± 2.83'``; ``'32.0 ± n/a'`` with one seed."""
    std = 'n/a' if stat['std'] is None else f'{stat["std"]:.2f}'
    return f'{stat["mean"]:.1f} ± {std}'


def aggregate(runs: List[dict]) -> Dict[str, dict]:
    """Per-method aggregates of per-seed run results, in the order methods first appear.

    Args:
        runs (list[dict]): each with ``method``, ``seed``, ``iters``, ``batch``,
            ``images_seen``, ``wall_s`` and ``metrics`` (mAP, rank-k in percent).

    Returns:
        dict: method -> ``seeds``, ``iters``, ``batch``, ``images_seen``, ``wall_s``
        (mean_std), one mean_std per metric, ``rankme`` (mean_std of the final features'
        RankMe; None when a run predates it) and one mean_std per cross-resolution metric
        (``mAP_r2`` ...; None when a run predates them).
    """
    out: Dict[str, dict] = {}
    for method in dict.fromkeys(r['method'] for r in runs):
        rows = [r for r in runs if r['method'] == method]
        optional = {m: [r['metrics'].get(m) for r in rows] for m in ('rankme', ) + CROSS_METRICS}
        out[method] = dict(
            seeds=[r['seed'] for r in rows], iters=rows[0]['iters'], batch=rows[0]['batch'],
            images_seen=rows[0]['images_seen'],
            wall_s=mean_std([r['wall_s'] for r in rows]),
            **{m: None if None in v else mean_std(v) for m, v in optional.items()},
            **{m: mean_std([r['metrics'][m] for r in rows]) for m in METRICS})
    return out


def to_markdown(aggregates: Dict[str, dict], note: str = '') -> str:
    """The comparison table: one row per method, metrics as mean ± std over seeds; then the
    cross-resolution table (mAP and rank-1 per query setting) when a method has it."""
    lines = ([note, ''] if note else []) + [
        '| method | iterations | batch | images seen | mean wall s | seeds | mAP | rank-1 | '
        'rank-5 | rank-10 | RankMe |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for method, a in aggregates.items():
        rank = format_mean_std(a['rankme']) if a.get('rankme') else 'n/a'
        lines.append(
            f'| {method} | {a["iters"]} | {a["batch"]} | {a["images_seen"]} | '
            f'{a["wall_s"]["mean"]:.1f} | {len(a["seeds"])} | ' +
            ' | '.join(format_mean_std(a[m]) for m in METRICS) + f' | {rank} |')
    if any(a.get(m) for a in aggregates.values() for m in CROSS_METRICS):
        lines += ['', 'Cross-resolution: queries shrunk r times from their recorded size (area '
                  'interpolation), then resized to the input; the gallery as recorded; mixed: '
                  'each query its own r of 2, 3, 4 (seed 0). mAP / rank-1, mean ± std over '
                  'seeds.', '',
                  '| method | ' + ' | '.join(f'{h} mAP | {h} rank-1' for h in (
                      'r = 1', 'r = 2', 'r = 3', 'r = 4', 'mixed')) + ' |',
                  '| --- |' + ' --- |' * 10]
        for method, a in aggregates.items():
            cells = []
            for suffix in ('', ) + tuple(f'_{s}' for s in QUERY_SETTINGS):
                for m in ('mAP', 'rank-1'):
                    stat = a.get(m + suffix)
                    cells.append(format_mean_std(stat) if stat else 'n/a')
            lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot(aggregates: Dict[str, dict], path: str, title: str = '') -> None:
    """Grouped bars (one group per metric, one bar per method) with ±std error bars."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    methods = list(aggregates)
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(METRICS) * len(methods) * 0.35 + 3), 4))
    for i, method in enumerate(methods):
        a = aggregates[method]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(METRICS))]
        ax.bar(xs, [a[m]['mean'] for m in METRICS], width,
               yerr=[a[m]['std'] or 0.0 for m in METRICS], capsize=3, label=method)
    ax.set_xticks(range(len(METRICS)), METRICS)
    ax.set_ylabel('frozen-feature ReID (%)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_curve(runs: List[dict], key: str) -> List[List[float]]:
    """[[iteration, mean over the runs that recorded it], ...] of one curve key."""
    by_iter: Dict[int, List[float]] = {}
    for r in runs:
        for it, value in (r.get('curves') or {}).get(key, []):
            by_iter.setdefault(int(it), []).append(float(value))
    return [[it, sum(v) / len(v)] for it, v in sorted(by_iter.items())]


def plot_curves(runs: List[dict], path: str, title: str = '') -> bool:
    """All methods' curves on one figure: online validation mAP and the teacher's RankMe on
    training batches, over iterations (mean over seeds). Methods without an online curve
    (random init, MAE) appear in the mAP panel as a dashed line at their final mAP. Returns
    False (and draws nothing) when no run has a curve."""
    if not any(r.get('curves') for r in runs):
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    last = max(r['iters'] for r in runs) or 1
    fig, (ax_map, ax_rank) = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r['method'] for r in runs):
        rows = [r for r in runs if r['method'] == method]
        curve = mean_curve(rows, 'val/reid/mAP')
        if curve:
            ax_map.plot(*zip(*curve), marker='o', markersize=3, label=method)
        else:
            final = sum(r['metrics']['mAP'] for r in rows) / len(rows)
            ax_map.plot([0, last], [final, final], linestyle='--', label=f'{method} (final)')
        rank = mean_curve(rows, 'health/rankme_teacher')
        if rank:
            ax_rank.plot(*zip(*rank), marker='o', markersize=3, label=method)
    for ax, label in ((ax_map, 'online validation mAP (%)'),
                      (ax_rank, 'RankMe of the teacher (training batch)')):
        ax.set_xlabel('iteration')
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ------------------------------------------------------------------ per-method configs
def ablation_heads(method: str, root: Path = ROOT) -> Dict[str, bool]:
    """Which heads an ablation keeps, read from its config in ``configs/saip/``.

    Args:
        method (str): e.g. ``'saip-csr'``.
        root (Path): repository root. Defaults to this checkout.

    Returns:
        dict: head name (``csm_head`` …) -> True when the ablation keeps it.
    """
    from mmengine.config import Config
    path = root / ABLATION.format(method[len('saip-'):])
    if not path.is_file():
        raise FileNotFoundError(f'ablation config of {method!r} not found: {path}')
    model = Config.fromfile(str(path)).model
    return {head: model.get(head) is not None for head in HEADS}


def kd_model_parts(method: str, teacher: str, root: Path = ROOT) -> dict:
    """The heads and ``distill_head`` of a distillation method's config, for ``teacher``.

    Args:
        method (str): ``'saip-kd'`` or ``'kd'``.
        teacher (str): the teacher checkpoint; its backbone config (width, depth, patch, input
            size) replaces the config's ViT-B.

    Returns:
        dict: ``csm_head`` … ``css_head`` set to None where the config switches them off, and
        ``distill_head``.
    """
    from mmengine.config import Config

    from saip_mm.models.heads.distill_head import teacher_config_from_checkpoint
    model = Config.fromfile(str(root / KD_CONFIGS[method])).model
    parts = {head: None for head in HEADS if model.get(head) is None}
    head = model.distill_head.to_dict()
    head.update(teacher=teacher_config_from_checkpoint(teacher),
                teacher_checkpoint=str(teacher))
    parts['distill_head'] = head
    return parts


def _image_source(spec: str, default_ann: str = '') -> dict:
    """A folder or a list file as PersonImageDataset's ``data_root`` / ``ann_file``."""
    spec = osp.abspath(spec)
    if osp.isfile(spec):
        return dict(data_root=osp.dirname(spec) + '/', ann_file=osp.basename(spec))
    if not osp.isdir(spec):
        raise FileNotFoundError(f'image source not found: {spec}')
    ann = default_ann if default_ann and osp.isfile(osp.join(spec, default_ann)) else ''
    return dict(data_root=spec + '/', ann_file=ann)


def _schedule(iters: int) -> List[dict]:
    """The demo schedule shape at any length: linear warm-up (1/8), then cosine to 0."""
    warmup = max(1, round(iters / 8))
    return [dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=warmup),
            dict(type='CosineAnnealingLR', T_max=iters - warmup, eta_min=0.0, by_epoch=False,
                 begin=warmup, end=iters)]


def build_run_config(method: str, seed: int, settings: dict, root: Path = ROOT):
    """The training config of one method and seed (a ``mmengine.Config``).

    SAIP methods start from the demo config (all heads) and switch off the heads the
    method's ablation config switches off; MAE starts from ``configs/mae/``. Every method then
    gets the same iterations, batch, lr, schedule, seed and data.
    """
    from mmengine.config import Config
    persons = _image_source(settings['data_root'], 'persons.txt')
    if method == 'mae':
        cfg = Config.fromfile(str(root / MAE_CPU))
        cfg.train_dataloader.dataset.update(persons)
        cfg.train_dataloader.dataset.background = None
    else:
        cfg = Config.fromfile(str(root / SAIP_DEMO))
        if method in KD_CONFIGS:
            cfg.model.update(kd_model_parts(method, settings['teacher'], root))
        elif method != 'saip':
            for head, keep in ablation_heads(method, root).items():
                if not keep:
                    cfg.model[head] = None
        n_local = settings['n_local']
        cfg.model.n_local = n_local
        for step in cfg.train_dataloader.dataset.pipeline:
            if step['type'] == 'PersonLocalViews':
                step['num_views'] = n_local - 1
        cfg.train_dataloader.dataset.update(persons)
        cfg.train_dataloader.dataset.background = (
            _image_source(settings['background']) if settings.get('background') else None)
        # pictures of views cost time and are not compared; the teacher EMA is the method;
        # health metrics and the validation curve are recorded (curves.json)
        check = max(1, settings['iters'] // 10)
        cfg.custom_hooks = [dict(type='SAIPTeacherHook'),
                            dict(type='SAIPHealthHook', interval=check),
                            dict(type='TrainingCurvesHook', loss_interval=check)]
        cfg.val_dataloader.dataset.data_root = settings['eval_root'].rstrip('/') + '/'
    iters = settings['iters']
    cfg.train_dataloader.batch_size = settings['batch']
    cfg.train_dataloader.num_workers = settings['num_workers']
    cfg.train_dataloader.persistent_workers = settings['num_workers'] > 0
    cfg.optim_wrapper.optimizer.lr = settings['lr']
    # online validation on the evaluation split (SAIP methods: the run's curve); it does not
    # change training (RandomStateHook), but its time is part of the wall time
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=max(1, iters // CURVE_POINTS))
    cfg.param_scheduler = _schedule(iters)
    cfg.randomness = dict(seed=seed)
    cfg.default_hooks.checkpoint = dict(type='SafeCheckpointHook', interval=iters,
                                        by_epoch=False, max_keep_ckpts=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, min(10, iters // 4)))
    return cfg


# ------------------------------------------------------------------ one run
def _log(msg: str) -> None:
    print(f'[compare] {msg}', flush=True)


def _env() -> dict:
    """Subprocess environment: this checkout first on PYTHONPATH (its saip_mm is imported)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + [p for p in env.get('PYTHONPATH', '')
                                                       .split(os.pathsep) if p])
    return env


def _run_logged(cmd: List[str], log_path: Path) -> None:
    with open(log_path, 'a', encoding='utf-8') as log:
        log.write('$ ' + shlex.join(cmd) + '\n')
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
                              env=_env())
    if proc.returncode:
        tail = log_path.read_text(encoding='utf-8', errors='replace').splitlines()[-15:]
        raise RuntimeError(f'{cmd[1]} failed (exit {proc.returncode}); log: {log_path}\n' +
                           '\n'.join(tail))


def training_record(method: str, settings: dict, cfg_options: Optional[List[str]]) -> dict:
    """What a trained run's result depends on besides iterations and batch (none for random)."""
    if method == 'random':
        return {}
    record = dict(lr=settings['lr'], n_local=settings['n_local'],
                  data_root=settings['data_root'], background=settings.get('background'),
                  cfg_options=list(cfg_options or []),
                  precision=settings.get('precision', 'fp32'))
    if method in KD_CONFIGS:
        record['teacher'] = settings['teacher']
    return record


def run_one(method: str, seed: int, settings: dict, run_dir: Path, cfg_options: List[str],
            keep_checkpoints: bool = False) -> dict:
    """Pretrain (subprocess), export and evaluate one method under one seed; return its result."""
    from reid_frozen_eval import evaluate_backbones
    from saip_to_backbone import convert
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / 'run.log'
    backbone = None
    curves: Dict[str, list] = {}
    wall = 0.0
    iters = batch = 0
    if method != 'random':
        iters, batch = settings['iters'], settings['batch']
        cfg = build_run_config(method, seed, settings)
        cfg_path = run_dir / 'config.py'
        cfg.dump(str(cfg_path))
        train_dir = run_dir / 'train'
        cmd = [sys.executable, str(ROOT / 'tools/train.py'), str(cfg_path),
               '--work-dir', str(train_dir)]
        if settings.get('precision', 'fp32') != 'fp32':
            cmd.append('--amp')
        if cfg_options:
            cmd += ['--cfg-options'] + list(cfg_options)
        start = time.perf_counter()
        _run_logged(cmd, log_path)
        wall = time.perf_counter() - start
        last = train_dir / 'last_checkpoint'
        if not last.is_file():
            raise RuntimeError(f'{method} seed {seed}: training wrote no {last}; log: {log_path}')
        ckpt = last.read_text().strip()
        backbone = run_dir / 'backbone.pth'
        # MAE has no teacher: its backbone is the (only) encoder, keyed backbone.*
        source = 'student' if method == 'mae' else 'teacher'
        export = convert(ckpt, str(backbone), source=source, force=True)
        with open(log_path, 'a', encoding='utf-8') as log:
            log.write(f'exported {export["kept"]} backbone tensors ({source}) of {ckpt} to '
                      f'{backbone}; dropped {export["dropped"]}\n')
        if not keep_checkpoints:
            for path in train_dir.glob('iter_*.pth'):  # written by this run, exported above
                path.unlink()
        curves_file = train_dir / 'curves.json'
        if curves_file.is_file():
            recorded = json.loads(curves_file.read_text())
            curves = {k: recorded[k] for k in CURVE_KEYS if k in recorded}
    # mixed_seed stays 0: every method and seed sees the same queries at the same factors
    report = evaluate_backbones(settings['eval_root'],
                                {method: None if backbone is None else str(backbone)},
                                seed=seed, query_downsample=QUERY_DOWNSAMPLE)
    metrics = {m: float(report['results'][method][m])
               for m in METRICS + ('rankme', ) + CROSS_METRICS}
    bad = [m for m, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise RuntimeError(f'{method} seed {seed}: non-finite {bad} (log: {log_path})')
    result = dict(method=method, seed=seed, iters=iters, batch=batch, images_seen=iters * batch,
                  training=training_record(method, settings, cfg_options), wall_s=wall,
                  metrics=metrics, curves=curves,
                  backbone=None if backbone is None else str(backbone),
                  eval=dict((k, report[k]) for k in ('data_root', 'num_query', 'num_gallery',
                                                     'num_identities')))
    tmp = run_dir / 'result.json.partial'
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, run_dir / 'result.json')
    return result


# ------------------------------------------------------------------ the comparison
def check_finished_run(result: dict, settings: dict, path: Path,
                       cfg_options: Optional[List[str]] = None) -> dict:
    """A finished run is reused only under the same budget, training settings (learning rate,
    local views, data, ``--cfg-options``) and evaluation split.

    Raises:
        SystemExit: naming the result file and the field that differs (a table mixing
            budgets would be silently wrong).
    """
    trained = result['method'] != 'random'
    expected = dict(iters=settings['iters'] if trained else 0,
                    batch=settings['batch'] if trained else 0)
    for key, want in expected.items():
        if result.get(key) != want:
            raise SystemExit(f'{path}: a finished run with {key}={result.get(key)}, but this '
                             f'comparison asks for {key}={want}; use another --work-dir (or '
                             f'move that run away) so the table compares equal budgets')
    want = training_record(result['method'], settings, cfg_options)
    have = result.get('training')
    if have and trained:  # runs recorded before the precision was: all float32
        have = dict(have, precision=have.get('precision', 'fp32'))
    if have != want:
        recorded = have or {}
        differ = sorted(k for k in want if recorded.get(k, '<not recorded>') != want[k])
        raise SystemExit(f'{path}: a finished run trained with '
                         f'{ {k: recorded.get(k, "<not recorded>") for k in differ} }, but '
                         f'this comparison trains with { {k: want[k] for k in differ} }; use '
                         f'another --work-dir (or move that run away)')
    if result.get('eval', {}).get('data_root') != settings['eval_root']:
        raise SystemExit(f'{path}: evaluated on {result.get("eval", {}).get("data_root")}, but '
                         f'this comparison evaluates on {settings["eval_root"]}; use another '
                         f'--work-dir')
    return result


def prepare_work_dir(work_dir: Path, resume: bool) -> None:
    """Create the work dir, or accept one this tool made (or any, with ``--resume``)."""
    if work_dir.exists() and not work_dir.is_dir():
        raise SystemExit(f'error: --work-dir {work_dir} exists and is not a folder')
    if work_dir.is_dir() and any(work_dir.iterdir()) and not (work_dir / MARKER).is_file() \
            and not resume:
        raise SystemExit(f'error: --work-dir {work_dir} is not empty and was not made by '
                         f'compare_pretraining.py (no {MARKER}); choose another folder or '
                         f'pass --resume to add runs to it (nothing in it is deleted)')
    work_dir.mkdir(parents=True, exist_ok=True)
    if not (work_dir / MARKER).is_file():
        (work_dir / MARKER).write_text(json.dumps(dict(tool='compare_pretraining.py',
                                                       created=time.time())))


def machine() -> dict:
    import torch
    return dict(platform=platform.platform(), processor=platform.processor(),
                cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch_version=torch.__version__, python=platform.python_version(),
                cuda=torch.cuda.is_available())


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    settings = args.settings
    import saip_mm  # noqa: F401  (registries, checkpoint allow-list)
    work_dir = Path(settings['work_dir']).resolve()
    prepare_work_dir(work_dir, args.resume)
    plan = [(m, s) for m in args.methods for s in settings['seeds']]
    _log(f'{len(plan)} runs ({len(args.methods)} methods x seeds {settings["seeds"]}), '
         f'{settings["iters"]} iterations at batch {settings["batch"]} each; '
         f'work dir {work_dir}')
    runs, durations = [], []
    for i, (method, seed) in enumerate(plan, 1):
        run_dir = work_dir / method / f'seed{seed}'
        done = run_dir / 'result.json'
        if done.is_file():
            runs.append(check_finished_run(json.loads(done.read_text()), settings, done,
                                           args.cfg_options))
            _log(f'run {i}/{len(plan)} {method} seed {seed}: done before, skipped ({done})')
            continue
        left = len(plan) - i + 1
        eta = (f'ETA {sum(durations) / len(durations) * left / 60:.0f} min' if durations
               else 'ETA after the first run')
        _log(f'run {i}/{len(plan)} {method} seed {seed} ... {eta}')
        start = time.perf_counter()
        result = run_one(method, seed, settings, run_dir, args.cfg_options,
                         args.keep_checkpoints)
        durations.append(time.perf_counter() - start)
        runs.append(result)
        _log(f'run {i}/{len(plan)} {method} seed {seed}: mAP {result["metrics"]["mAP"]:.1f}, '
             f'rank-1 {result["metrics"]["rank-1"]:.1f} (queries at r = 4: mAP '
             f'{result["metrics"]["mAP_r4"]:.1f}), train {result["wall_s"]:.0f} s, '
             f'run {durations[-1]:.0f} s')

    aggregates = aggregate(runs)
    ev = runs[0]['eval']
    note = (f'Frozen-feature ReID (cosine kNN on the final cls token) on {ev["data_root"]}: '
            f'{ev["num_query"]} queries, {ev["num_gallery"]} gallery images, '
            f'{ev["num_identities"]} identities. Preset `{args.preset}`, seeds '
            f'{settings["seeds"]}; mean ± sample std over seeds. Wall s: the training process '
            f'(start to exit); images seen = iterations × batch. Precision: '
            f'{PRECISION_NAMES[settings["precision"]]}.')
    md = to_markdown(aggregates, note)
    report = dict(command=shlex.join([sys.executable] + sys.argv if argv is None else
                                     [sys.executable, __file__] + list(argv)),
                  preset=args.preset, settings=settings, methods=args.methods,
                  cfg_options=args.cfg_options, machine=machine(), runs=runs,
                  aggregates=aggregates)
    (work_dir / 'compare.md').write_text(md)
    (work_dir / 'compare.json').write_text(json.dumps(report, indent=2))
    title = (f'{args.preset} preset: {settings["iters"]} it x batch {settings["batch"]}, '
             f'seeds {settings["seeds"]}')
    plot(aggregates, str(work_dir / 'compare.png'), title)
    curves = plot_curves(runs, str(work_dir / 'compare_curves.png'), title)
    print(md, flush=True)
    _log(f'wrote {work_dir}/compare.{{md,json,png}}' +
         (f' and {work_dir}/compare_curves.png' if curves else ''))
    return report


if __name__ == '__main__':
    main()
