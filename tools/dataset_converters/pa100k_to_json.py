#!/usr/bin/env python
"""Convert PA-100K's ``annotation.mat`` into OpenMMLab 2.0 annotation files (PA100KDataset).

Input (as released)::

    data_root/annotation.mat   attributes (26x1 cell), {train,val,test}_images_name (Nx1 cell),
                               {train,val,test}_label (Nx26, 0/1)
    data_root/data/            000001.jpg ... 100000.jpg

Output: ``data_root/annotations/{train,val,trainval,test}.json``, each
``{"metainfo": {"classes": [...], "dataset_name": "PA-100K"}, "data_list": [{"img_path":
"000001.jpg", "gt_label": [indices of present attributes]}, ...]}``.

    python tools/dataset_converters/pa100k_to_json.py data/pa100k [--out DIR] [--force]
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Sequence

import numpy as np
from scipy.io import loadmat


def mat_strings(cell: np.ndarray) -> List[str]:
    """The strings of a MATLAB cell array of char vectors, as scipy.io.loadmat returns it."""
    out = []
    for item in np.asarray(cell, dtype=object).reshape(-1):
        value = np.asarray(item).reshape(-1)
        out.append(str(value[0]) if value.size else '')
    return out


def binary_to_indices(labels: np.ndarray, where: str) -> List[List[int]]:
    """Rows of a 0/1 matrix as lists of the indices of their ones."""
    labels = np.asarray(labels)
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f'{where}: labels must be 0/1, found {labels[row, col]} at row {row}, '
                         f'attribute {col}')
    return [np.flatnonzero(row).tolist() for row in labels]


def write_split(path: str, classes: Sequence[str], dataset_name: str, names: Sequence[str],
                labels: List[List[int]], force: bool) -> None:
    """Write one OpenMMLab 2.0 multi-label annotation file."""
    if osp.exists(path) and not force:
        raise FileExistsError(f'{path} exists; pass --force to overwrite it')
    data = dict(
        metainfo=dict(classes=list(classes), dataset_name=dataset_name),
        data_list=[dict(img_path=n, gt_label=l) for n, l in zip(names, labels)])
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)


def convert(data_root: str, out_dir: str = '', force: bool = False) -> Dict[str, int]:
    """Convert ``data_root/annotation.mat``; return the number of images per split."""
    mat_path = osp.join(data_root, 'annotation.mat')
    if not osp.isfile(mat_path):
        raise FileNotFoundError(f'PA-100K annotation not found: {mat_path}')
    mat = loadmat(mat_path)
    missing = [k for k in ('attributes', 'train_images_name', 'train_label', 'val_images_name',
                           'val_label', 'test_images_name', 'test_label') if k not in mat]
    if missing:
        raise ValueError(f'{mat_path}: missing variables {missing}; is it PA-100K\'s '
                         f'annotation.mat?')
    classes = mat_strings(mat['attributes'])
    out_dir = out_dir or osp.join(data_root, 'annotations')
    os.makedirs(out_dir, exist_ok=True)
    splits = {}
    for split in ('train', 'val', 'test'):
        names = mat_strings(mat[f'{split}_images_name'])
        labels = np.asarray(mat[f'{split}_label'])
        if labels.shape != (len(names), len(classes)):
            raise ValueError(f'{mat_path}: {split}_label is {labels.shape}, expected '
                             f'({len(names)}, {len(classes)})')
        splits[split] = (names, binary_to_indices(labels, f'{mat_path} {split}_label'))
    splits['trainval'] = (splits['train'][0] + splits['val'][0],
                          splits['train'][1] + splits['val'][1])
    for split, (names, labels) in splits.items():
        write_split(osp.join(out_dir, f'{split}.json'), classes, 'PA-100K', names, labels, force)
    return {split: len(names) for split, (names, _) in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='PA-100K folder holding annotation.mat')
    parser.add_argument('--out', default='', help='output folder (default: DATA_ROOT/annotations)')
    parser.add_argument('--force', action='store_true', help='overwrite existing files')
    args = parser.parse_args()
    try:
        counts = convert(args.data_root, args.out, args.force)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f'error: {e}')
    print('wrote ' + ', '.join(f'{k}: {v} images' for k, v in counts.items()))


if __name__ == '__main__':
    main()
