#!/usr/bin/env python
"""Convert PETA's ``PETA.mat`` into OpenMMLab 2.0 annotation files (PETADataset).

Input: the commonly distributed conversion of PETA (used by Li et al. 2015, DeepMAR, and
Jia et al. 2021)::

    data_root/PETA.mat     struct `peta`, fields by position:
                             0 data       19000 x (4 + 105): column 0 is the image number
                                          (images/%05d.png), columns 4: the 105 attributes (0/1)
                             1 attribute  105 x 1 cell of attribute names
                             2 (selected attributes, unused)
                             3 partition  5 x 1 cell; each a struct with train / val / test
                                          row numbers (1-based) of one random split
    data_root/images/      00001.png ... 19000.png

The first 35 attributes are the ones every PETA result reports. ``--split-file`` replaces the
random partitions by another split, e.g. the zero-shot split PETA-zs (Jia et al. 2021,
"Rethinking of pedestrian attribute recognition"), given as JSON ``{"train": [...],
"val": [...], "test": [...]}`` of 0-based row indices (their release is a pickle; dump its
train / val / test index arrays to this JSON with ``list(map(int, ...))``).

Output: ``data_root/annotations/{train,val,trainval,test}.json``.

    python tools/dataset_converters/peta_to_json.py data/peta [--partition 0]
        [--split-file peta_zs.json] [--num-attributes 35] [--out DIR] [--force]
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

import numpy as np
from scipy.io import loadmat

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from pa100k_to_json import binary_to_indices, mat_strings, write_split  # noqa: E402

NUM_META_COLUMNS = 4


def read_partition(peta: np.void, partition: int, where: str) -> Dict[str, np.ndarray]:
    """0-based row indices of train / val / test of one of PETA.mat's random partitions."""
    cells = np.asarray(peta[3], dtype=object).reshape(-1)
    if not 0 <= partition < len(cells):
        raise ValueError(f'{where}: --partition must be in 0..{len(cells) - 1}, got {partition}')
    record = np.asarray(cells[partition]).reshape(-1)[0]  # the 1x1 struct of this partition
    return {name: np.asarray(record[i]).reshape(-1).astype(np.int64) - 1
            for i, name in enumerate(('train', 'val', 'test'))}


def read_split_file(path: str) -> Dict[str, np.ndarray]:
    """0-based row indices of train / val / test from a JSON split file."""
    with open(path, encoding='utf-8') as f:
        split = json.load(f)
    missing = [k for k in ('train', 'val', 'test') if k not in split]
    if missing:
        raise ValueError(f'{path}: missing keys {missing} (expected train, val, test)')
    return {k: np.asarray(split[k], dtype=np.int64).reshape(-1) for k in ('train', 'val', 'test')}


def convert(data_root: str, out_dir: str = '', partition: int = 0,
            split_file: Optional[str] = None, num_attributes: int = 35,
            force: bool = False) -> Dict[str, int]:
    """Convert ``data_root/PETA.mat``; return the number of images per split."""
    mat_path = osp.join(data_root, 'PETA.mat')
    if not osp.isfile(mat_path):
        raise FileNotFoundError(f'PETA annotation not found: {mat_path}')
    mat = loadmat(mat_path)
    if 'peta' not in mat:
        raise ValueError(f'{mat_path}: no variable `peta`; is it the converted PETA.mat?')
    peta = mat['peta'].reshape(-1)[0]
    data = np.asarray(peta[0])
    classes = mat_strings(peta[1])
    if data.ndim != 2 or data.shape[1] != NUM_META_COLUMNS + len(classes):
        raise ValueError(f'{mat_path}: data is {data.shape}, expected (N, {NUM_META_COLUMNS} + '
                         f'{len(classes)} attributes)')
    if not 0 < num_attributes <= len(classes):
        raise ValueError(f'--num-attributes must be in 1..{len(classes)}, got {num_attributes}')
    classes = classes[:num_attributes]
    labels = data[:, NUM_META_COLUMNS:NUM_META_COLUMNS + num_attributes]
    names = [f'{int(n):05d}.png' for n in data[:, 0]]
    rows = read_split_file(split_file) if split_file else read_partition(peta, partition, mat_path)
    for split, idx in rows.items():
        if len(idx) and (idx.min() < 0 or idx.max() >= len(data)):
            raise ValueError(f'{split_file or mat_path}: {split} row index out of 0..'
                             f'{len(data) - 1}')
    rows['trainval'] = np.concatenate([rows['train'], rows['val']])
    out_dir = out_dir or osp.join(data_root, 'annotations')
    os.makedirs(out_dir, exist_ok=True)
    indices: List[List[int]] = binary_to_indices(labels, f'{mat_path} data')
    for split, idx in rows.items():
        write_split(osp.join(out_dir, f'{split}.json'), classes, 'PETA',
                    [names[i] for i in idx], [indices[i] for i in idx], force)
    return {split: len(idx) for split, idx in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='PETA folder holding PETA.mat')
    parser.add_argument('--partition', type=int, default=0,
                        help='which of the 5 random partitions of PETA.mat (default 0)')
    parser.add_argument('--split-file', help='JSON split (0-based rows) instead, e.g. PETA-zs')
    parser.add_argument('--num-attributes', type=int, default=35,
                        help='keep the first N attributes (default 35, the standard set)')
    parser.add_argument('--out', default='', help='output folder (default: DATA_ROOT/annotations)')
    parser.add_argument('--force', action='store_true', help='overwrite existing files')
    args = parser.parse_args()
    try:
        counts = convert(args.data_root, args.out, args.partition, args.split_file,
                         args.num_attributes, args.force)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f'error: {e}')
    print('wrote ' + ', '.join(f'{k}: {v} images' for k, v in counts.items()))


if __name__ == '__main__':
    main()
