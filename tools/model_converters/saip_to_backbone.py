#!/usr/bin/env python
"""Convert a SAIP pretraining checkpoint into a backbone checkpoint (tensors only).

The output loads into a stock ``mmpretrain.VisionTransformer`` (and the mmpose / mmdet / mmseg
configs built on it) with ``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``;
a ``SAIPTinyViT`` checkpoint's output loads into a stock ``mmpretrain.TinyViT`` the same way.

    python tools/model_converters/saip_to_backbone.py work_dirs/x/epoch_300.pth saip_vit-tiny.pth
"""
import argparse
import os.path as osp
import sys
from collections import Counter

import torch

import saip_mm  # noqa: F401  (allow-lists MMEngine checkpoint contents for weights_only loads)
from saip_mm.utils import extract_backbone


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='SAIP pretraining checkpoint (written by tools/train.py)')
    parser.add_argument('dst', help='output backbone checkpoint')
    parser.add_argument('--source', choices=['teacher', 'student'], default='teacher',
                        help='which backbone to export (default: the EMA teacher, as in the method)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing dst')
    return parser.parse_args()


def convert(src: str, dst: str, source: str = 'teacher', force: bool = False) -> dict:
    """Write the backbone of ``src`` to ``dst``; return a report of kept and dropped keys."""
    if not osp.isfile(src):
        raise FileNotFoundError(f'checkpoint not found: {src}')
    if osp.exists(dst) and not force:
        raise FileExistsError(f'{dst} exists; pass --force to overwrite it')
    ckpt = torch.load(src, map_location='cpu')  # weights_only=True (torch default)
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f'{src} holds no state dict')
    try:
        backbone, dropped = extract_backbone(state_dict, source)
    except ValueError as e:
        raise ValueError(f'{src}: {e}') from None
    meta = dict(source=source, converted_from=osp.basename(src))
    torch.save(dict(state_dict=backbone, meta=meta), dst)
    groups = Counter(k.split('.')[0] if not k.startswith('teacher.') else
                     '.'.join(k.split('.')[:2]) for k in dropped)
    return dict(kept=len(backbone), dropped=len(dropped), dropped_groups=dict(groups),
                dropped_backbone=[k for k in dropped if 'ln_inter' in k])


def main() -> None:
    args = parse_args()
    try:
        report = convert(args.src, args.dst, args.source, args.force)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(f'wrote {args.dst}: {report["kept"]} backbone tensors ({args.source})')
    print(f'dropped {report["dropped"]} tensors not used downstream:')
    for group, n in sorted(report['dropped_groups'].items()):
        print(f'  {group}: {n}')
    print(f'  (backbone-only pretraining parts: {", ".join(report["dropped_backbone"])})')


if __name__ == '__main__':
    main()
