#!/usr/bin/env python
"""Convert a ViT checkpoint of any common layout into an mmpretrain VisionTransformer checkpoint.

Layouts (detected): timm / DeiT / MAE / HAP / LUPerson-MAE (``blocks.N.norm1``, under ``model``
or at the top), DINO and SOLIDER-style ``teacher`` / ``student`` (``backbone.`` or
``module.backbone.``), PATH (``module.backbone_module.``), MMEngine ``state_dict`` with
``backbone.``, the SAIP authors' pretraining checkpoint (SAIPv1 ``main_pretrain.py``) and a
saip_mm pretraining checkpoint. The output holds tensors only, keyed ``backbone.<name>``, and
``meta['pos_embed_grid']`` and ``meta['arch']`` (with the arch's ``num_heads``, which the tensors
do not hold: ``DistillHead``'s ``teacher_config_from_checkpoint`` reads it); it loads with
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``.

    python tools/model_converters/to_mmpretrain_vit.py hap_pretrained.pth hap_vit-base.pth \
        --arch base --src-grid 16 8 --img-size 256 192
"""
import argparse
import os.path as osp
import sys
from typing import Dict, Optional, Sequence, Union

import saip_mm  # noqa: F401  (allow-lists MMEngine checkpoint contents for weights_only loads)
from saip_mm.utils.checkpoint_io import (CheckpointReadError, check_finite, check_output_path,
                                         read_checkpoint, save_atomic)
from saip_mm.utils.vit_checkpoint import ViTLayoutError, convert_vit

# DINO-, MAE- and SAIPv1-style training scripts save their argparse options next to the
# weights. A Namespace is plain data; nothing else beyond torch's allow-list is accepted.
ALLOWED_GLOBALS = (argparse.Namespace,)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint to convert')
    parser.add_argument('dst', help='output backbone checkpoint')
    parser.add_argument('--arch', default='deit-tiny',
                        help="mmpretrain VisionTransformer arch of the output, a name or "
                             "embed_dims=..,num_layers=..,feedforward_channels=..[,num_heads=..] "
                             "(width, depth and MLP width are checked, and a mismatch names the "
                             "arch the checkpoint matches: a timm ViT-S is deit-small, "
                             "mmpretrain's small is 768 wide; the heads are recorded in the "
                             "output's meta; default deit-tiny = 192 wide, 12 blocks)")
    parser.add_argument('--source', choices=['teacher', 'student'], default='teacher',
                        help='for checkpoints holding both (DINO, SAIP): which one (default teacher)')
    parser.add_argument('--prefix', default=None,
                        help='key prefix of the backbone (default: detected)')
    parser.add_argument('--src-grid', type=int, nargs=2, metavar=('H', 'W'),
                        help='patch grid of the stored position embeddings when not square '
                             '(e.g. 16 8 for a 256x128 input with patch 16)')
    parser.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'),
                        help='resize the position embeddings once for this downstream input '
                             'size, so stock loaders need no resizing')
    parser.add_argument('--force', action='store_true', help='overwrite an existing dst '
                        '(never the source checkpoint)')
    return parser.parse_args(argv)


def parse_arch(text: str) -> Union[str, Dict[str, int]]:
    """An mmpretrain arch name, or ``embed_dims=192,num_layers=12,feedforward_channels=768``."""
    if '=' not in text:
        return text
    try:
        return {k.strip(): int(v) for k, v in (item.split('=') for item in text.split(','))}
    except ValueError:
        raise ValueError(f'--arch {text!r}: write NAME or key=int pairs separated by commas, '
                         f'e.g. embed_dims=192,num_layers=12,feedforward_channels=768') from None


def convert(src: str,
            dst: str,
            arch: Union[str, dict, None] = 'deit-tiny',
            source: str = 'teacher',
            prefix: Optional[str] = None,
            src_grid: Optional[Sequence[int]] = None,
            img_size: Optional[Sequence[int]] = None,
            force: bool = False) -> dict:
    """Convert ``src`` to ``dst``; return the report (see ``saip_mm.utils.vit_checkpoint``).

    Args:
        src (str): input checkpoint.
        dst (str): output path; never ``src``.
        arch (str | dict | None): arch the output must fit. Defaults to 'deit-tiny'.
        source (str): teacher or student. Defaults to 'teacher'.
        prefix (str, optional): backbone key prefix. Defaults to None (detected).
        src_grid (Sequence[int], optional): stored position grid. Defaults to None.
        img_size (Sequence[int], optional): downstream input size. Defaults to None.
        force (bool): overwrite an existing ``dst``. Defaults to False.
    """
    check_output_path(src, dst, force)
    ckpt = read_checkpoint(src, allowed_globals=ALLOWED_GLOBALS)
    out, report = convert_vit(ckpt, arch=arch, source=source, prefix=prefix, src_grid=src_grid,
                              img_size=img_size, path=src)
    check_finite(out['state_dict'], src)
    save_atomic(out, dst)
    return report


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        report = convert(args.src, args.dst, parse_arch(args.arch), args.source, args.prefix,
                         args.src_grid, args.img_size, args.force)
    except (FileNotFoundError, FileExistsError, IsADirectoryError, CheckpointReadError,
            ViTLayoutError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(f'layout: {report["layout"]} (backbone prefix {report["prefix"]!r})')
    print(f'wrote {args.dst}: {report["kept"]} tensors, keyed backbone.<mmpretrain name>')
    print(f'mapped: {len(report["mapped"])}')
    dropped = report['dropped']
    print(f'dropped: {len(dropped)}' + (f' ({", ".join(dropped[:6])}'
                                        f'{", ..." if len(dropped) > 6 else ""})' if dropped else ''))
    print('missing: ' + ('; '.join(report['missing']) if report['missing'] else 'none'))
    if report['unused_entries']:
        print(f'not read: {", ".join(map(str, report["unused_entries"]))}')
    grid = report['grid']
    if report['resized']:
        print(f'pos_embed: grid {report["resized"]["src_grid"]} ({report["grid_from"]}) resized '
              f'in 2-D (bicubic) to {report["resized"]["dst_grid"]}')
    else:
        print(f'pos_embed: grid {grid} ({report["grid_from"]}), written to meta')
    print(f"config: init_cfg=dict(type='Pretrained', checkpoint='{osp.abspath(args.dst)}', "
          f"prefix='backbone.')")


if __name__ == '__main__':
    main()
