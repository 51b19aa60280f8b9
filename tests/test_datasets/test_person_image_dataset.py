import os.path as osp
import pickle
import re

import numpy as np
import pytest

from mmpretrain.registry import DATASETS
from saip_mm.datasets import PersonImageDataset
from saip_mm.datasets.person_image_dataset import PathArray

NAMES = ['b/2.png', 'a/1.jpg', 'a/0.JPEG', 'c/d/3.bmp', 'top.png']


def test_folder_is_listed_recursively_sorted_and_filtered(tmp_path, make_images):
    make_images(tmp_path / 'imgs', NAMES)
    (tmp_path / 'imgs' / 'notes.txt').write_text('not an image')
    ds = DATASETS.build(dict(type='PersonImageDataset', data_root=str(tmp_path),
                             data_prefix='imgs'))
    assert isinstance(ds, PersonImageDataset)
    got = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    expected = sorted(osp.join(str(tmp_path), 'imgs', n) for n in NAMES)
    assert got == expected


def test_list_file_is_relative_to_data_root_and_prefix(tmp_path, make_images):
    make_images(tmp_path / 'imgs', NAMES)
    (tmp_path / 'list.txt').write_text('# LUPerson subset\nb/2.png\n\ntop.png\nc/d/3.bmp\n')
    ds = PersonImageDataset(data_root=str(tmp_path), ann_file='list.txt',
                            data_prefix=dict(img_path='imgs'))
    got = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    root = osp.join(str(tmp_path), 'imgs')
    assert got == [osp.join(root, n) for n in ('b/2.png', 'top.png', 'c/d/3.bmp')]
    assert ds.get_data_info(2)['sample_idx'] == 2


def test_missing_and_empty_sources_name_the_path(tmp_path, make_images):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'readme.txt').write_text('x')
    with pytest.raises(ValueError, match=re.escape(str(empty))):
        PersonImageDataset(data_root=str(empty))
    missing_dir = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing_dir))):
        PersonImageDataset(data_root=str(missing_dir))
    with pytest.raises(FileNotFoundError, match='missing_list.txt'):
        PersonImageDataset(data_root=str(tmp_path), ann_file='missing_list.txt')

    make_images(tmp_path / 'imgs', ['a.png'])
    (tmp_path / 'list.txt').write_text('a.png\nghost.png\n')
    with pytest.raises(FileNotFoundError, match='ghost.png'):
        PersonImageDataset(data_root=str(tmp_path), ann_file='list.txt', data_prefix='imgs')
    # Without the start-up check the dataset builds; loading reports the file instead.
    ds = PersonImageDataset(data_root=str(tmp_path), ann_file='list.txt', data_prefix='imgs',
                            check_files=False)
    assert len(ds) == 2

    with pytest.raises(FileNotFoundError, match='no_bg'):
        PersonImageDataset(data_root=str(tmp_path / 'imgs'), background=str(tmp_path / 'no_bg'))
    with pytest.raises(ValueError, match='unknown key'):
        PersonImageDataset(data_root=str(tmp_path / 'imgs'), background=dict(root='x'))


def test_background_is_drawn_from_its_own_source(tmp_path, make_images):
    people = make_images(tmp_path / 'people', ['p0.png', 'p1.png'])
    scenes = make_images(tmp_path / 'scenes', [f's{i}.jpg' for i in range(4)], 30, 40)
    ds = PersonImageDataset(data_root=str(tmp_path / 'people'), background=str(tmp_path / 'scenes'))
    assert ds.num_backgrounds == 4
    np.random.seed(0)
    drawn = [ds.get_data_info(i % 2)['bg_img_path'] for i in range(60)]
    assert set(drawn) == set(scenes)  # every background reachable, none from elsewhere
    np.random.seed(0)
    assert [ds.get_data_info(i % 2)['bg_img_path'] for i in range(60)] == drawn

    # A list-file source, given as a dict.
    (tmp_path / 'bg.txt').write_text('scenes/s3.jpg\nscenes/s1.jpg\n')
    ds = PersonImageDataset(data_root=str(tmp_path / 'people'),
                            background=dict(data_root=str(tmp_path), ann_file='bg.txt'))
    drawn = {ds.get_data_info(0)['bg_img_path'] for _ in range(40)}
    assert drawn == {osp.join(str(tmp_path), 'scenes/s3.jpg'),
                     osp.join(str(tmp_path), 'scenes/s1.jpg')}

    # Default: the person images themselves.
    ds = PersonImageDataset(data_root=str(tmp_path / 'people'))
    assert ds.num_backgrounds == 2
    assert {ds.get_data_info(0)['bg_img_path'] for _ in range(40)} == set(people)


def test_dataset_pickles_with_its_background_list(tmp_path, make_images):
    make_images(tmp_path / 'people', ['p0.png', 'p1.png', 'p2.png'])
    make_images(tmp_path / 'scenes', ['s0.png', 's1.png'])
    ds = PersonImageDataset(data_root=str(tmp_path / 'people'), background=str(tmp_path / 'scenes'))
    clone = pickle.loads(pickle.dumps(ds))
    np.random.seed(3)
    a = [ds.get_data_info(i) for i in range(3)]
    np.random.seed(3)
    b = [clone.get_data_info(i) for i in range(3)]
    assert a == b and len(clone) == 3


def test_path_array_round_trips_unicode():
    paths = ['a/b.jpg', 'ü/ñ 1.png', 'z.bmp']
    arr = PathArray(paths)
    assert len(arr) == 3
    assert [arr[i] for i in range(3)] == paths and arr[-1] == 'z.bmp'
    with pytest.raises(IndexError):
        arr[3]
