import os.path as osp

import pytest
import saip_mm.datasets.reid  # noqa: F401  (registers the datasets)
from mmpretrain.registry import DATASETS


def infos(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def make_market(write_image, root, train=(), query=(), gallery=()):
    """Write a Market-1501 tree with the given file names."""
    for folder, names in (('bounding_box_train', train), ('query', query),
                          ('bounding_box_test', gallery)):
        for i, name in enumerate(names):
            write_image(osp.join(root, folder, name), seed=i)
    return str(root)


def make_msmt17(write_image, root, lists):
    """Write an MSMT17_V1 tree; ``lists`` maps list name -> [(relative path, pid)]."""
    for list_name, entries in lists.items():
        folder = 'train' if list_name in ('train', 'val') else 'test'
        with open(osp.join(root, f'list_{list_name}.txt'), 'w') as f:
            for i, (rel, pid) in enumerate(entries):
                write_image(osp.join(root, folder, rel), seed=i)
                f.write(f'{rel} {pid}\n')
    return str(root)


def test_market1501_layout(tmp_path, write_image):
    root = make_market(
        write_image, tmp_path,
        train=['0002_c1s1_000451_03.jpg', '0002_c2s1_000551_01.jpg', '0007_c3s1_000101_02.jpg'],
        query=['0001_c1s1_001051_00.jpg'],
        gallery=['0001_c2s1_000301_01.jpg', '0000_c1s1_000151_01.jpg',
                 '-1_c1s1_000401_03.jpg'])  # junk (-1) is dropped, the distractor (0) kept
    (tmp_path / 'bounding_box_train' / 'Thumbs.db').write_bytes(b'')  # shipped in the zip
    train = DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='train'))
    assert [(d['pid'], d['camid'], d['gt_label']) for d in infos(train)] == \
        [(2, 1, 0), (2, 2, 0), (7, 3, 1)]
    assert train.metainfo['num_identities'] == 2 and not train.test_mode
    test = DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='test'))
    assert [(d['pid'], d['camid'], d['split']) for d in infos(test)] == \
        [(1, 1, 'query'), (0, 1, 'gallery'), (1, 2, 'gallery')]
    assert 'gt_label' not in test.get_data_info(0) and test.test_mode
    assert test.get_data_info(0)['img_path'] == osp.join(root, 'query', '0001_c1s1_001051_00.jpg')
    junk = DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='gallery',
                               keep_junk=True))
    assert sorted(d['pid'] for d in junk) == [-1, 0, 1]


def test_market1501_bad_input(tmp_path, write_image):
    root = make_market(write_image, tmp_path, train=['0002_c1s1_000451_03.jpg', 'person2.jpg'])
    with pytest.raises(ValueError, match='person2.jpg: not a Market-1501 image name'):
        DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='train'))
    with pytest.raises(FileNotFoundError, match='query folder not found'):
        DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='query'))
    with pytest.raises(ValueError, match='split must be one of'):
        DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='val'))


def test_msmt17_v1_layout(tmp_path, write_image):
    root = make_msmt17(write_image, tmp_path, dict(
        train=[('0000/0000_000_01_0303morning_0015_0.jpg', 0),
               ('0000/0000_001_05_0303noon_0031_1.jpg', 0)],
        val=[('0001/0001_000_12_0303afternoon_0100_0.jpg', 1)],
        query=[('0000/0000_000_01_0303morning_0008_0.jpg', 0)],
        gallery=[('0000/0000_004_15_0303morning_0150_1.jpg', 0),
                 ('0002/0002_000_01_0303noon_0009_0.jpg', 2)]))
    train = DATASETS.build(dict(type='MSMT17Dataset', data_root=root, split='train'))
    assert [(d['pid'], d['camid'], d['gt_label']) for d in infos(train)] == \
        [(0, 1, 0), (0, 5, 0), (1, 12, 1)]
    assert train.get_data_info(0)['img_path'] == osp.join(root, 'train', '0000',
                                            '0000_000_01_0303morning_0015_0.jpg')
    train_only = DATASETS.build(dict(type='MSMT17Dataset', data_root=root, with_val=False))
    assert len(train_only) == 2
    test = DATASETS.build(dict(type='MSMT17Dataset', data_root=root, split='test'))
    assert [(d['pid'], d['camid'], d['split']) for d in infos(test)] == \
        [(0, 1, 'query'), (0, 15, 'gallery'), (2, 1, 'gallery')]
    assert test.get_data_info(1)['img_path'].startswith(osp.join(root, 'test', '0000'))

    with open(osp.join(root, 'list_query.txt'), 'a') as f:
        f.write('0003/broken.jpg\n')
    with pytest.raises(ValueError, match=r'list_query.txt:2: expected'):
        DATASETS.build(dict(type='MSMT17Dataset', data_root=root, split='query'))
