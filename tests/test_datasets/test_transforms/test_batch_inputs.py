import numpy as np
import pytest
import torch

from mmpretrain.registry import TRANSFORMS


def test_images_keep_their_pixels_in_the_canvas_unless_too_large():
    img = np.random.RandomState(0).randint(0, 256, (300, 140, 3), dtype=np.uint8)
    bg = np.random.RandomState(1).randint(0, 256, (90, 160, 3), dtype=np.uint8)
    resize = TRANSFORMS.build(dict(type='ResizeForBatchViews', size=(64, 32), bg_size=(100, 200)))
    out = resize(dict(img=img, bg_img=bg, ori_shape=(600, 280), img_path='p.jpg',
                      bg_img_path='s.jpg'))
    assert out['img'].shape == (64, 32, 3) and out['bg_img'].shape == (100, 200, 3)
    # ori_shape (the file's size before draft decoding) wins over the decoded array's shape.
    assert out['img_hw'] == (600, 280) and out['bg_img_hw'] == (90, 160)
    # Too large: shrunk to fit, aspect kept (300x140 -> 64x30), areas averaged; the rest black.
    assert out['img_work_hw'] == (64, 30)
    assert abs(out['img'][:, :30].mean() - img.mean()) < 3 and (out['img'][:, 30:] == 0).all()
    # Fits: its own pixels, top-left, untouched.
    assert out['bg_img_work_hw'] == (90, 160)
    assert np.array_equal(out['bg_img'][:90, :160], bg) and (out['bg_img'][90:] == 0).all()
    packed = TRANSFORMS.build(dict(type='PackSAIPImages'))(out)
    inputs = packed['inputs']
    # Channels last as decoded: no transpose in the workers.
    assert inputs['img'].dtype == torch.uint8 and inputs['img'].shape == (64, 32, 3)
    assert torch.equal(inputs['img'], torch.from_numpy(out['img']))
    assert inputs['img_hw'].tolist() == [600, 280] and inputs['bg_img_hw'].tolist() == [90, 160]
    assert inputs['img_work_hw'].tolist() == [64, 30]
    assert inputs['bg_img_work_hw'].tolist() == [90, 160]
    assert inputs['bg_img'].shape == (100, 200, 3)
    assert packed['data_samples'].img_path == 'p.jpg'
    assert packed['data_samples'].bg_img_path == 's.jpg'


def test_without_background_the_person_is_its_own_background():
    img = np.full((64, 32, 3), 7, np.uint8)
    out = TRANSFORMS.build(dict(type='ResizeForBatchViews', size=(64, 32)))(dict(img=img))
    assert out['img'] is img  # already at the working size: no copy
    inputs = TRANSFORMS.build(dict(type='PackSAIPImages'))(out)['inputs']
    assert torch.equal(inputs['bg_img'], inputs['img'])
    assert torch.equal(inputs['bg_img_hw'], inputs['img_hw'])
    assert torch.equal(inputs['bg_img_work_hw'], inputs['img_work_hw'])


def test_errors_name_the_field():
    with pytest.raises(ValueError, match='bg_size'):
        TRANSFORMS.build(dict(type='ResizeForBatchViews', bg_size=(0, 10)))
    with pytest.raises(KeyError, match='`img`'):
        TRANSFORMS.build(dict(type='ResizeForBatchViews'))(dict())
    with pytest.raises(KeyError, match='`img_hw`'):
        TRANSFORMS.build(dict(type='PackSAIPImages'))(dict(img=np.zeros((4, 2, 3), np.uint8)))
