#!/usr/bin/env python
"""Export a SAIP backbone or a trained ReID / pose / parsing model to ONNX, checked.

    # backbone (cls embedding) from a SAIP pretraining config + the converted backbone
    python tools/deployment/export_onnx.py \\
        configs/saip/saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py \\
        work_dirs/demo_vtest/saip_vit-tiny_vtest_backbone.pth --kind backbone --out vit.onnx
    # trained downstream models: the kind follows from the config (reid, pose, parsing)
    python tools/deployment/export_onnx.py projects/reid/configs/reid_….py best.pth \\
        --out reid.onnx

Every export has a dynamic batch axis, opset >= 17, passes ``onnx.checker`` (full check) and is
compared with PyTorch in onnxruntime (CPU) on real person crops (the demo's ReID query images,
``data/vtest/reid/query``, when present; ``--images`` for others; fixed random inputs
otherwise) at batch 1 and batch N: the maximum absolute difference is printed and must be
within ``--atol`` (1e-4), or the tool exits with status 1. ``--simplify`` runs onnxslim and
checks the simplified graph the same way.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction

import saip_mm  # noqa: F401  (registration, checkpoint allow-list)
from saip_mm.deployment import (EXPORT_KINDS, build_export_model, check_onnx, export_onnx,
                                image_paths, max_abs_diff, model_inputs, ort_session,
                                read_rgb, simplify_onnx)

DEMO_CROPS = 'data/vtest/reid/query'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='model config (a SAIP pretraining config for a backbone)')
    parser.add_argument('checkpoint', help='trained checkpoint, or a backbone checkpoint '
                        '(tools/model_converters/saip_to_backbone.py) for --kind backbone')
    parser.add_argument('--kind', choices=EXPORT_KINDS,
                        help="what to export; default: from the config's model type")
    parser.add_argument('--backbone-output', choices=('cls', 'featmap'), default='cls',
                        help='kind backbone: the cls embedding (default) or the patch-token map')
    parser.add_argument('--out', help='output .onnx (default: CHECKPOINT with _KIND.onnx)')
    parser.add_argument('--opset', type=int, default=18,
                        help='ONNX opset (default 18, torch.export-based exporter); 17 uses the '
                        'TorchScript exporter')
    parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size; default: the backbone's img_size")
    parser.add_argument('--src-grid', type=int, nargs=2, metavar=('h', 'w'),
                        help='kind backbone: patch grid of the checkpoint position embeddings '
                        'when exporting at another size (SAIP checkpoints: 16 8)')
    parser.add_argument('--bake-normalization', action='store_true',
                        help='normalise inside the graph: it then takes RGB in [0, 255]')
    parser.add_argument('--simplify', action='store_true', help='simplify with onnxslim')
    parser.add_argument('--images', nargs='+', metavar='PATH',
                        help=f'images or folders for the parity check (default: {DEMO_CROPS} '
                        'when it exists, fixed random inputs otherwise)')
    parser.add_argument('--num-images', type=int, default=8, help='parity batch (default 8)')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest accepted |onnxruntime - PyTorch| (default 1e-4)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing --out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as in tools/train.py')
    return parser.parse_args(argv)


def parity_inputs(args: argparse.Namespace, spec):
    """The parity batch and where it came from."""
    specs = args.images or ([DEMO_CROPS] if osp.isdir(DEMO_CROPS) else None)
    size = spec.input_size
    if specs is None:
        gen = torch.Generator().manual_seed(0)
        rgb = torch.rand(args.num_images, 3, *size, generator=gen) * 255
        source = f'{args.num_images} fixed random images (no {DEMO_CROPS}; run `make demo` or ' \
                 f'pass --images)'
    else:
        paths = image_paths(specs)[:args.num_images]
        rgb = read_rgb(paths, size)
        source = f'{len(paths)} images from {", ".join(specs)}'
    return model_inputs(rgb, spec), source


def check_parity(module, path: str, images: torch.Tensor, atol: float) -> dict:
    """Max |onnxruntime - PyTorch| at batch 1 and at the whole batch (the same file)."""
    session = ort_session(path)
    diffs = {f'batch {n}': max_abs_diff(module, session, images[:n])
             for n in sorted({1, len(images)})}
    return dict(max_abs_diff=diffs, ok=all(d <= atol for d in diffs.values()))


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        sys.exit(f'error: config not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        module, spec = build_export_model(
            cfg, args.checkpoint, kind=args.kind, backbone_output=args.backbone_output,
            input_size=args.input_size, src_grid=args.src_grid,
            bake_normalization=args.bake_normalization)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    out = args.out or f'{osp.splitext(args.checkpoint)[0]}_{spec.kind}.onnx'
    if osp.exists(out) and not args.force:
        sys.exit(f'error: {out} exists; pass --force to overwrite it')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    export_onnx(module, spec, out, opset=args.opset, metadata=dict(
        config=osp.basename(args.config), checkpoint=osp.basename(args.checkpoint)))
    if args.simplify:
        simplify_onnx(out)
    info = check_onnx(out)
    print(f'wrote {out} ({osp.getsize(out) / 2**20:.1f} MiB): {spec.kind}, opset {info["opset"]},'
          f' onnx.checker passed')
    print(f'  input  image {info["inputs"]["image"]}: {spec.input_desc}')
    print(f'  output {spec.output_name} {info["outputs"][spec.output_name]}: {spec.output_desc}')
    images, source = parity_inputs(args, spec)
    result = check_parity(module, out, images, args.atol)
    diffs = ', '.join(f'{v:.2e} ({k})' for k, v in result['max_abs_diff'].items())
    verdict = 'ok' if result['ok'] else 'FAILED'
    print(f'parity onnxruntime vs PyTorch on {source}: max abs diff {diffs}; '
          f'tolerance {args.atol:g}: {verdict}')
    with open(osp.splitext(out)[0] + '.json', 'w') as f:
        json.dump(dict(onnx=out, spec=spec.metadata(), check=info, parity_source=source,
                       **result), f, indent=2)
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
