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
