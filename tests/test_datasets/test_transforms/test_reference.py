import numpy as np
import pytest
import torch

from mmpretrain.registry import TRANSFORMS
from saip_mm.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, MultiPersonReference

OFF = dict(flip_prob=0.0, jitter_prob=0.0, gray_prob=0.0, blur_prob=0.0, solarize_prob=0.0)


def person_views(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return dict(locals=torch.randn(7, 3, 128, 64, generator=gen),
                region=torch.randn(3, 128, 64, generator=gen))


def test_reference_shapes_masks_and_boxes():
    ref = TRANSFORMS.build(dict(type='MultiPersonReference'))
    bg = np.random.RandomState(0).randint(0, 256, (50, 70, 3), dtype=np.uint8)
    np.random.seed(0)
    out = ref(dict(bg_img=bg, **person_views()))
    assert out['reference'].shape == (3, 224, 224) and out['reference'].dtype == torch.float32
    for name in ('roi', 'instance'):
        mask, (x1, y1, x2, y2) = out[f'{name}_mask'], out[f'{name}_box']
        assert mask.shape == (224, 224) and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        # 1 exactly inside the pasted 128x64 box, 0 everywhere else.
        assert (x2 - x1, y2 - y1) == (64, 128)
        assert mask[y1:y2, x1:x2].eq(1).all() and mask.sum() == 128 * 64
    assert out['roi_box'][2] <= out['instance_box'][0]  # side by side, instance on the right
    # The background's RandomResizedCrop keeps its ratio in [3/4, 4/3].
    x1, y1, x2, y2 = out['reference_crop_box']
    assert 3 / 4 <= (x2 - x1) / (y2 - y1) <= 4 / 3
    # The background is augmented like g2.
    aug = ref.augmentation
    assert (aug.blur_prob, aug.solarize_prob, aug.scale) == (0.1, 0.2, (0.2, 1.0))


def test_box_placement_never_overlaps_and_covers_the_image():
    ref = MultiPersonReference()
    np.random.seed(0)
    boxes = [ref.place_boxes((128, 64), (128, 64)) for _ in range(2000)]
    roi_x1 = [roi[0] for roi, _ in boxes]
    ins_x2 = [ins[2] for _, ins in boxes]
    gaps = [ins[0] - roi[2] for roi, ins in boxes]
    for (rx1, ry1, rx2, ry2), (ix1, iy1, ix2, iy2) in boxes:
        assert 0 <= rx1 and rx2 <= ix1 and ix2 <= 224  # no horizontal overlap, in order
        assert 0 <= ry1 and ry2 <= 224 and 0 <= iy1 and iy2 <= 224
    # The extremes are reachable: ROI left edge 0..96, instance right edge up to 224, and the
    # two patches touching (gap 0) up to the widest gap.
    assert min(roi_x1) == 0 and max(roi_x1) == 96 and max(ins_x2) == 224
    assert min(gaps) == 0 and max(gaps) > 80


def test_blend_is_seventy_percent_person_on_the_normalised_background():
    flat_bg = np.full((40, 60, 3), 90, np.uint8)  # any crop of it is the same colour
    ref = MultiPersonReference(**OFF)
    views = person_views(1)
    np.random.seed(1)
    out = ref(dict(bg_img=flat_bg, **views))
    bg = ((90 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).view(3, 1, 1)
    reference = out['reference']
    rx1, ry1, rx2, ry2 = out['roi_box']
    ix1, iy1, ix2, iy2 = out['instance_box']
    assert torch.allclose(reference[:, ry1:ry2, rx1:rx2], 0.7 * views['locals'][-1] + 0.3 * bg,
                          atol=1e-5)
    assert torch.allclose(reference[:, iy1:iy2, ix1:ix2], 0.7 * views['region'] + 0.3 * bg,
                          atol=1e-5)
    outside = (out['roi_mask'] + out['instance_mask']) == 0
    assert torch.allclose(reference[:, outside], bg.view(3, 1).expand(3, int(outside.sum())),
                          atol=1e-5)


def test_background_key_and_errors():
    flat = np.full((40, 60, 3), 10, np.uint8)
    out = MultiPersonReference(bg_key='img')(dict(img=flat, **person_views()))
    assert out['reference'].shape == (3, 224, 224)
    with pytest.raises(KeyError, match='bg_img'):
        MultiPersonReference()(dict(img=flat, **person_views()))
    with pytest.raises(ValueError, match='side by side'):
        MultiPersonReference(size=(128, 100))(dict(bg_img=flat, **person_views()))
    with pytest.raises(ValueError, match='person_weight'):
        MultiPersonReference(person_weight=1.5)
