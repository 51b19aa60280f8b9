#!/usr/bin/env python
"""Frozen-feature ReID evaluation of backbone checkpoints: cosine kNN, mAP and CMC rank-k.

Each backbone (a stock ``mmpretrain.VisionTransformer``) embeds the query and gallery images of
a Market-1501-layout folder with its final cls token, without any training; the ranking goes
through :func:`saip_mm.evaluation.reid_metrics` (same-identity-same-camera matches removed).
A row with random weights (the same architecture, default init) is the reference.

Cross-resolution (``--query-downsample 1 2 3 4 mixed``): the queries are also shrunk by a factor
r from their recorded size (area interpolation), then resized to the input like every image,
and searched against the gallery as recorded; ``mixed`` gives each query its own r from
``--mixed-factors`` (default 2 3 4), drawn with ``--mixed-seed`` (default 0). One row per
backbone and setting; r = 1 (today's protocol, the plain ``mAP`` keys) is always evaluated. The
settings are those of the online ``ReIDMetric``
(:mod:`saip_mm.datasets.transforms.query_downsample`): the same queries get the same factors
and sizes.

    python tools/analysis_tools/reid_frozen_eval.py data/vtest/reid \\
        --checkpoint SAIP=work_dirs/demo/saip_vit-tiny_backbone.pth --random-baseline \\
        --query-downsample 1 2 3 4 mixed --out-dir work_dirs/demo

Writes ``reid_frozen_eval.json`` and ``reid_frozen_eval.md`` to ``--out-dir``.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch

import saip_mm  # noqa: F401  (registration, checkpoint allow-list)
from saip_mm.datasets import Market1501Dataset
from saip_mm.datasets.transforms.query_downsample import (MIXED_FACTORS, downsample_image,
                                                          parse_query_settings, query_factors,
                                                          setting_name)
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
    parser.add_argument('--query-downsample', nargs='+', default=['1'], metavar='R',
                        help="query settings: factors r (queries shrunk r times from their "
                        "recorded size) and 'mixed'; 1 is always evaluated (default: 1)")
    parser.add_argument('--mixed-factors', type=int, nargs='+', default=list(MIXED_FACTORS),
                        help='factors of the mixed setting (default: 2 3 4)')
    parser.add_argument('--mixed-seed', type=int, default=0,
                        help='seed of the mixed setting\'s draw (default: 0)')
    parser.add_argument('--out-dir', default='.', help='where the JSON and Markdown go')
    return parser.parse_args(argv)


def load_images(paths: List[str], size, factors: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Read, down-sample (each image by its factor, area interpolation; none by default),
    resize (bicubic) and normalise images to a (N, 3, H, W) tensor: the online val pipeline's
    LoadImageFromFile, QueryDownsample, Resize and data preprocessor."""
    out = []
    for i, p in enumerate(paths):
        img = cv2.imread(p)
        if img is None:
            raise ValueError(f'cannot read image {p}')
        if factors is not None:
            img = downsample_image(img, factors[i])
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
def embed(vit: torch.nn.Module, paths: List[str], size, batch_size: int,
          factors: Optional[Sequence[int]] = None) -> torch.Tensor:
    """(N, C) features of ``paths``, each image down-sampled by its factor first (if given)."""
    feats = [vit(load_images(paths[i:i + batch_size], size,
                             None if factors is None else factors[i:i + batch_size]))[-1]
             for i in range(0, len(paths), batch_size)]
    return torch.cat(feats)


def evaluate_backbones(data_root: str, backbones: Dict[str, Optional[str]], seed: int = 0,
                       arch: str = 'deit-tiny', img_size=(256, 128), src_grid=(16, 8),
                       batch_size: int = 32, query_downsample: Sequence = (1, ),
                       mixed_factors: Sequence[int] = MIXED_FACTORS,
                       mixed_seed: int = 0) -> dict:
    """Cosine-kNN ReID of each backbone's frozen cls features on a Market-1501-layout split.

    With ``query_downsample`` settings other than 1, the queries are embedded once more per
    setting, shrunk by its factors (:func:`saip_mm.datasets.transforms.downsample_image`), and
    ranked against the gallery as recorded, embedded once.

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
        query_downsample (Sequence[int | str]): query settings, factors and ``'mixed'``; 1 is
            always evaluated. Defaults to (1, ).
        mixed_factors (Sequence[int]): factors of the mixed setting. Defaults to (2, 3, 4).
        mixed_seed (int): seed of the mixed setting's draw. Defaults to 0.

    Returns:
        dict: ``data_root``, ``num_query``, ``num_gallery``, ``num_identities``,
        ``query_settings`` (names: ``'r1'``, ``'r2'`` ... ``'mixed'``), ``mixed_factors``,
        ``mixed_seed`` and ``results`` (row name -> mAP, rank-1/5/10 in percent at r = 1,
        the same keys suffixed ``_r2`` ... ``_mixed`` for the other settings (the names of the
        online ``ReIDMetric``), ``rankme``: the effective rank of the r = 1 query + gallery
        features, and the checkpoint).
    """
    query = Market1501Dataset(data_root=data_root, split='query')
    gallery = Market1501Dataset(data_root=data_root, split='gallery')
    q = [query.get_data_info(i) for i in range(len(query))]
    g = [gallery.get_data_info(i) for i in range(len(gallery))]
    settings = parse_query_settings(query_downsample)
    q_paths, g_paths = [x['img_path'] for x in q], [x['img_path'] for x in g]
    results = {}
    for name, ckpt in backbones.items():
        vit = build_backbone(arch, img_size, ckpt, src_grid, seed=seed)
        gf = embed(vit, g_paths, img_size, batch_size)
        for setting in settings:
            factors = None if setting == 1 else query_factors(setting, len(q), mixed_factors,
                                                              mixed_seed)
            qf = embed(vit, q_paths, img_size, batch_size, factors)
            metrics = reid_metrics(qf, [x['pid'] for x in q], [x['camid'] for x in q], gf,
                                   [x['pid'] for x in g], [x['camid'] for x in g],
                                   dist='cosine')
            if setting == 1:
                results[name] = metrics
                # label-free: the effective rank of all the split's features (1 = collapsed)
                results[name]['rankme'] = rankme(torch.cat([qf, gf]))
            else:
                results[name].update({f'{k}_{setting_name(setting)}': v
                                      for k, v in metrics.items() if not k.startswith('num_')})
        results[name]['checkpoint'] = ckpt
    return dict(data_root=data_root, num_query=len(q), num_gallery=len(g),
                num_identities=len({x['pid'] for x in q}),
                query_settings=[setting_name(s) for s in settings],
                mixed_factors=list(mixed_factors), mixed_seed=mixed_seed, results=results)


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
    try:
        settings = parse_query_settings(args.query_downsample)
    except ValueError as err:
        raise SystemExit(f'--query-downsample: {err}')
    return evaluate_backbones(args.data_root, dict(rows), seed=0, arch=args.arch,
                              img_size=args.img_size, src_grid=args.src_grid,
                              batch_size=args.batch_size, query_downsample=settings,
                              mixed_factors=args.mixed_factors, mixed_seed=args.mixed_seed)


def setting_label(name: str, report: dict) -> str:
    """How a table names a setting: ``r = 2``, ``mixed r in {2, 3, 4}``."""
    if name == 'mixed':
        factors = ', '.join(str(f) for f in report.get('mixed_factors', MIXED_FACTORS))
        return f'mixed r in {{{factors}}}'
    return f'r = {name[1:]}'


def to_markdown(report: dict) -> str:
    """One row per backbone (r = 1 only) or per backbone and query setting."""
    settings = report.get('query_settings', ['r1'])
    cross = len(settings) > 1
    lines = [f'Frozen-feature ReID (cosine kNN on the final cls token), {report["data_root"]}: '
             f'{report["num_query"]} queries, {report["num_gallery"]} gallery images, '
             f'{report["num_identities"]} identities.']
    if cross:
        lines.append(f'Queries shrunk r times from their recorded size (area interpolation), '
                     f'then resized to the input; the gallery as recorded; mixed: each query its '
                     f'own r, seed {report.get("mixed_seed", 0)}. RankMe: r = 1 features.')
    lines += ['', '| backbone | ' + ('queries | ' if cross else '') +
              'mAP | rank-1 | rank-5 | rank-10 | RankMe |',
              '| --- | ' + ('--- | ' if cross else '') + '--- | --- | --- | --- | --- |']
    for name, r in report['results'].items():
        for setting in settings:
            suffix = '' if setting == 'r1' else f'_{setting}'
            rank = f'{r["rankme"]:.1f}' if setting == 'r1' else ''
            lines.append(f'| {name} | ' + (f'{setting_label(setting, report)} | ' if cross
                                           else '') +
                         ' | '.join(f'{r[m + suffix]:.1f}'
                                    for m in ('mAP', 'rank-1', 'rank-5', 'rank-10')) +
                         f' | {rank} |')
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
