#!/usr/bin/env python
r"""Convert a SAIP pretraining checkpoint into a backbone checkpoint (tensors only).

The output loads into a stock ``mmpretrain.VisionTransformer`` (and the mmpose / mmdet / mmseg
configs built on it) with ``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``.
It records the anchor grid of the position embeddings in ``meta['pos_embed_grid']`` (16×8 for
the 256×128 anchor); with ``--img-size H W`` the position embeddings are resized in 2-D, once,
to that input's grid, so a stock config of that input size loads the file with no resizing and
no saip_mm code. A ``SAIPTinyViT`` checkpoint's output loads into a stock ``mmpretrain.TinyViT`` the same way.

    python tools/model_converters/saip_to_backbone.py work_dirs/x/epoch_300.pth saip_vit-tiny.pth
    python tools/model_converters/saip_to_backbone.py work_dirs/x/epoch_300.pth \
        saip_vit-tiny_256x192.pth --img-size 256 192

``--to timm`` writes plain timm weights instead: a ``state_dict`` (tensors at the top, timm's
names: ``blocks.N.norm1``, ``attn.qkv``, ``mlp.fc1``, ``norm``) that timm's ViT of the same
shape loads with ``strict=True``, no saip_mm or OpenMMLab code needed to use it:

    python tools/model_converters/saip_to_backbone.py work_dirs/x/epoch_300.pth \
        saip_vit-tiny_timm.pth --to timm

    import timm, torch
    model = timm.create_model('vit_tiny_patch16_224', img_size=(256, 128), num_classes=0)
    model.load_state_dict(torch.load('saip_vit-tiny_timm.pth'), strict=True)
    features = model.forward_features(images)  # (B, 1 + 16*8, 192), after the final norm

A TinyViT-5M checkpoint gives timm's ``TinyVit`` names instead (stem ``patch_embed.conv1``,
each downsampling at the start of the next stage, final norm ``head.norm``):
``timm.create_model('tiny_vit_5m_224', num_classes=0)``, any input size; its output (B, 320)
is the pooled, normalised feature, as ``mmpretrain.TinyViT``'s.

The converter prints the ``timm.create_model`` call of the checkpoint's shape (``--img-size``
resizes a ViT's position embeddings for another input, as above) and, when timm is installed,
checks it before writing: a strict load, and the features of the timm model against those of
the stock mmpretrain backbone with the same weights on a random batch (a ViT's tokens after the
final norm, a TinyViT's pooled output; the max abs difference is printed, above 1e-4 is an
error and nothing is written).
"""
import argparse
import importlib.util
import os.path as osp
import sys
from collections import Counter, OrderedDict
from typing import Optional, Sequence, Tuple

import saip_mm  # noqa: F401  (allow-lists MMEngine checkpoint contents for weights_only loads)
from saip_mm.utils import extract_backbone
from saip_mm.utils.backbone_export import tinyvit_to_timm_state_dict
from saip_mm.utils.checkpoint_io import (CheckpointReadError, check_finite, check_output_path,
                                         patch_grid, read_checkpoint, save_atomic)
from saip_mm.utils.vit_checkpoint import (build_backbone_checkpoint, resolve_num_heads,
                                          timm_vit_args, to_timm_state_dict, vit_shape)

ANCHOR = (256, 128)  # the reference recipe's anchor input (H, W)
TIMM_CHECK_TOLERANCE = 1e-4  # max abs difference of the features, timm vs mmpretrain (fp32)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index('``--to timm``'):])  # how to load the timm output
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
    parser.add_argument('--to', choices=['mmpretrain', 'timm'], default='mmpretrain',
                        help="output layout: 'mmpretrain' (default: backbone.-prefixed "
                             "mmpretrain names, for the OpenMMLab configs) or 'timm' (a plain "
                             "state_dict that timm.create_model('vit_tiny_patch16_224', "
                             "img_size=(256, 128), num_classes=0) loads with strict=True; "
                             "'tiny_vit_5m_224' for a TinyViT-5M)")
    parser.add_argument('--no-check', action='store_true',
                        help='with --to timm: skip the strict load and feature comparison in '
                             'timm before writing (done by default when timm is installed)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite an existing dst (never the source checkpoint)')
    return parser.parse_args(argv)


def timm_call(name: str, kwargs: dict) -> str:
    """The ``timm.create_model`` call as a user would type it."""
    args = ', '.join(f'{k}={v!r}' for k, v in kwargs.items())
    return f'timm.create_model({name!r}, {args})'


def check_timm_features(timm_state: dict, mm_state: dict, name: str, kwargs: dict,
                        reference: dict, img_size: Sequence[int]) -> float:
    """Load ``timm_state`` strictly into timm's model and compare its features with those of
    the stock mmpretrain backbone holding ``mm_state``; return the max abs difference.

    Features, on a seeded random batch of 2 at ``img_size``: a ViT's every token after the
    final norm, (B, 1 + h*w, C) (``forward_features`` vs ``VisionTransformer(out_type='raw')``);
    a TinyViT's pooled, normalised output, (B, C) (the model with ``num_classes=0`` vs
    ``TinyViT``'s output, what SAIP's CSM reads).
    """
    import timm
    import torch
    from mmpretrain.models import TinyViT, VisionTransformer
    model = timm.create_model(name, pretrained=False, **kwargs)
    model.load_state_dict(timm_state, strict=True)
    model.eval()
    vit = reference['type'] == 'VisionTransformer'
    ours = (VisionTransformer if vit else TinyViT)(
        **{k: v for k, v in reference.items() if k != 'type'})
    ours.load_state_dict(mm_state, strict=True)
    ours.eval()
    images = torch.randn(2, 3, *img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = model.forward_features(images) if vit else model(images)
        return float((theirs - ours(images)[-1]).abs().max())


def convert(src: str, dst: str, source: str = 'teacher', force: bool = False,
            anchor: Sequence[int] = ANCHOR, img_size: Optional[Sequence[int]] = None,
            to: str = 'mmpretrain', check: bool = True) -> dict:
    """Write the backbone of ``src`` to ``dst``; return a report of kept and dropped keys.

    Args:
        src (str): SAIP pretraining checkpoint.
        dst (str): output file; refused when it is ``src`` (also with ``force``).
        source (str): 'teacher' (default, the EMA weights) or 'student'.
        force (bool): overwrite an existing ``dst``. Defaults to False.
        anchor (Sequence[int]): pretraining anchor input (H, W). Defaults to (256, 128).
        img_size (Sequence[int], optional): downstream input to resize the position embeddings
            for. Defaults to None (keep the anchor grid).
        to (str): 'mmpretrain' (``backbone.``-prefixed mmpretrain names and a meta) or 'timm'
            (a plain state dict in timm's names). Defaults to 'mmpretrain'.
        check (bool): with ``to='timm'``, load the result strictly into timm and compare its
            features with mmpretrain's before writing, when timm is installed (the report's
            ``timm_max_abs_diff``; None when not checked). Defaults to True.

    Raises:
        FileNotFoundError, FileExistsError, CheckpointReadError, ValueError: with the file named.
    """
    if to not in ('mmpretrain', 'timm'):
        raise ValueError(f"--to must be 'mmpretrain' or 'timm', got {to!r}")
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
    grid = tuple(out['meta'].get('pos_embed_grid', ()))
    timm_report = {}
    if to == 'timm':
        out, timm_report = timm_output(ckpt, out, src, check, anchor)
    save_atomic(out, dst)
    groups = Counter(k.split('.')[0] if not k.startswith('teacher.') else
                     '.'.join(k.split('.')[:2]) for k in dropped)
    return dict(kept=len(backbone), dropped=len(dropped), dropped_groups=dict(groups),
                dropped_backbone=[k for k in dropped if 'ln_inter' in k],
                grid=grid, resized=resized, **timm_report)


def timm_output(ckpt: dict, out: dict, src: str, check: bool,
                anchor: Sequence[int]) -> Tuple[OrderedDict, dict]:
    """The timm state dict of an mmpretrain backbone checkpoint ``out``, its
    ``timm.create_model`` call and, when timm is installed and ``check``, the features' max abs
    difference (an error above ``TIMM_CHECK_TOLERANCE``)."""
    mm_state = OrderedDict((k[len('backbone.'):], v) for k, v in out['state_dict'].items())
    num_heads = heads_from = None
    if 'pos_embed' in mm_state:  # a ViT: the reverse of the import tables
        grid = tuple(out['meta']['pos_embed_grid'])
        meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
        shape = vit_shape(mm_state)
        num_heads, heads_from = resolve_num_heads(ckpt, meta, shape, path=src)
        timm_state = to_timm_state_dict(mm_state, src)
        name, kwargs = timm_vit_args(mm_state, num_heads, grid, src)
        img_size = kwargs['img_size']
        gamma = 'layers.0.attn.gamma1.weight' in mm_state
        reference = dict(
            type='VisionTransformer', img_size=img_size, patch_size=shape['patch_size'],
            arch=dict(embed_dims=shape['embed_dims'], num_layers=shape['num_layers'],
                      num_heads=num_heads, feedforward_channels=shape['feedforward_channels']),
            out_type='raw', norm_cfg=dict(type='LN', eps=1e-6),
            pre_norm='pre_norm.weight' in mm_state, layer_scale_init_value=1. if gamma else 0.)
    else:  # a TinyViT: windowed attention, any input size (timm's takes no img_size)
        timm_state, arch, name = tinyvit_to_timm_state_dict(mm_state, src)
        kwargs = dict(num_classes=0)
        img_size = tuple(int(v) for v in anchor)
        reference = dict(type='TinyViT', arch=arch, img_size=img_size)
    diff = None
    if check and importlib.util.find_spec('timm') is not None:
        diff = check_timm_features(timm_state, mm_state, name, kwargs, reference, img_size)
        if not diff <= TIMM_CHECK_TOLERANCE:
            raise ValueError(f'{src}: the timm model\'s features differ from mmpretrain\'s by '
                             f'{diff:.3g} (max abs, above {TIMM_CHECK_TOLERANCE}); nothing was '
                             f'written')
    return timm_state, dict(timm_call=timm_call(name, kwargs), num_heads=num_heads,
                            heads_from=heads_from, timm_max_abs_diff=diff,
                            timm_features='all tokens after the final norm' if num_heads else
                            'the pooled, normalised output')


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        report = convert(args.src, args.dst, args.source, args.force, args.anchor, args.img_size,
                         args.to, not args.no_check)
    except (FileNotFoundError, FileExistsError, IsADirectoryError, CheckpointReadError,
            ValueError) as e:  # ViTLayoutError is a ValueError
        sys.exit(f'error: {e}')
    layout = 'timm names, plain state_dict' if args.to == 'timm' else 'mmpretrain names'
    print(f'wrote {args.dst}: {report["kept"]} backbone tensors ({args.source}; {layout})')
    print(f'dropped {report["dropped"]} tensors not used downstream:')
    for group, n in sorted(report['dropped_groups'].items()):
        print(f'  {group}: {n}')
    print(f'  (backbone-only pretraining parts: {", ".join(report["dropped_backbone"])})')
    # the timm file is tensors only: its grid is in the create_model call's img_size
    grid_note = '' if args.to == 'timm' else f'; meta pos_embed_grid={list(report["grid"])}'
    if report['resized']:
        print(f'pos_embed resized in 2-D (bicubic) from grid {report["resized"]["src_grid"]} to '
              f'{report["grid"]}{grid_note}')
    elif report['grid']:
        if grid_note:
            print(grid_note[2:])
    else:
        print('no position embeddings (hierarchical backbone): loads at any input size')
    if args.to == 'timm':
        heads = (f'  (num_heads={report["num_heads"]} from {report["heads_from"]})'
                 if report['num_heads'] else '')
        print(f'load it with: {report["timm_call"]}{heads}')
        print(f'               model.load_state_dict(torch.load({args.dst!r}), strict=True)')
        if report['timm_max_abs_diff'] is None:
            why = '--no-check' if args.no_check else 'timm is not installed'
            print(f'timm check: not run ({why})')
        else:
            print(f'timm check: strict load ok; features ({report["timm_features"]}) vs '
                  f'mmpretrain\'s, max abs diff {report["timm_max_abs_diff"]:.3g}')


if __name__ == '__main__':
    main()
