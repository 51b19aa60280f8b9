#!/usr/bin/env python
"""Convert a SAIP pretraining checkpoint into a backbone checkpoint (tensors only).

The output loads into a stock ``mmpretrain.VisionTransformer`` (and the mmpose / mmdet / mmseg
configs built on it) with ``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``.
It records the anchor grid of the position embeddings in ``meta['pos_embed_grid']`` (16×8 for
the 256×128 anchor); with ``--img-size H W`` the position embeddings are resized in 2-D, once,
to that input's grid, so a stock config of that input size loads the file with no resizing and
no saip_mm code. A ``SAIPTinyViT`` checkpoint's output loads into a stock ``mmpretrain.TinyViT`` the same way.

    python tools/model_converters/saip_to_backbone.py work_dirs/x/epoch_300.pth saip_vit-tiny.pth
    python tools/model_converters/saip_to_backbone.py work_dirs/x/epoch_300.pth \
        saip_vit-tiny_256x192.pth --img-size 256 192
"""
import argparse
import os.path as osp
import sys
from collections import Counter, OrderedDict
from typing import Optional, Sequence

import saip_mm  # noqa: F401  (allow-lists MMEngine checkpoint contents for weights_only loads)
from saip_mm.utils import extract_backbone
from saip_mm.utils.checkpoint_io import (CheckpointReadError, check_finite, check_output_path,
                                         patch_grid, read_checkpoint, save_atomic)
from saip_mm.utils.vit_checkpoint import build_backbone_checkpoint

ANCHOR = (256, 128)  # the reference recipe's anchor input (H, W)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='SAIP pretraining checkpoint (written by tools/train.py)')
    parser.add_argument('dst', help='output backbone checkpoint')
    parser.add_argument('--source', choices=['teacher', 'student'], default='teacher',
                        help='which backbone to export (default: the EMA teacher, as in the method; '
                             "'student' for a checkpoint without a teacher, e.g. MAE's)")
    parser.add_argument('--anchor', type=int, nargs=2, metavar=('H', 'W'), default=list(ANCHOR),
                        help='anchor input size of the pretraining config (model.backbone.img_size; '
                             'default 256 128): its patch grid is what the position embeddings hold')
    parser.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'),
                        help='write position embeddings resized (2-D, bicubic) for this downstream '
                             'input size, e.g. 256 192 (pose) or 512 512 (parsing)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite an existing dst (never the source checkpoint)')
    return parser.parse_args(argv)


def convert(src: str, dst: str, source: str = 'teacher', force: bool = False,
            anchor: Sequence[int] = ANCHOR, img_size: Optional[Sequence[int]] = None) -> dict:
    """Write the backbone of ``src`` to ``dst``; return a report of kept and dropped keys.

    Args:
        src (str): SAIP pretraining checkpoint.
        dst (str): output file; refused when it is ``src`` (also with ``force``).
        source (str): 'teacher' (default, the EMA weights) or 'student'.
        force (bool): overwrite an existing ``dst``. Defaults to False.
        anchor (Sequence[int]): pretraining anchor input (H, W). Defaults to (256, 128).
        img_size (Sequence[int], optional): downstream input to resize the position embeddings
            for. Defaults to None (keep the anchor grid).

    Raises:
        FileNotFoundError, FileExistsError, CheckpointReadError, ValueError: with the file named.
    """
    check_output_path(src, dst, force)
    ckpt = read_checkpoint(src)
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f'{src} holds no state dict')
    try:
        backbone, dropped = extract_backbone(state_dict, source)
    except ValueError as e:
        raise ValueError(f'{src}: {e}') from None
    # named as in the source file, where a user would look for them
    source_prefix = 'teacher.backbone.' if source == 'teacher' else 'backbone.'
    check_finite({source_prefix + k[len('backbone.'):]: v for k, v in backbone.items()}, src)
    names = {k[len('backbone.'):]: v for k, v in backbone.items()}
    meta = dict(source=source, converted_from=osp.basename(src), layout='saip-mm',
                anchor=[int(v) for v in anchor])
    if 'pos_embed' not in names:
        # A hierarchical backbone (SAIPTinyViT): no absolute position embeddings, so there is
        # no grid to record or resize; any input size loads.
        if img_size is not None:
            raise ValueError(f'{src}: --img-size resizes ViT position embeddings; this backbone '
                             f'has none (it loads at any input size): drop --img-size')
        out = dict(state_dict=OrderedDict(('backbone.' + k, v) for k, v in names.items()),
                   meta=meta)
        resized = None
    else:
        patch = int(names['patch_embed.projection.weight'].shape[-1])
        grid = patch_grid(anchor, patch)
        positions = names['pos_embed'].shape[1] - 1
        if grid[0] * grid[1] != positions:
            raise ValueError(
                f'{src}: its pos_embed holds {positions} patch positions, not the '
                f'{grid[0]}x{grid[1]} grid of --anchor {anchor[0]} {anchor[1]} (patch {patch}); '
                f'pass the --anchor of the pretraining config (model.backbone.img_size)')
        out, resized = build_backbone_checkpoint(names, grid, img_size, meta)
    save_atomic(out, dst)
    groups = Counter(k.split('.')[0] if not k.startswith('teacher.') else
                     '.'.join(k.split('.')[:2]) for k in dropped)
    return dict(kept=len(backbone), dropped=len(dropped), dropped_groups=dict(groups),
                dropped_backbone=[k for k in dropped if 'ln_inter' in k],
                grid=tuple(out['meta'].get('pos_embed_grid', ())), resized=resized)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        report = convert(args.src, args.dst, args.source, args.force, args.anchor, args.img_size)
    except (FileNotFoundError, FileExistsError, IsADirectoryError, CheckpointReadError,
            ValueError) as e:
        sys.exit(f'error: {e}')
    print(f'wrote {args.dst}: {report["kept"]} backbone tensors ({args.source})')
    print(f'dropped {report["dropped"]} tensors not used downstream:')
    for group, n in sorted(report['dropped_groups'].items()):
        print(f'  {group}: {n}')
    print(f'  (backbone-only pretraining parts: {", ".join(report["dropped_backbone"])})')
    if report['resized']:
        print(f'pos_embed resized in 2-D (bicubic) from grid {report["resized"]["src_grid"]} to '
              f'{report["grid"]}; meta pos_embed_grid={list(report["grid"])}')
    elif report['grid']:
        print(f'meta pos_embed_grid={list(report["grid"])}')
    else:
        print('no position embeddings (hierarchical backbone): loads at any input size')


if __name__ == '__main__':
    main()
