"""The three text-person datasets read their released annotation files."""
import json
import os
import os.path as osp
import re
import shutil

import pytest

from saip_mm.datasets import CUHKPEDESDataset, ICFGPEDESDataset, RSTPReidDataset

DATASETS = dict(cuhk=CUHKPEDESDataset, icfg=ICFGPEDESDataset, rstp=RSTPReidDataset)


@pytest.mark.parametrize('kind,captions_per_image,pid_offset',
                         [('cuhk', 2, 1), ('icfg', 1, 0), ('rstp', 2, 0)])
def test_train_split_is_one_sample_per_caption(kind, captions_per_image, pid_offset,
                                               text_person_root):
    root = text_person_root(kind)
    ds = DATASETS[kind](data_root=root, split='train')
    assert len(ds) == 4 * captions_per_image  # 4 training images
    assert not ds.test_mode
    first = ds.get_data_info(0)
    path_key = 'img_path' if kind == 'rstp' else 'file_path'
    entries = json.load(open(osp.join(root, DATASETS[kind].ANN_FILE)))
    assert first['img_path'] == osp.join(root, 'imgs', entries[0][path_key])
    assert first['caption'] == entries[0]['captions'][0]
    assert 'captions' not in first
    # identities as in the file; labels 0..N-1 over the sorted training identities
    assert [ds.get_data_info(i)['pid'] for i in range(len(ds))] == \
        [pid_offset] * 2 * captions_per_image + [1 + pid_offset] * 2 * captions_per_image
    assert [ds.get_data_info(i)['gt_label'] for i in range(len(ds))] == \
        [0] * 2 * captions_per_image + [1] * 2 * captions_per_image
    assert ds.metainfo['num_identities'] == 2 and ds.metainfo['num_images'] == 4
    assert ds.metainfo['num_captions'] == 4 * captions_per_image
    # every caption once, in file order (what the vocabulary is built from)
    assert ds.get_captions() == [c for e in entries if e['split'] == 'train'
                                 for c in e['captions']]


@pytest.mark.parametrize('kind,split,pids', [('cuhk', 'test', [5, 5, 6]), ('cuhk', 'val', [3, 4]),
                                             ('icfg', 'test', [4, 4, 5]),
                                             ('rstp', 'test', [4, 4, 5]), ('rstp', 'val', [2, 3])])
def test_eval_splits_are_one_sample_per_image(kind, split, pids, text_person_root):
    ds = DATASETS[kind](data_root=text_person_root(kind), split=split)
    assert ds.test_mode
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [info['pid'] for info in infos] == pids
    per_image = 1 if kind == 'icfg' else 2
    assert all(len(info['captions']) == per_image and 'caption' not in info and
               'gt_label' not in info for info in infos)
    assert infos[0]['captions'][0] == 'A man wearing a green jacket and blue jeans.'
    assert all(osp.isfile(info['img_path']) for info in infos)


def test_unknown_split(text_person_root):
    with pytest.raises(ValueError, match=r"CUHK-PEDES: unknown split 'query'; the released "
                                         r'splits are train, val, test'):
        CUHKPEDESDataset(data_root=text_person_root('cuhk'), split='query')
    with pytest.raises(ValueError, match=r"ICFG-PEDES: unknown split 'val'; the released "
                                         r'splits are train, test'):
        ICFGPEDESDataset(data_root=text_person_root('icfg'), split='val')


def copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def edit_annotations(root, ann_file, edit):
    path = osp.join(root, ann_file)
    entries = json.load(open(path))
    edit(entries)
    json.dump(entries, open(path, 'w'))
    return path


def test_unknown_split_in_the_file(tmp_path, text_person_root):
    root = copy_dataset(text_person_root('rstp'), tmp_path / 'rstp')
    path = edit_annotations(root, 'data_captions.json', lambda e: e[3].update(split='query'))
    message = r": entry 3 \(0001_c4_0003.jpg\): unknown split 'query'; expected one of train, val"
    with pytest.raises(ValueError, match=re.escape(path) + message):
        RSTPReidDataset(data_root=root, split='train')


def test_missing_image(tmp_path, text_person_root):
    root = copy_dataset(text_person_root('cuhk'), tmp_path / 'cuhk')
    missing = osp.join(root, 'imgs', 'CUHK01', '0005007.png')
    os.remove(missing)
    ann = osp.join(root, 'reid_raw.json')
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f"{ann}: image {missing} not found (the 'test' entry "
                                       f"with file_path='CUHK01/0005007.png', id 5)")):
        CUHKPEDESDataset(data_root=root, split='test')
    # the other splits do not name that image
    assert len(CUHKPEDESDataset(data_root=root, split='train')) == 8


@pytest.mark.parametrize('edit,message', [
    (lambda e: e[0].pop('captions'), r"entry 0 has no 'captions' field"),
    (lambda e: e[1].update(captions=[]), r'entry 1 \(CUHK01/0001001.png\): "captions" must be a '
                                         r'non-empty list'),
    (lambda e: e[2].update(id='7'), r'entry 2 \(CUHK01/0002002.png\): "id" must be an integer'),
])
def test_malformed_entries(edit, message, tmp_path, text_person_root):
    root = copy_dataset(text_person_root('cuhk'), tmp_path / 'cuhk')
    path = edit_annotations(root, 'reid_raw.json', edit)
    with pytest.raises(ValueError, match=re.escape(path) + ': ' + message):
        CUHKPEDESDataset(data_root=root, split='train')


def test_missing_annotation_file(tmp_path):
    (tmp_path / 'imgs').mkdir()
    with pytest.raises(FileNotFoundError, match=r'RSTPReid: annotation file .*data_captions.json '
                                                r'not found'):
        RSTPReidDataset(data_root=str(tmp_path), split='train')
