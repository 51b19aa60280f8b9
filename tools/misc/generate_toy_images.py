"""Write a tiny labelled image folder for smoke runs: ``<out>/<class>/<index>.png``.

Two classes a classifier can tell apart (horizontal vs. vertical stripes, plus noise), so the
toy config has something to fit. Deterministic for a given seed.

    python tools/misc/generate_toy_images.py OUT_DIR [--per-class 4] [--size 32]
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

import numpy as np
from PIL import Image

CLASSES = ('horizontal', 'vertical')


def generate_toy_images(out_dir: str, per_class: int = 4, size: int = 32,
                        seed: int = 0) -> List[str]:
    """Write ``per_class`` RGB ``size``x``size`` PNGs for each class; return their paths."""
    if per_class < 1 or size < 2:
        raise ValueError(f'per_class must be >= 1 and size >= 2, got {per_class}, {size}')
    rng = np.random.default_rng(seed)
    paths = []
    for cls_name in CLASSES:
        os.makedirs(osp.join(out_dir, cls_name), exist_ok=True)
        for index in range(per_class):
            period = int(rng.integers(2, max(3, size // 4)))
            stripes = ((np.arange(size) // period) % 2).astype(np.float32)  # (size, )
            pattern = np.tile(stripes[:, None], (1, size))  # (size, size), rows alternate
            if cls_name == 'vertical':
                pattern = pattern.T
            color = rng.uniform(80, 255, size=3)
            image = pattern[..., None] * color + rng.normal(0, 12, size=(size, size, 3))
            image = np.clip(image, 0, 255).astype(np.uint8)  # (size, size, 3)
            path = osp.join(out_dir, cls_name, f'{index:04d}.png')
            Image.fromarray(image).save(path)
            paths.append(path)
    return paths


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir')
    parser.add_argument('--per-class', type=int, default=4)
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    paths = generate_toy_images(args.out_dir, args.per_class, args.size, args.seed)
    print(f'wrote {len(paths)} images to {args.out_dir}')


if __name__ == '__main__':
    main()
