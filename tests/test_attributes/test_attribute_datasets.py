"""PA-100K / PETA: .mat files in the released layouts -> converters -> datasets."""
import json
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

import saip_mm.datasets.attributes  # noqa: F401  (registers the datasets)
from mmpretrain.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]
CONVERTERS = ROOT / 'tools' / 'dataset_converters'


def cell(strings):
    """A MATLAB cell column of char vectors, as savemat writes it."""
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = s
    return out


def write_pa100k(root, write_image, attributes, splits):
    """``splits``: split -> (image names, 0/1 label matrix)."""
    os.makedirs(root, exist_ok=True)
    mat = dict(attributes=cell(attributes))
    for split, (names, labels) in splits.items():
        mat[f'{split}_images_name'] = cell(names)
        mat[f'{split}_label'] = np.asarray(labels, dtype=np.uint8)
        for i, name in enumerate(names):
            write_image(osp.join(root, 'data', name), seed=i)
    savemat(osp.join(root, 'annotation.mat'), mat)


def write_peta(root, write_image, attributes, labels, partitions, num_meta=4):
    """PETA.mat: struct `peta` with data / attribute / selected_attribute / partition."""
    os.makedirs(root, exist_ok=True)
    labels = np.asarray(labels, dtype=np.float64)
    n = len(labels)
    meta = np.zeros((n, num_meta))
    meta[:, 0] = np.arange(1, n + 1)  # image number -> images/%05d.png
    parts = np.empty((len(partitions), 1), dtype=object)
    for i, (train, val, test) in enumerate(partitions):
        parts[i, 0] = dict(train=np.asarray(train, float)[:, None] + 1,  # 1-based, columns
                           val=np.asarray(val, float)[:, None] + 1,
                           test=np.asarray(test, float)[:, None] + 1)
    peta = dict(data=np.concatenate([meta, labels], 1), attribute=cell(attributes),
                selected_attribute=np.arange(1, len(attributes) + 1, dtype=float)[:, None],
                partion_attribute=parts)
    savemat(osp.join(root, 'PETA.mat'), dict(peta=peta))
    for i in range(n):
        write_image(osp.join(root, 'images', f'{i + 1:05d}.png'), seed=i)


def convert(tool, *args):
    return subprocess.run([sys.executable, str(CONVERTERS / tool), *map(str, args)],
                          capture_output=True, text=True)


def infos(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


PA_ATTRS = ['Female', 'Hat', 'Backpack']


def test_pa100k_mat_to_dataset(tmp_path, write_image):
    write_pa100k(tmp_path, write_image, PA_ATTRS, dict(
        train=(['000001.jpg', '000002.jpg'], [[1, 0, 1], [0, 0, 0]]),
        val=(['000003.jpg'], [[0, 1, 0]]),
        test=(['000004.jpg'], [[1, 1, 1]])))
    res = convert('pa100k_to_json.py', tmp_path)
    assert res.returncode == 0, res.stderr
    assert 'train: 2 images' in res.stdout and 'trainval: 3 images' in res.stdout
    ann = json.loads((tmp_path / 'annotations' / 'train.json').read_text())
    assert ann['metainfo']['classes'] == PA_ATTRS
    assert ann['data_list'] == [dict(img_path='000001.jpg', gt_label=[0, 2]),
                                dict(img_path='000002.jpg', gt_label=[])]
    ds = DATASETS.build(dict(type='PA100KDataset', data_root=str(tmp_path), split='trainval'))
    assert ds.CLASSES == PA_ATTRS and not ds.test_mode
    assert [(osp.basename(d['img_path']), list(d['gt_label'])) for d in infos(ds)] == \
        [('000001.jpg', [0, 2]), ('000002.jpg', []), ('000003.jpg', [1])]
    assert ds.get_data_info(0)['img_path'] == osp.join(str(tmp_path), 'data', '000001.jpg')
    assert DATASETS.build(dict(type='PA100KDataset', data_root=str(tmp_path),
                               split='test')).test_mode

    again = convert('pa100k_to_json.py', tmp_path)
    assert again.returncode != 0 and '--force' in again.stderr


def test_pa100k_bad_input(tmp_path, write_image):
    write_pa100k(tmp_path, write_image, PA_ATTRS, dict(
        train=(['000001.jpg'], [[1, 2, 0]]), val=(['000002.jpg'], [[0, 0, 0]]),
        test=(['000003.jpg'], [[0, 0, 0]])))
    res = convert('pa100k_to_json.py', tmp_path)
    assert res.returncode != 0 and 'labels must be 0/1, found 2' in res.stderr
    with pytest.raises(FileNotFoundError, match='tools/dataset_converters'):
        DATASETS.build(dict(type='PA100KDataset', data_root=str(tmp_path / 'nowhere')))


PETA_ATTRS = ['accessoryHat', 'carryingBackpack', 'personalMale', 'extra1', 'extra2']
PETA_LABELS = [[1, 0, 1, 1, 0], [0, 1, 0, 0, 1], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1],
               [0, 1, 1, 0, 0], [1, 0, 0, 1, 1]]


def test_peta_mat_to_dataset(tmp_path, write_image):
    partitions = [([0, 1, 2], [3], [4, 5]), ([5, 4, 3], [2], [1, 0])]
    write_peta(tmp_path, write_image, PETA_ATTRS, PETA_LABELS, partitions)
    res = convert('peta_to_json.py', tmp_path, '--partition', 1, '--num-attributes', 3)
    assert res.returncode == 0, res.stderr
    ds = DATASETS.build(dict(type='PETADataset', data_root=str(tmp_path), split='train'))
    assert ds.CLASSES == PETA_ATTRS[:3]
    assert [(osp.basename(d['img_path']), list(d['gt_label'])) for d in infos(ds)] == \
        [('00006.png', [0]), ('00005.png', [1, 2]), ('00004.png', [2])]
    assert ds.get_data_info(0)['img_path'] == osp.join(str(tmp_path), 'images', '00006.png')
    test = DATASETS.build(dict(type='PETADataset', data_root=str(tmp_path), split='test'))
    assert [osp.basename(d['img_path']) for d in infos(test)] == ['00002.png', '00001.png']

    # another split (e.g. the zero-shot PETA-zs) from a JSON file of 0-based rows
    split_file = tmp_path / 'zs.json'
    split_file.write_text(json.dumps(dict(train=[0, 3], val=[1], test=[2, 4, 5])))
    res = convert('peta_to_json.py', tmp_path, '--split-file', split_file, '--out',
                  tmp_path / 'zs', '--num-attributes', 5)
    assert res.returncode == 0, res.stderr
    zs = json.loads((tmp_path / 'zs' / 'trainval.json').read_text())
    assert [d['img_path'] for d in zs['data_list']] == ['00001.png', '00004.png', '00002.png']
    assert zs['metainfo']['classes'] == PETA_ATTRS
    res = convert('peta_to_json.py', tmp_path, '--out', tmp_path / 'all')  # default: 35
    assert res.returncode != 0 and '--num-attributes must be in 1..5' in res.stderr


def test_peta_bad_input(tmp_path):
    savemat(osp.join(tmp_path, 'PETA.mat'), dict(other=np.zeros(3)))
    res = convert('peta_to_json.py', tmp_path)
    assert res.returncode != 0 and 'no variable `peta`' in res.stderr
