#!/usr/bin/env python
"""Latency and throughput of PyTorch eager vs onnxruntime (CPU), optionally int8 dynamic.

    # the SAIP ViT-Tiny backbone (cls embedding) at 256x128, batch 1 and 32, 1 and 2 threads,
    # with int8 dynamic quantisation and its frozen-feature ReID mAP on the demo split
    python tools/deployment/benchmark_onnx.py \\
        --checkpoint work_dirs/demo_vtest/saip_vit-tiny_vtest_backbone.pth --int8
    # a trained model: its config and checkpoint (the kind follows from the config)
    python tools/deployment/benchmark_onnx.py --config projects/reid/configs/reid_….py \\
        --checkpoint best.pth --int8
    python tools/deployment/benchmark_onnx.py --quick    # a smoke run: seconds

Without ``--config`` the model is the stock ViT-Tiny/16 backbone (256x128, final cls token) that
SAIP checkpoints load into; without ``--checkpoint`` it keeps random weights (latency does not
depend on them; the mAP does, and the report says which weights it used).

Latency is measured per batch on generated images (median and 90th percentile over
``--iters`` runs after ``--warmup``); throughput is batch / median. PyTorch runs in
``torch.inference_mode`` with ``torch.set_num_threads(T)``; onnxruntime with the CPU execution
provider, all graph optimisations, ``intra_op_num_threads=T``. ``--int8`` adds onnxruntime's
dynamic quantisation (int8 weights, activations quantised at run time): its file size, its
output difference from fp32 and, for embedding models, the change in frozen-feature ReID mAP on
a Market-1501-layout split (``--reid-data``, default the demo's ``data/vtest/reid`` from
``make demo``; when absent the report says so and skips only that part).

Writes ``benchmark_onnx.{json,md}`` and the .onnx files to ``--out-dir``.
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from mmengine.config import Config

import saip_mm  # noqa: F401  (registration, checkpoint allow-list)
from saip_mm.deployment import (EXPORT_KINDS, build_export_model, check_onnx, export_onnx,
                                model_inputs, ort_session, read_rgb, run_onnx)

DEMO_REID = 'data/vtest/reid'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', help='model config (default: the stock ViT-Tiny backbone)')
    parser.add_argument('--checkpoint', help='checkpoint (default: random weights)')
    parser.add_argument('--kind', choices=EXPORT_KINDS, help="default: from the config's model")
    parser.add_argument('--backbone-output', choices=('cls', 'featmap'), default='cls')
    parser.add_argument('--input-size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help="default: the backbone's img_size (256 128 without --config)")
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 32])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--int8', action='store_true', help='add int8 dynamic quantisation')
    parser.add_argument('--reid-data', default=DEMO_REID,
                        help=f'Market-1501-layout split for the int8 mAP (default {DEMO_REID})')
    parser.add_argument('--max-images', type=int, default=None,
                        help='use at most this many query and gallery images for the mAP')
    parser.add_argument('--quick', action='store_true',
                        help='smoke run: batch 1 and 2, 1 thread, 1 warm-up, 3 iterations, '
                        'at most 32 query / gallery images')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_onnx')
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.threads, args.warmup, args.iters = [1, 2], [1], 1, 3
        args.max_images = min(args.max_images or 32, 32)
    return args


def time_runs(fn: Callable[[], object], warmup: int, iters: int) -> Dict[str, float]:
    """Median and 90th percentile (ms) of ``iters`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return dict(median_ms=statistics.median(times), p90_ms=float(np.percentile(times, 90)))


def measure_latency(module, sessions: Dict[str, Callable[[int], object]], spec,
                    args: argparse.Namespace) -> List[dict]:
    """One row per (engine, threads, batch) on generated images."""
    rows = []
    torch_threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            engines = {'PyTorch eager': None}
            engines.update({name: make(threads) for name, make in sessions.items()})
            for batch in args.batch_sizes:
                images = model_inputs(torch.rand(batch, 3, *spec.input_size, generator=gen) * 255,
                                      spec)
                array = images.numpy()
                for name, session in engines.items():
                    if session is None:
                        def fn():
                            with torch.inference_mode():
                                return module(images)
                    else:
                        def fn(session=session):
                            return run_onnx(session, array)
                    timing = time_runs(fn, args.warmup, args.iters)
                    rows.append(dict(engine=name, threads=threads, batch=batch, **timing,
                                     images_per_s=batch / timing['median_ms'] * 1e3))
    finally:
        torch.set_num_threads(torch_threads)
    return rows


def quantize_int8(fp32_path: str, int8_path: str) -> str:
    """onnxruntime dynamic quantisation: int8 weights (per tensor), int8 activations at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8)
    return int8_path


def reid_split(data_root: str, max_images: Optional[int]):
    """Query and gallery records (path, pid, camid) of a Market-1501-layout folder, or None."""
    if not (osp.isdir(osp.join(data_root, 'query'))
            and osp.isdir(osp.join(data_root, 'bounding_box_test'))):
        return None
    from saip_mm.datasets import Market1501Dataset
    split = {}
    for name in ('query', 'gallery'):
        ds = Market1501Dataset(data_root=data_root, split=name)
        infos = [ds.get_data_info(i) for i in range(len(ds))]
        split[name] = infos[:max_images] if max_images else infos
    return split


def reid_map(embed: Callable[[torch.Tensor], np.ndarray], split: dict, spec,
             batch_size: int = 32) -> Dict[str, float]:
    """Frozen-feature ReID (cosine kNN): mAP and rank-1 of the embeddings ``embed`` gives."""
    from saip_mm.evaluation import reid_metrics
    feats = {}
    for name, infos in split.items():
        paths = [x['img_path'] for x in infos]
        feats[name] = torch.from_numpy(np.concatenate([
            embed(model_inputs(read_rgb(paths[i:i + batch_size], spec.input_size), spec))
            for i in range(0, len(paths), batch_size)]))
    q, g = split['query'], split['gallery']
    res = reid_metrics(feats['query'], [x['pid'] for x in q], [x['camid'] for x in q],
                       feats['gallery'], [x['pid'] for x in g], [x['camid'] for x in g],
                       dist='cosine')
    return {k: float(res[k]) for k in ('mAP', 'rank-1')}


def output_diff(module, session, spec) -> Dict[str, float]:
    """Max |ONNX - PyTorch| and the lowest per-sample cosine similarity, on 4 generated images."""
    images = model_inputs(
        torch.rand(4, 3, *spec.input_size, generator=torch.Generator().manual_seed(1)) * 255,
        spec)
    with torch.no_grad():
        ref = module(images).flatten(1).numpy()
    got = run_onnx(session, images).reshape(len(ref), -1)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    return dict(max_abs_diff=float(np.abs(ref - got).max()), min_cosine=float(cos.min()))


def to_markdown(report: dict) -> str:
    lines = [f'Model: {report["model"]}; input {report["input_size"]}; machine: '
             f'{report["machine"]}.', '',
             '| engine | threads | batch | median ms | p90 ms | images/s |',
             '| --- | --- | --- | --- | --- | --- |']
    for r in report['latency']:
        lines.append(f'| {r["engine"]} | {r["threads"]} | {r["batch"]} | {r["median_ms"]:.1f} | '
                     f'{r["p90_ms"]:.1f} | {r["images_per_s"]:.1f} |')
    lines += ['', '| model | file MiB | max abs diff vs PyTorch | min cosine | ReID mAP | '
              'rank-1 |', '| --- | --- | --- | --- | --- | --- |']
    for name, m in report['models'].items():
        reid = m.get('reid') or {}
        fmt = (lambda k: f'{reid[k]:.1f}' if k in reid else '—')
        lines.append(f'| {name} | {m["size_mib"]:.1f} | {m["max_abs_diff"]:.2e} | '
                     f'{m["min_cosine"]:.6f} | {fmt("mAP")} | {fmt("rank-1")} |')
    lines += ['', report['reid_note']]
    return '\n'.join(lines) + '\n'


def machine() -> str:
    """CPU model, logical CPUs and library versions, for the report."""
    cpu = platform.processor() or platform.machine()
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        cpu = names[0] if names else cpu
    import onnxruntime
    return (f'{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, '
            f'onnxruntime {onnxruntime.__version__}')


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config) if args.config else None
    input_size = args.input_size or (None if cfg is not None else (256, 128))
    try:
        module, spec = build_export_model(cfg, args.checkpoint, kind=args.kind,
                                          backbone_output=args.backbone_output,
                                          input_size=input_size)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    os.makedirs(args.out_dir, exist_ok=True)
    paths = {'ONNX fp32': export_onnx(module, spec, osp.join(args.out_dir, 'model_fp32.onnx'))}
    check_onnx(paths['ONNX fp32'])
    if args.int8:
        paths['ONNX int8 (dynamic)'] = quantize_int8(paths['ONNX fp32'],
                                                     osp.join(args.out_dir, 'model_int8.onnx'))
    weights = args.checkpoint or 'random weights'
    model_name = (f'{spec.kind} ({spec.output_name}) of '
                  f'{osp.basename(args.config) if args.config else "ViT-Tiny/16"}, {weights}')
    print(f'benchmarking {model_name}')

    sessions = {name: (lambda threads, path=path: ort_session(path, threads))
                for name, path in paths.items()}
    latency = measure_latency(module, sessions, spec, args)

    models = {}
    for name, path in paths.items():
        session = ort_session(path)
        models[name] = dict(path=path, size_mib=osp.getsize(path) / 2**20,
                            **output_diff(module, session, spec))
    embedding = spec.output_name == 'embedding'
    split = reid_split(args.reid_data, args.max_images) if embedding else None
    if not embedding:
        reid_note = f'ReID mAP: not applicable to a {spec.kind} model ({spec.output_name}).'
    elif split is None:
        reid_note = (f'ReID mAP: skipped, no demo split at {args.reid_data} (build it with '
                     f'`make demo`, or pass --reid-data DIR with query/ and bounding_box_test/).')
    else:
        def torch_embed(x):
            with torch.inference_mode():
                return module(x).numpy()
        models['PyTorch fp32'] = dict(path=None, size_mib=sum(
            t.numel() * t.element_size() for t in module.state_dict().values()) / 2**20,
            max_abs_diff=0.0, min_cosine=1.0, reid=reid_map(torch_embed, split, spec))
        for name, path in paths.items():
            session = ort_session(path)
            models[name]['reid'] = reid_map(lambda x, s=session: run_onnx(s, x), split, spec)
        reid_note = (f'ReID mAP: frozen features, cosine kNN on {args.reid_data} '
                     f'({len(split["query"])} query, {len(split["gallery"])} gallery images), '
                     f'weights: {weights}.')
        if 'ONNX int8 (dynamic)' in models:
            change = (models['ONNX int8 (dynamic)']['reid']['mAP']
                      - models['ONNX fp32']['reid']['mAP'])
            reid_note += f' int8 changes mAP by {change:+.2f} points.'
    report = dict(model=model_name, kind=spec.kind, input_size=f'{spec.input_size[0]}x'
                  f'{spec.input_size[1]}', machine=machine(), warmup=args.warmup,
                  iters=args.iters, latency=latency, models=models, reid_note=reid_note)
    markdown = to_markdown(report)
    for ext, text in (('json', json.dumps(report, indent=2)), ('md', markdown)):
        with open(osp.join(args.out_dir, f'benchmark_onnx.{ext}'), 'w') as f:
            f.write(text)
    print(markdown)
    print(f'saved to {args.out_dir}/benchmark_onnx.{{json,md}}')
    return report


if __name__ == '__main__':
    main()
