#!/usr/bin/env python
"""Throughput of the pretraining image sources, per DataLoader worker: files, LUPerson LMDB and
tar shards, with a cold and a warm page cache.

Two figures per source, measured in this process (``num_workers=0``: what one worker does),
with one thread (``torch.set_num_threads(1)``, OpenCV threading off, as MMEngine sets up its
workers), in wall time (cold reads wait on the disk, which CPU time would not count):

- decoded images/s: ``PersonImageDataset`` with ``LoadPersonImage`` only, over every image
  once in a random order; each sample reads and decodes two images (the person and its
  background, drawn from the same source), both counted;
- SAIP samples/s: the demo config's full ``train_pipeline`` (2 global views, ``n_local - 1``
  local crops, the region view and the multi-person reference), over ``--samples`` random
  samples.

The images (``--num-images``, default 10,000) are the demo's person crops (``--source``,
default ``data/vtest``: run ``tools/dataset_converters/video_to_persons.py --out data/vtest``
first), repeated, mirrored every other round and re-encoded at JPEG quality 90-95 to reach the
count, written under ``--work-dir`` as a folder, as LUPerson's LMDB layout (``lmdb/`` +
``keys.pkl``) and as shards (``images_to_shards.py``, ``--shard-size``). They are reused by the
next run with the same parameters.

Cold cache: before a cold measurement every file of the source (the images; ``data.mdb``; the
shards and their index) is dropped from the page cache with
``posix_fadvise(POSIX_FADV_DONTNEED)``, which needs no root (``/proc/sys/vm/drop_caches`` does)
but only drops pages no process maps (LMDB environments are closed first) and that are clean
(each file is fsynced first); util-linux ``fincore``, when installed, then reports how much of
the source is still cached. A virtual machine's host may still cache the disk, so "cold" is the
guest's cold. Warm cache: every file is read once first.

    python tools/analysis_tools/benchmark_data.py --work-dir /tmp/saip_data_bench
    python tools/analysis_tools/benchmark_data.py --work-dir /tmp/b --num-images 20000 --json d.json
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
DEMO_CONFIG = osp.join(REPO, 'configs', 'saip', 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py')
SOURCES = ('folder', 'lmdb', 'shards')

if importlib.util.find_spec('saip_mm') is None:  # a checkout that is not pip-installed
    sys.path.insert(0, REPO)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Image source throughput per worker')
    parser.add_argument('--work-dir', required=True, help='scratch folder for the datasets')
    parser.add_argument('--source', default=osp.join(REPO, 'data', 'vtest'),
                        help='video_to_persons.py output holding persons.txt')
    parser.add_argument('--num-images', type=int, default=10000, help='images per source')
    parser.add_argument('--samples', type=int, default=400,
                        help='samples through the full SAIP pipeline per measurement')
    parser.add_argument('--shard-size', type=int, default=1000, help='images per shard')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the figures to this JSON file')
    return parser.parse_args()


def _load_converter():
    path = osp.join(REPO, 'tools', 'dataset_converters', 'images_to_shards.py')
    spec = importlib.util.spec_from_file_location('images_to_shards', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(args: argparse.Namespace) -> Dict[str, str]:
    """Write (or reuse) the three datasets; return their roots."""
    import cv2

    from saip_mm.datasets.image_sources import write_luperson_lmdb
    params = dict(source=osp.abspath(args.source), num_images=args.num_images,
                  shard_size=args.shard_size, version=1)
    roots = {k: osp.join(args.work_dir, k) for k in SOURCES}
    marker = osp.join(args.work_dir, 'prepared.json')
    if osp.isfile(marker):
        with open(marker) as f:
            if json.load(f) == params:
                print(f'reusing the datasets under {args.work_dir}')
                return roots
    for root in roots.values():
        if osp.lexists(root):
            shutil.rmtree(root)
    list_file = osp.join(args.source, 'persons.txt')
    if not osp.isfile(list_file):
        sys.exit(f'error: {list_file} not found: run tools/dataset_converters/video_to_persons.py '
                 f'--out {args.source} first')
    with open(list_file) as f:
        crops = [cv2.imread(osp.join(args.source, line.strip())) for line in f if line.strip()]
    folder = osp.join(roots['folder'], 'images')
    os.makedirs(folder)
    items = []  # (key, the JPEG's bytes): the same bytes in every source
    for i in range(args.num_images):
        variant, img = i // len(crops), crops[i % len(crops)]
        if variant % 2:
            img = img[:, ::-1]
        ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 90 + variant // 2 % 6])
        assert ok
        items.append((f'{i:06d}', buf.tobytes()))
        with open(osp.join(folder, items[-1][0] + '.jpg'), 'wb') as f:
            f.write(items[-1][1])
    write_luperson_lmdb(roots['lmdb'], items)
    _load_converter().convert(roots['folder'], roots['shards'], shard_size=args.shard_size,
                              force=True)
    with open(marker, 'w') as f:
        json.dump(params, f)
    return roots


def source_files(root: str) -> List[str]:
    return [osp.join(d, name) for d, _, names in os.walk(root) for name in names]


def drop_cache(files: List[str]) -> None:
    """Drop the files' pages from the page cache."""
    from saip_mm.datasets.image_sources import close_lmdb_environments
    close_lmdb_environments()  # a mapped data.mdb would keep its pages
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # DONTNEED skips dirty pages: the files were just written
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(files: List[str]) -> Optional[int]:
    """Bytes of ``files`` in the page cache, from util-linux ``fincore``; None without it."""
    if shutil.which('fincore') is None:
        return None
    total = 0
    for start in range(0, len(files), 1000):
        out = subprocess.run(['fincore', '--bytes', '--noheadings', '--raw', '--output', 'RES']
                             + files[start:start + 1000], capture_output=True, text=True,
                             check=True).stdout
        total += sum(int(v) for v in out.split())
    return total


def warm_cache(files: List[str]) -> None:
    for path in files:
        with open(path, 'rb') as f:
            while f.read(1 << 20):
                pass


def measure(dataset, order: np.ndarray, seed: int) -> float:
    """Samples/s over ``order`` (wall time)."""
    np.random.seed(seed)  # the background draws
    start = time.perf_counter()
    for idx in order:
        dataset[int(idx)]
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(0)
    roots = prepare(args)

    import saip_mm  # noqa: F401  registers the transforms
    from mmengine.config import Config

    from saip_mm.datasets import PersonImageDataset
    pipeline = Config.fromfile(DEMO_CONFIG).train_pipeline
    data_roots = dict(folder=osp.join(roots['folder'], 'images'), lmdb=roots['lmdb'],
                      shards=roots['shards'])
    rng = np.random.RandomState(args.seed)
    decode_order = rng.permutation(args.num_images)
    views_order = rng.randint(0, args.num_images, args.samples)
    rows = []
    for cache in ('cold', 'warm'):
        for kind in SOURCES:
            files = source_files(roots[kind] if kind != 'folder' else data_roots['folder'])
            row = dict(source=kind, cache=cache, files=len(files),
                       bytes=sum(osp.getsize(f) for f in files))
            for what, steps, order in (('decode', [dict(type='LoadPersonImage')], decode_order),
                                       ('views', pipeline, views_order)):
                dataset = PersonImageDataset(data_root=data_roots[kind], pipeline=steps)
                assert len(dataset) == args.num_images
                if cache == 'cold':
                    drop_cache(files)
                    # checked, not assumed: what of the source is still cached
                    row[f'resident_after_drop_{what}'] = resident_bytes(files)
                else:
                    warm_cache(files)
                rate = measure(dataset, order, args.seed)
                if what == 'decode':
                    row['decoded_images_per_s'] = 2 * rate  # person + background
                else:
                    row['saip_samples_per_s'] = rate
                del dataset
            rows.append(row)
            resident = row.get('resident_after_drop_decode')
            print(f'{kind:7s} {cache}: {row["decoded_images_per_s"]:8.1f} decoded images/s, '
                  f'{row["saip_samples_per_s"]:6.1f} SAIP samples/s'
                  + (f' (after the drop {resident} of {row["bytes"]} bytes were cached, '
                     'fincore)' if resident is not None else ''), flush=True)

    n_local = Config.fromfile(DEMO_CONFIG).n_local
    print(f'\n{args.num_images} images (demo crops, {rows[0]["bytes"] / args.num_images / 1e3:.1f} '
          f'kB each), one worker (num_workers=0, 1 thread); cold = posix_fadvise(DONTNEED) on '
          f'every file; a SAIP sample = 2 global + {n_local - 1} local + region + reference views')
    print('| source | files | cache | decoded images/s | SAIP samples/s |')
    print('| --- | --- | --- | --- | --- |')
    for row in sorted(rows, key=lambda r: (SOURCES.index(r['source']), r['cache'])):
        print(f'| {row["source"]} | {row["files"]} | {row["cache"]} | '
              f'{row["decoded_images_per_s"]:.0f} | {row["saip_samples_per_s"]:.1f} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(params=vars(args), rows=rows), f, indent=2)


if __name__ == '__main__':
    main()
