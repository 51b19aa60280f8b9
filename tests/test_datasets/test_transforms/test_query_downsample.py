"""QueryDownsample and the cross-resolution settings: sizes, the gallery untouched, the mixed
draw reproducible."""
import numpy as np
import pytest

from mmpretrain.registry import TRANSFORMS
from saip_mm.datasets.transforms.query_downsample import (QueryDownsample, downsample_image,
                                                          downsampled_size, mixed_query_factors,
                                                          parse_query_settings, query_factors,
                                                          setting_name)


@pytest.mark.parametrize('size, factor, expected', [
    ((128, 64), 1, (128, 64)),
    ((128, 64), 2, (64, 32)),
    ((128, 64), 3, (43, 21)),  # 42.67 -> 43, 21.33 -> 21
    ((128, 64), 4, (32, 16)),
    ((108, 54), 4, (27, 14)),  # the demo crops' median size; 13.5 rounds up
    ((64, 32), 3, (21, 11)),  # 21.33 -> 21, 10.67 -> 11
    ((3, 1), 4, (1, 1)),  # never below one pixel
])
def test_downsampled_size_rounds_half_up(size, factor, expected):
    assert downsampled_size(*size, factor) == expected
    img = np.zeros(size + (3, ), np.uint8)
    assert downsample_image(img, factor).shape == expected + (3, )


def test_area_interpolation_averages_blocks():
    """At an integer ratio, INTER_AREA is the mean of each r x r block."""
    img = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    out = downsample_image(img, 2)
    assert out.tolist() == [[3.5, 5.5, 7.5], [15.5, 17.5, 19.5]]


def _sample(split, img, **extra):
    return dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], split=split,
                img_path=f'{split}.jpg', **extra)


def test_transform_shrinks_queries_only():
    img = np.random.RandomState(0).randint(0, 256, (128, 64, 3)).astype(np.uint8)
    transform = TRANSFORMS.build(dict(type='QueryDownsample'))
    query = transform(_sample('query', img.copy(), downsample_factor=3))
    assert query['img'].shape == (43, 21, 3) and query['img_shape'] == (43, 21)
    assert query['ori_shape'] == (128, 64)  # the recorded size stays known
    assert np.array_equal(query['img'], downsample_image(img, 3))
    # the gallery as recorded, whatever the factor says
    gallery = transform(_sample('gallery', img.copy(), downsample_factor=3))
    assert np.array_equal(gallery['img'], img) and gallery['img_shape'] == (128, 64)
    fixed = QueryDownsample(factor=4)
    assert fixed(_sample('query', img.copy()))['img'].shape == (32, 16, 3)
    assert np.array_equal(fixed(_sample('gallery', img.copy()))['img'], img)


def test_transform_is_a_no_op_at_r1_and_without_a_factor():
    img = np.random.RandomState(1).randint(0, 256, (100, 50, 3)).astype(np.uint8)
    for extra in (dict(), dict(downsample_factor=1)):
        out = QueryDownsample()(_sample('query', img, **extra))
        assert out['img'] is img and out['downsample_factor'] == 1


def test_transform_errors_name_the_cause():
    img = np.zeros((8, 4, 3), np.uint8)
    with pytest.raises(KeyError, match='split'):
        QueryDownsample()(dict(img=img, img_path='a.jpg'))
    with pytest.raises(ValueError, match='factor 2 for q.jpg'):
        QueryDownsample(factor=3)(dict(img=img, split='query', img_path='q.jpg',
                                       downsample_factor=2))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match='integer >= 1'):
            QueryDownsample(factor=bad)


def test_settings_are_parsed_with_r1_first():
    assert parse_query_settings(['2', 'mixed', '4', '2']) == [1, 2, 'mixed', 4]
    assert parse_query_settings((1, 2, 3, 4, 'mixed')) == [1, 2, 3, 4, 'mixed']
    assert [setting_name(s) for s in (1, 3, 'mixed')] == ['r1', 'r3', 'mixed']
    with pytest.raises(ValueError, match="'mixed'"):
        parse_query_settings(['x2'])
    with pytest.raises(ValueError, match='integer >= 1'):
        parse_query_settings([0])


def test_mixed_factors_are_seeded():
    a = mixed_query_factors(200, seed=0)
    assert a == mixed_query_factors(200, seed=0)  # same seed, same factors
    assert a != mixed_query_factors(200, seed=1)  # another seed, other factors
    assert set(a) == {2, 3, 4}
    assert a[:8] == [4, 3, 3, 2, 2, 2, 2, 2]  # numpy.random.default_rng(0), pinned
    assert mixed_query_factors(5, factors=(6, ), seed=3) == [6] * 5
    assert query_factors(3, 4) == [3, 3, 3, 3]
    assert query_factors('mixed', 200, seed=0) == a
