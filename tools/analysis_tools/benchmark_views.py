#!/usr/bin/env python
"""Images/s per CPU core of the SAIP view pipelines: today's per-image path against a baseline
checkout, and the batched path (``SAIPBatchViewsPreprocessor``).

Three figures, each measured in its own process with one thread (so the figure is per core):

- ``baseline``: the per-image pipeline of another checkout (``--baseline DIR``; with
  ``--baseline-ref REF`` the script first creates that checkout with ``git worktree add``);
- ``per-image``: the per-image pipeline of this checkout (the recipe's ``train_pipeline``);
- ``batched``: the light per-image pipeline (decode, resize, pack uint8) plus collation and
  ``SAIPBatchViewsPreprocessor`` on batches of ``--batch`` images on the CPU.

Every path is measured up to the model's input batch: the per-image ones include collation
and their tree's ``SAIPDataPreprocessor`` (stacking the views into batch tensors), as the
batched one includes its preprocessor.

Images are generated person-like JPEGs (``--num-images``, heights 128..400, width/height
0.4..0.6, i.e. 128x64..400x200 like LUPerson crops), written to a temporary folder; each
image's background is another of them (the recipe's default). Time is the process's CPU time
(``time.process_time``), which a machine shared with other jobs disturbs less than wall time.

    python tools/analysis_tools/benchmark_views.py --baseline-ref 8656bc4
    python tools/analysis_tools/benchmark_views.py --device cuda --batch 256 --num-images 256
    python tools/analysis_tools/benchmark_views.py --baseline /tmp/saip_base --json views.json
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
RECIPE_DATA = 'configs/saip/_base_/datasets/lup1m_saip-256x128.py'
RECIPE_MODEL = 'configs/saip/_base_/models/saip_vit-tiny-p16.py'
BATCHED_CONFIG = 'configs/saip/saip_vit-tiny-p16_8xb256-amp-batchviews-coslr-300e_lup1m-256x128.py'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='SAIP view pipelines: images/s per core')
    parser.add_argument('--baseline', help='checkout whose per-image pipeline is the baseline')
    parser.add_argument('--baseline-ref', help='git ref: create --baseline (default '
                        '/tmp/saip_views_baseline_<ref>) as a worktree of it when missing')
    parser.add_argument('--num-images', type=int, default=64, help='generated images')
    parser.add_argument('--batch', type=int, default=64, help='batch of the batched path')
    parser.add_argument('--device', default='cpu',
                        help="device of SAIPBatchViewsPreprocessor in the batched measurement; "
                        "on 'cuda' its wall time (synchronised) is reported as device images/s "
                        "(e.g. --device cuda --batch 256)")
    parser.add_argument('--passes', type=int, default=2, help='timed passes over the images')
    parser.add_argument('--repeats', type=int, default=3,
                        help='round-robin repetitions of the measurements; the fastest of '
                        'each is reported (a shared or throttled machine only ever slows down)')
    parser.add_argument('--json', help='also write the figures to this JSON file')
    # Internal: run one measurement in this process.
    parser.add_argument('--worker', choices=['per-image', 'batched'], help=argparse.SUPPRESS)
    parser.add_argument('--root', help=argparse.SUPPRESS)
    parser.add_argument('--images', help=argparse.SUPPRESS)
    return parser.parse_args()


def make_person_images(folder: str, num: int, seed: int = 0) -> List[str]:
    """Write ``num`` person-like JPEGs (a figure of coloured ellipses on a textured ground).

    Args:
        folder (str): output folder.
        num (int): number of images.
        seed (int): random seed. Defaults to 0.

    Returns:
        list[str]: the image paths.
    """
    import cv2
    rng = np.random.RandomState(seed)
    paths = []
    for i in range(num):
        height = int(rng.randint(128, 401))
        width = int(round(height * rng.uniform(0.4, 0.6)))
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        ground = rng.uniform(60, 200, 3) + rng.uniform(-40, 40, 3) * (yy / height)[..., None]
        img = np.broadcast_to(ground, (height, width, 3)).astype(np.float32).copy()
        cx = width / 2 + rng.uniform(-0.1, 0.1) * width
        # head, torso, legs: ellipses (centre y fraction, half-height, half-width fractions)
        for cy, ry, rx in ((0.15, 0.08, 0.15), (0.42, 0.22, 0.3), (0.75, 0.22, 0.22)):
            inside = (((yy - cy * height) / (ry * height))**2 +
                      ((xx - cx) / (rx * width))**2) <= 1
            img[inside] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 12, img.shape).astype(np.float32)  # texture / sensor noise
        img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0.8)
        path = osp.join(folder, f'person_{i:04d}.jpg')
        cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def _infos(paths: List[str], passes: int) -> List[dict]:
    rng = np.random.RandomState(1)
    return [dict(img_path=p, bg_img_path=paths[int(rng.randint(len(paths)))])
            for _ in range(passes) for p in paths]


def run_worker(args: argparse.Namespace) -> Dict[str, float]:
    """One measurement in this process (one thread): per-image or batched."""
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    sys.path.insert(0, args.root)
    import saip_mm  # noqa: F401  (registers the transforms of the checkout under test)
    from mmengine.config import Config
    from mmengine.dataset import Compose, default_collate
    from mmpretrain.registry import MODELS, TRANSFORMS
    assert osp.dirname(osp.dirname(osp.abspath(saip_mm.__file__))) == osp.abspath(args.root), \
        f'imported {saip_mm.__file__}, expected the checkout {args.root}'
    paths = sorted(osp.join(args.images, n) for n in os.listdir(args.images))
    np.random.seed(0)
    torch.manual_seed(0)
    warmup = _infos(paths[:4], 1)
    infos = _infos(paths, args.passes)
    if args.worker == 'per-image':
        pipeline = Compose([TRANSFORMS.build(t) for t in
                            Config.fromfile(osp.join(args.root, RECIPE_DATA)).train_pipeline])
        # Up to the model's input batch, as the batched path: collate and the recipe's
        # SAIPDataPreprocessor (stacking the views into batch tensors) count too.
        preprocessor = MODELS.build(
            Config.fromfile(osp.join(args.root, RECIPE_MODEL)).model.data_preprocessor)
    else:
        cfg = Config.fromfile(osp.join(args.root, BATCHED_CONFIG))
        pipeline = Compose([TRANSFORMS.build(t) for t in cfg.train_pipeline])
        preprocessor = MODELS.build(cfg.model.data_preprocessor).to(args.device)

    def sync():
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()

    preprocessor(default_collate([pipeline(dict(i)) for i in warmup]))
    load_cpu = batch_cpu = batch_wall = 0.0
    wall = time.perf_counter()
    for first in range(0, len(infos), args.batch):
        start = time.process_time()
        batch = default_collate([pipeline(dict(i)) for i in infos[first:first + args.batch]])
        middle = time.process_time()
        sync()
        tick = time.perf_counter()
        preprocessor(batch)
        sync()
        batch_wall += time.perf_counter() - tick
        load_cpu += middle - start
        batch_cpu += time.process_time() - middle
    wall = time.perf_counter() - wall
    cpu = load_cpu + batch_cpu
    return dict(images=len(infos), cpu_s=cpu, wall_s=wall, images_per_s=len(infos) / cpu,
                workers_cpu_s=load_cpu, preprocessor_cpu_s=batch_cpu,
                device=args.device, device_images_per_s=len(infos) / batch_wall)


def measure(mode: str, root: str, images: str, args: argparse.Namespace) -> Dict[str, float]:
    """Run one measurement in a fresh single-threaded process and return its figures."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONPATH=root)
    cmd = [sys.executable, osp.abspath(__file__), '--worker', mode, '--root', root,
           '--images', images, '--batch', str(args.batch), '--passes', str(args.passes),
           '--device', args.device if mode == 'batched' else 'cpu']
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'the {mode} measurement in {root} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline_checkout(args: argparse.Namespace) -> str:
    """The baseline folder, created as a git worktree of ``--baseline-ref`` when asked."""
    if args.baseline_ref is None:
        return args.baseline
    folder = args.baseline or osp.join(tempfile.gettempdir(),
                                       f'saip_views_baseline_{args.baseline_ref}')
    if not osp.isdir(folder):
        subprocess.run(['git', '-C', REPO, 'worktree', 'add', '--detach', folder,
                        args.baseline_ref], check=True, capture_output=True)
    return folder


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    base = baseline_checkout(args)
    if base is not None and not osp.isfile(osp.join(base, RECIPE_DATA)):
        raise SystemExit(f'--baseline {base}: no {RECIPE_DATA} there; is it a saip_mm checkout?')
    with tempfile.TemporaryDirectory() as images:
        make_person_images(images, args.num_images)
        runs = [('per-image', 'per-image', REPO), ('batched', 'batched', REPO)]
        if base is not None:
            runs.insert(0, ('baseline', 'per-image', osp.abspath(base)))
        results, all_runs = {}, {name: [] for name, _, _ in runs}
        # Round-robin, so that a slow spell of the machine hits every pipeline alike.
        repeats = max(1, args.repeats)
        for _ in range(repeats):
            for name, mode, root in runs:
                fig = measure(mode, root, images, args)
                all_runs[name].append(fig['images_per_s'])
                if name not in results or fig['images_per_s'] > results[name]['images_per_s']:
                    results[name] = fig
    print(f'{args.num_images} generated JPEGs (128x64..400x200), {args.passes} passes, one thread '
          f'per measurement; images/s per core from process CPU time, fastest of '
          f'{repeats} round-robin repeats')
    for name, values in all_runs.items():
        print(f'  {name} runs: ' + ', '.join(f'{v:.1f}' for v in values))
    medians = {name: float(np.median(values)) for name, values in all_runs.items()}
    print(f'{"pipeline":<12} {"images/s/core":>14} {"CPU ms/image":>13} {"vs baseline":>12} '
          f'{"median img/s":>13} {"median ratio":>13}')
    for name, fig in results.items():
        ratio = median_ratio = '-'
        if 'baseline' in results:
            ratio = f'{fig["images_per_s"] / results["baseline"]["images_per_s"]:.2f}x'
            median_ratio = f'{medians[name] / medians["baseline"]:.2f}x'
        print(f'{name:<12} {fig["images_per_s"]:>14.1f} {1e3 / fig["images_per_s"]:>13.2f} '
              f'{ratio:>12} {medians[name]:>13.1f} {median_ratio:>13}')
    for name, fig in results.items():
        split = {k: 1e3 * fig[f'{k}_cpu_s'] / fig['images'] for k in ('workers', 'preprocessor')}
        print(f'{name} split (CPU ms/image): workers {split["workers"]:.2f}, collate + '
              f'preprocessor {split["preprocessor"]:.2f} (batch {args.batch})')
    ratio = results['batched']['images_per_s'] / results['per-image']['images_per_s']
    print(f'batched vs per-image: {ratio:.2f}x')
    batched = results['batched']
    print(f'batched view generation on {batched["device"]}: '
          f'{batched["device_images_per_s"]:.1f} images/s (preprocessor wall time, batch '
          f'{args.batch}; on a CPU one thread)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(results=results, runs=all_runs, medians=medians,
                           num_images=args.num_images,
                           batch=args.batch, passes=args.passes, repeats=args.repeats,
                           baseline=base), f, indent=2)


if __name__ == '__main__':
    main()
