#!/usr/bin/env python
"""Frozen-feature ReID evaluation of backbone checkpoints: cosine kNN, mAP and CMC rank-k.

Each backbone (a stock ``mmpretrain.VisionTransformer``) embeds the query and gallery images of
a Market-1501-layout folder with its final cls token, without any training; the ranking goes
through :func:`saip_mm.evaluation.reid_metrics` (same-identity-same-camera matches removed).
A row with random weights (the same architecture, default init) is the reference.

    python tools/analysis_tools/reid_frozen_eval.py data/vtest/reid \\
        --checkpoint SAIP=work_dirs/demo/saip_vit-tiny_backbone.pth --random-baseline \\
        --out-dir work_dirs/demo

Writes ``reid_frozen_eval.json`` and ``reid_frozen_eval.md`` to ``--out-dir``.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch

import saip_mm  # noqa: F401  (registration, checkpoint allow-list)
from saip_mm.datasets import Market1501Dataset
from saip_mm.evaluation import reid_metrics
from saip_mm.models.utils import load_pretrained_backbone
from saip_mm.models.utils.health import rankme

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Frozen-feature ReID evaluation')
    parser.add_argument('data_root', help='folder with query/ and bounding_box_test/')
    parser.add_argument('--checkpoint', action='append', default=[], metavar='NAME=PATH',
                        help='backbone checkpoint (saip_to_backbone.py output); repeatable')
    parser.add_argument('--random-baseline', action='store_true',
                        help='add a row with random weights (seed 0)')
    parser.add_argument('--arch', default='deit-tiny')
    parser.add_argument('--img-size', type=int, nargs=2, default=(256, 128), metavar=('H', 'W'))
    parser.add_argument('--src-grid', type=int, nargs=2, default=(16, 8),
                        help='patch grid of the checkpoint position embeddings')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--out-dir', default='.', help='where the JSON and Markdown go')
    return parser.parse_args(argv)


def load_images(paths: List[str], size) -> torch.Tensor:
    """Read, resize (bicubic) and normalise images to a (N, 3, H, W) tensor."""
    out = []
    for p in paths:
        img = cv2.imread(p)
        if img is None:
            raise ValueError(f'cannot read image {p}')
        img = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (size[1], size[0]),
                         interpolation=cv2.INTER_CUBIC).astype(np.float32)
        out.append(torch.from_numpy(((img - MEAN) / STD).transpose(2, 0, 1)))
    return torch.stack(out)


def build_backbone(arch: str, img_size, checkpoint: Optional[str], src_grid,
                   seed: int = 0) -> torch.nn.Module:
    """A stock ViT (default init under ``seed``), loaded from ``checkpoint`` when given."""
    from mmpretrain.models import VisionTransformer
    torch.manual_seed(seed)
    vit = VisionTransformer(arch=arch, img_size=tuple(img_size), patch_size=16,
                            out_type='cls_token', norm_cfg=dict(type='LN', eps=1e-6))
    vit.init_weights()
    if checkpoint is not None:
        load_pretrained_backbone(vit, checkpoint, src_grid=src_grid)  # all keys or an error
    vit.eval()
    return vit


@torch.no_grad()
def embed(vit: torch.nn.Module, paths: List[str], size, batch_size: int) -> torch.Tensor:
    feats = [vit(load_images(paths[i:i + batch_size], size))[-1]
             for i in range(0, len(paths), batch_size)]
    return torch.cat(feats)


def evaluate_backbones(data_root: str, backbones: Dict[str, Optional[str]], seed: int = 0,
                       arch: str = 'deit-tiny', img_size=(256, 128), src_grid=(16, 8),
                       batch_size: int = 32) -> dict:
    """Cosine-kNN ReID of each backbone's frozen cls features on a Market-1501-layout split.

    Args:
        data_root (str): folder with ``query/`` and ``bounding_box_test/``.
        backbones (dict): row name -> backbone checkpoint (``saip_to_backbone.py`` output), or
            None for the same architecture with random weights (default init under ``seed``).
        seed (int): torch seed of the default init (the random rows). Defaults to 0.
        arch (str): ``VisionTransformer`` arch. Defaults to 'deit-tiny'.
        img_size (Sequence[int]): input (H, W). Defaults to (256, 128).
        src_grid (Sequence[int]): patch grid of the checkpoints' position embeddings.
            Defaults to (16, 8).
        batch_size (int): images per forward. Defaults to 32.

    Returns:
        dict: ``data_root``, ``num_query``, ``num_gallery``, ``num_identities`` and
        ``results`` (row name -> mAP, rank-1/5/10 in percent, ``rankme``: the effective rank
        of the query + gallery features, and the checkpoint).
    """
    query = Market1501Dataset(data_root=data_root, split='query')
    gallery = Market1501Dataset(data_root=data_root, split='gallery')
    q = [query.get_data_info(i) for i in range(len(query))]
    g = [gallery.get_data_info(i) for i in range(len(gallery))]
    results = {}
    for name, ckpt in backbones.items():
        vit = build_backbone(arch, img_size, ckpt, src_grid, seed=seed)
        qf = embed(vit, [x['img_path'] for x in q], img_size, batch_size)
        gf = embed(vit, [x['img_path'] for x in g], img_size, batch_size)
        results[name] = reid_metrics(qf, [x['pid'] for x in q], [x['camid'] for x in q], gf,
                                     [x['pid'] for x in g], [x['camid'] for x in g],
                                     dist='cosine')
        # label-free: the effective rank of all the split's features (1 = collapsed)
        results[name]['rankme'] = rankme(torch.cat([qf, gf]))
        results[name]['checkpoint'] = ckpt
    return dict(data_root=data_root, num_query=len(q), num_gallery=len(g),
                num_identities=len({x['pid'] for x in q}), results=results)


def evaluate(args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    """The command line's rows (``--checkpoint``, ``--random-baseline``) through
    :func:`evaluate_backbones`."""
    rows = [(spec.split('=', 1) if '=' in spec else (osp.basename(spec), spec))
            for spec in args.checkpoint]
    if args.random_baseline:
        rows.append(('random init', None))
    if not rows:
        raise SystemExit('nothing to evaluate: give --checkpoint NAME=PATH and/or '
                         '--random-baseline')
    return evaluate_backbones(args.data_root, dict(rows), seed=0, arch=args.arch,
                              img_size=args.img_size, src_grid=args.src_grid,
                              batch_size=args.batch_size)


def to_markdown(report: dict) -> str:
    lines = [f'Frozen-feature ReID (cosine kNN on the final cls token), {report["data_root"]}: '
             f'{report["num_query"]} queries, {report["num_gallery"]} gallery images, '
             f'{report["num_identities"]} identities.', '',
             '| backbone | mAP | rank-1 | rank-5 | rank-10 | RankMe |',
             '| --- | --- | --- | --- | --- | --- |']
    for name, r in report['results'].items():
        lines.append(f'| {name} | {r["mAP"]:.1f} | {r["rank-1"]:.1f} | {r["rank-5"]:.1f} | '
                     f'{r["rank-10"]:.1f} | {r["rankme"]:.1f} |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    report = evaluate(args)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'reid_frozen_eval.json'), 'w') as f:
        json.dump(report, f, indent=2)
    md = to_markdown(report)
    with open(osp.join(args.out_dir, 'reid_frozen_eval.md'), 'w') as f:
        f.write(md)
    print(md)
    print(f'saved to {args.out_dir}/reid_frozen_eval.{{json,md}}')


if __name__ == '__main__':
    main()
