import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmpretrain.registry import TRANSFORMS
from saip_mm.datasets.transforms import (IMAGENET_MEAN, IMAGENET_STD, PersonGlobalViews,
                                         PersonLocalViews, RegionView)

PERSON = np.random.RandomState(0).randint(0, 256, (96, 44, 3), dtype=np.uint8)
OFF = dict(flip_prob=0.0, jitter_prob=0.0, gray_prob=0.0)


def normalised(value: float) -> torch.Tensor:
    return (value - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)


def test_global_views_shapes_boxes_and_defaults():
    views = TRANSFORMS.build(dict(type='PersonGlobalViews'))
    assert isinstance(views, PersonGlobalViews)
    np.random.seed(0)
    out = views(dict(img=PERSON))
    for key in ('g1', 'g2'):
        assert out[key].shape == (3, 256, 128) and out[key].dtype == torch.float32
        x1, y1, x2, y2 = out[f'{key}_crop_box']
        assert 0.4 <= (x2 - x1) / (y2 - y1) <= 0.6
        assert 0 <= x1 < x2 <= 44 and 0 <= y1 < y2 <= 96
    assert not torch.equal(out['g1'], out['g2'])
    # The method's per-view settings: g1 always blurred, g2 rarely, only g2 solarised.
    g1, g2 = views.augmentations
    assert (g1.blur_prob, g2.blur_prob, g1.solarize_prob, g2.solarize_prob) == (1.0, 0.1, 0.0, 0.2)
    assert g1.scale == (0.8, 1.0) and g1.ratio == (0.4, 0.6) and g1.interpolation == 'bicubic'
    assert g1.color_jitter == (0.4, 0.4, 0.2, 0.1) and (g1.jitter_prob, g1.gray_prob) == (0.8, 0.2)


def test_global_views_apply_per_view_photometric_settings():
    flat = np.full((64, 32, 3), 200, np.uint8)
    views = PersonGlobalViews(size=(32, 16), blur_prob=(0.0, 0.0), solarize_prob=(0.0, 1.0),
                              **OFF)
    out = views(dict(img=flat))
    assert torch.allclose(out['g1'], normalised(200.).view(3, 1, 1).expand(3, 32, 16), atol=1e-4)
    assert torch.allclose(out['g2'], normalised(55.).view(3, 1, 1).expand(3, 32, 16), atol=1e-4)
    with pytest.raises(ValueError, match='blur_prob'):
        PersonGlobalViews(blur_prob=(1.0,))


def test_local_views_shapes_and_crop_boxes():
    views = TRANSFORMS.build(dict(type='PersonLocalViews'))
    np.random.seed(0)
    out = views(dict(img=PERSON))
    assert out['locals'].shape == (7, 3, 128, 64) and out['locals'].dtype == torch.float32
    boxes = out['locals_crop_boxes']
    assert len(boxes) == 7
    for x1, y1, x2, y2 in boxes:
        assert 0.4 <= (x2 - x1) / (y2 - y1) <= 0.6
        assert (x2 - x1) * (y2 - y1) <= 0.8 * 96 * 44 + (x2 - x1) + (y2 - y1)
    assert len(set(boxes)) > 1  # independent crops
    assert views.augmentation.blur_prob == 0.5 and views.augmentation.scale == (0.05, 0.8)
    out = PersonLocalViews(num_views=3, size=(48, 24))(dict(img=PERSON))
    assert out['locals'].shape == (3, 3, 48, 24)


def test_views_need_the_image():
    with pytest.raises(KeyError, match='img'):
        PersonLocalViews()(dict(img_path='x.jpg'))


def test_region_view_is_g1_resized_to_half_scale():
    # A smooth g1 (a ramp plus a slow wave), where antialiased bicubic at half scale is close to
    # 2x2 averaging.
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 128), indexing='ij')
    g1 = torch.stack([ys, xs, torch.sin(3 * ys) * torch.cos(2 * xs)])
    out = TRANSFORMS.build(dict(type='RegionView', interpolation='bicubic'))(dict(g1=g1))
    region = out['region']
    assert region.shape == (3, 128, 64)
    assert torch.equal(region, F.interpolate(g1[None], size=(128, 64), mode='bicubic',
                                             align_corners=False, antialias=True)[0])
    assert (region - F.avg_pool2d(g1[None], 2)[0]).abs().max() < 0.02
    # The default is the reference's nearest-neighbour resize: every other pixel of g1.
    nearest = RegionView()(dict(g1=g1))['region']
    assert torch.equal(nearest, g1[:, ::2, ::2])
    # It resizes whatever views g1 holds: a constant view stays that constant.
    const = RegionView()(dict(g1=torch.full((3, 256, 128), 0.25)))['region']
    assert torch.allclose(const, torch.full((3, 128, 64), 0.25), atol=1e-5)
    with pytest.raises(KeyError, match='g1'):
        RegionView()(dict(g2=g1))
