import re

import numpy as np
import pytest

from mmpretrain.registry import TRANSFORMS
from saip_mm.datasets.transforms import LoadPersonImage


def test_loads_rgb_person_and_background(tmp_path, write_image):
    person = write_image(str(tmp_path / 'p.png'), 20, 10, seed=1)
    scene = write_image(str(tmp_path / 's.bmp'), 12, 30, seed=2)
    load = TRANSFORMS.build(dict(type='LoadPersonImage'))
    assert isinstance(load, LoadPersonImage)
    out = load(dict(img_path=str(tmp_path / 'p.png'), bg_img_path=str(tmp_path / 's.bmp')))
    # Lossless files: the exact RGB pixels come back (not cv2's BGR order).
    assert out['img'].dtype == np.uint8 and np.array_equal(out['img'], person)
    assert np.array_equal(out['bg_img'], scene)
    assert out['img_shape'] == (20, 10) and out['bg_img_shape'] == (12, 30)
    assert 'bg_img' not in load(dict(img_path=str(tmp_path / 'p.png')))
    # a pipeline without background (MAE) does not decode it, even when one is named
    no_bg = TRANSFORMS.build(dict(type='LoadPersonImage', with_background=False))
    out = no_bg(dict(img_path=str(tmp_path / 'p.png'), bg_img_path=str(tmp_path / 'missing.png'),
                     bg_img_bytes=b'not an image'))
    assert np.array_equal(out['img'], person) and 'bg_img' not in out
    assert 'bg_img_bytes' not in out


def test_missing_file_error_names_it(tmp_path, write_image):
    write_image(str(tmp_path / 'p.png'))
    missing = str(tmp_path / 'gone.jpg')
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        LoadPersonImage()(dict(img_path=missing))
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        LoadPersonImage()(dict(img_path=str(tmp_path / 'p.png'), bg_img_path=missing))


@pytest.mark.parametrize('content', [b'\x00garbage bytes, not a JPEG\xff' * 20, b''])
def test_corrupt_file_error_names_it(tmp_path, content):
    bad = tmp_path / 'x.jpg'
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        LoadPersonImage()(dict(img_path=str(bad)))


def test_draft_decoding_keeps_the_needed_size_and_the_full_shape(tmp_path, write_image):
    import cv2
    write_image(str(tmp_path / 'big.jpg'), 600, 300, seed=3)
    write_image(str(tmp_path / 'small.png'), 40, 20, seed=4)
    full = cv2.cvtColor(cv2.imread(str(tmp_path / 'big.jpg')), cv2.COLOR_BGR2RGB)
    load = LoadPersonImage(decode_size=(128, 64))
    out = load(dict(img_path=str(tmp_path / 'big.jpg'), bg_img_path=str(tmp_path / 'small.png')))
    # 600x300 at 1/4 is 150x75, the smallest DCT scale with both sides >= 128x64.
    assert out['img'].shape == (150, 75, 3) and out['img_shape'] == (150, 75)
    assert out['ori_shape'] == (600, 300)
    # The same picture: its 4x4 block means are what the draft decoder returns, nearly.
    blocks = full.reshape(150, 4, 75, 4, 3).mean((1, 3))
    assert np.abs(out['img'].astype(float) - blocks).mean() < 8
    # PNGs (and every file without decode_size) decode at full size, unchanged.
    assert out['bg_img'].shape == (40, 20, 3) and out['bg_ori_shape'] == (40, 20)
    assert np.array_equal(LoadPersonImage()(dict(img_path=str(tmp_path / 'big.jpg')))['img'],
                          full)
    with pytest.raises(ValueError, match='decode_size'):
        LoadPersonImage(decode_size=(0, 64))


def test_draft_decoding_names_a_corrupt_jpeg(tmp_path, write_image):
    write_image(str(tmp_path / 'p.jpg'), 64, 32, seed=5)
    bad = tmp_path / 'cut.jpg'
    bad.write_bytes((tmp_path / 'p.jpg').read_bytes()[:200])
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        LoadPersonImage(decode_size=(32, 16))(dict(img_path=str(bad)))
