"""The batched view ops against the per-image rules they reproduce."""
import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from saip_mm.datasets.transforms import ViewAugmentation, sample_crop_box
from saip_mm.models.utils.batch_views import (BatchViewAugmentation, adjust_brightness,
                                              adjust_contrast, adjust_hue, adjust_saturation,
                                              blend_patches, box_masks, gaussian_blur,
                                              gaussian_kernels, place_patches, resample_crops,
                                              resample_weights, sample_crop_boxes, solarize,
                                              to_working_boxes)


def boxes_stats(boxes, height, width):
    w = (boxes[:, 2] - boxes[:, 0]).astype(float)
    h = (boxes[:, 3] - boxes[:, 1]).astype(float)
    return w / h, w * h / (height * width), boxes


@pytest.mark.parametrize('height,width,scale,ratio', [
    (300, 150, (0.05, 0.8), (0.4, 0.6)),
    (256, 128, (0.8, 1.0), (0.4, 0.6)),
    (300, 500, (0.2, 1.0), (3 / 4, 4 / 3)),
])
def test_crop_boxes_have_the_per_image_distribution(height, width, scale, ratio):
    num = 3000
    torch.manual_seed(0)
    batched = sample_crop_boxes(torch.full((num, ), height), torch.full((num, ), width), scale,
                                ratio).numpy()
    np.random.seed(0)
    per_image = np.array([sample_crop_box(height, width, scale, ratio) for _ in range(num)])
    b_ratio, b_area, b = boxes_stats(batched, height, width)
    p_ratio, p_area, _ = boxes_stats(per_image, height, width)
    # Same rules: every box inside the image and the ratio range, area up to rounding.
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
    assert (b[:, 2] <= width).all() and (b[:, 3] <= height).all()
    assert (b_ratio >= ratio[0]).all() and (b_ratio <= ratio[1]).all()
    assert b_area.max() <= scale[1] + 0.02
    # Same distribution: means and spreads of area and ratio agree to sampling error.
    assert abs(b_area.mean() - p_area.mean()) < 0.015
    assert abs(b_ratio.mean() - p_ratio.mean()) < 0.01
    assert abs(b_area.std() - p_area.std()) < 0.015
    # Positions uniform over the free room: the mean box centre is the image centre.
    assert abs((b[:, 0] + b[:, 2]).mean() / 2 - width / 2) < 0.02 * width


def test_crop_box_fallbacks_match_the_per_image_ones():
    torch.manual_seed(0)
    square = sample_crop_boxes(torch.tensor([100]), torch.tensor([100]), (0.99, 1.0),
                               (0.4, 0.6))
    assert square.tolist() == [[20, 0, 80, 100]]  # as sample_crop_box (test_augmentation)
    thin = sample_crop_boxes(torch.tensor([100]), torch.tensor([20]), (0.99, 1.0), (0.4, 0.6))
    assert thin.tolist() == [[0, 25, 20, 75]]


def test_working_boxes_scale_each_axis():
    boxes = torch.tensor([[10, 20, 60, 220], [0, 0, 1, 1], [5, 6, 30, 40]])
    src_hw = torch.tensor([[400, 100], [512, 256], [40, 30]])
    work_hw = torch.tensor([[256, 128], [256, 128], [40, 30]])
    # (x: 128/100, y: 256/400), (x: 0.5, y: 0.5): a box stays at least one pixel; an image
    # kept at its size keeps its boxes.
    assert to_working_boxes(boxes, src_hw, work_hw).tolist() == [[13, 13, 77, 141],
                                                                 [0, 0, 1, 1], [5, 6, 30, 40]]


def test_resample_weights_are_pil_taps():
    eye = resample_weights(torch.tensor([0.0]), torch.tensor([8.0]), 8, 8)[0]
    assert torch.allclose(eye, torch.eye(8), atol=1e-7)
    # Halving: output pixel 0 is centred at 1.0, kernel stretched x2, taps inside [0, 8) only.
    half = resample_weights(torch.tensor([0.0]), torch.tensor([8.0]), 8, 4)[0]
    assert torch.allclose(half.sum(1), torch.ones(4))
    x = (torch.arange(8) + 0.5 - 1.0) / 2  # distance in stretched units
    a = -0.5
    cubic = torch.where(x.abs() < 1, ((a + 2) * x.abs() - (a + 3)) * x**2 + 1,
                        torch.where(x.abs() < 2, (((x.abs() - 5) * x.abs() + 8) * x.abs() - 4)
                                    * a, torch.zeros(8)))
    assert torch.allclose(half[0], (cubic / cubic.sum()).float(), atol=1e-6)


@pytest.mark.parametrize('mode', ['matmul', 'loop'])
def test_resample_is_pil_crop_then_bicubic_resize_flipped_and_ordered(mode):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 60, 40), dtype=torch.uint8, generator=gen)
    # Up- and downsampling, a crop touching the border, a full-image crop.
    boxes = torch.tensor([[3, 5, 30, 58], [0, 0, 40, 60], [10, 10, 20, 30], [1, 2, 39, 50]])
    out = resample_crops(images, boxes, 2, (32, 16), mode)
    assert out.shape == (4, 3, 32, 16) and out.dtype == torch.float32
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        pil = Image.fromarray(images[i // 2].permute(1, 2, 0).numpy()).crop((x1, y1, x2, y2))
        ref = np.asarray(pil.resize((16, 32), Image.BICUBIC)).transpose(2, 0, 1)
        # Within one level of 255 of PIL (rounding of the intermediate pass).
        assert np.abs(out[i].numpy() * 255 - ref).max() <= 1.0 + 1e-3
    # Flips, from channels-last canvases (the packed batch's layout).
    flip = torch.tensor([True, False, False, True])
    mirrored = resample_crops(images.contiguous(memory_format=torch.channels_last), boxes, 2,
                              (32, 16), mode, flip=flip)
    expected = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    assert torch.allclose(mirrored, expected, atol=1e-6)
    buffer = torch.full_like(out, 7.0)  # written into a given buffer
    assert resample_crops(images, boxes, 2, (32, 16), mode, out=buffer) is buffer
    assert torch.equal(buffer, out)


def test_cpu_blur_is_kornias_gaussian_blur():
    from kornia.filters import gaussian_blur2d
    x = torch.rand(3, 3, 20, 12, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 1.0, 2.0])
    kornia = gaussian_blur2d(x, (13, 13), sigma[:, None].expand(-1, 2), border_type='replicate')
    assert torch.allclose(gaussian_blur(x, sigma, 13), kornia, atol=1e-6)
    weights = gaussian_kernels(torch.tensor([1.0]), 5)[0]
    expected = torch.exp(-torch.tensor([4.0, 1.0, 0.0, 1.0, 4.0]) / 2)
    assert torch.allclose(weights, expected / expected.sum())
    # Edges replicated: a constant image stays constant up to the border.
    assert torch.allclose(gaussian_blur(torch.full((1, 3, 9, 7), 0.4), sigma[2:], 13),
                          torch.full((1, 3, 9, 7), 0.4))


def test_solarize_is_the_where_form_bit_for_bit():
    threshold = 128 / 255
    x = torch.cat([torch.rand(1000, generator=torch.Generator().manual_seed(0)),
                   torch.tensor([0.0, 1.0, threshold, 0.5, 0.502])])
    assert torch.equal(solarize(x, threshold), torch.where(x >= threshold, 1 - x, x))


def test_jitter_ops_follow_torchvision_formulas():
    x = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(2, 3, 2, 2).clone()
    gray = 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.9
    bright = adjust_brightness(x, torch.tensor([1.5, 0.5]))
    assert torch.allclose(bright[0, :, 0, 0], torch.tensor([0.3, 0.75, 1.0]))  # clamped at 1
    assert torch.allclose(bright[1, :, 0, 0], torch.tensor([0.1, 0.25, 0.45]))
    sat = adjust_saturation(x, torch.tensor([0.0, 2.0]))
    assert torch.allclose(sat[0, :, 0, 0], torch.full((3, ), gray))
    assert torch.allclose(sat[1, :, 0, 0], (2 * torch.tensor([0.2, 0.5, 0.9]) - gray).clamp(0, 1))
    # Constant image: its mean grey is the pixel's grey, so contrast acts like saturation.
    assert torch.allclose(adjust_contrast(x, torch.tensor([0.5, 0.5]))[0, :, 0, 0],
                          0.5 * torch.tensor([0.2, 0.5, 0.9]) + 0.5 * gray)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(adjust_hue(red, torch.tensor([1 / 3]))[0, :, 0, 0],
                          torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)
    assert torch.allclose(adjust_hue(x, torch.tensor([0.0, 1.0])), x, atol=1e-6)


def test_jitter_ops_match_torchvision_on_images():
    import torchvision.transforms.functional as TF
    x = torch.rand(3, 3, 16, 8, generator=torch.Generator().manual_seed(2))
    factor = torch.tensor([0.6, 1.0, 1.4])
    for ours, theirs in ((adjust_brightness, TF.adjust_brightness),
                         (adjust_contrast, TF.adjust_contrast),
                         (adjust_saturation, TF.adjust_saturation)):
        expected = torch.stack([theirs(x[i], factor[i].item()) for i in range(3)])
        # torchvision's luma uses 0.2989 for red where PIL (and we) use 0.299.
        assert torch.allclose(ours(x, factor), expected, atol=1e-4), ours.__name__
    shift = torch.tensor([0.1, -0.3, 0.5])
    expected = torch.stack([TF.adjust_hue(x[i], shift[i].item()) for i in range(3)])
    assert torch.allclose(adjust_hue(x, shift), expected, atol=1e-5)


def test_hue_rotation_is_colorsys_hsv():
    x = torch.rand(3, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.1, -0.07, 0.5])
    out = adjust_hue(x, shift)
    for n in range(3):
        for i in range(5):
            for j in range(4):
                h, s, v = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
                expected = colorsys.hsv_to_rgb((h + shift[n].item()) % 1.0, s, v)
                assert torch.allclose(out[n, :, i, j], torch.tensor(expected), atol=1e-5)


def test_photometric_steps_apply_exactly_to_the_drawn_views():
    aug = BatchViewAugmentation(ViewAugmentation((8, 4), (1, 1), (0.5, 0.5), jitter_prob=0.0))
    x = torch.rand(4, 3, 8, 4)
    params = dict(flip=torch.tensor([True, False, False, False]),
                  jitter=torch.zeros(4, dtype=torch.bool), factors=torch.ones(4, 4),
                  order=torch.arange(4).repeat(4, 1),
                  gray=torch.tensor([False, True, False, False]),
                  blur=torch.tensor([False, False, True, False]), sigma=torch.full((4, ), 1.0),
                  solarize=torch.tensor([False, False, False, True]))
    out = aug.photometric(x.clone(), params)
    assert torch.equal(out[0], x[0].flip(-1))
    luma = 0.299 * x[1, 0] + 0.587 * x[1, 1] + 0.114 * x[1, 2]
    assert torch.allclose(out[1], luma.expand(3, -1, -1), atol=1e-6)
    assert out[2].var() < x[2].var()  # blurred
    threshold = 128 / 255
    assert torch.equal(out[3], torch.where(x[3] >= threshold, 1 - x[3], x[3]))


def test_jitter_runs_in_each_views_own_order():
    aug = BatchViewAugmentation(ViewAugmentation((2, 2), (1, 1), (1, 1), jitter_prob=1.0,
                                                 color_jitter=(0.5, 0.5, 0.0, 0.0)))
    x = torch.tensor([[0.2, 0.9], [0.5, 0.6]]).expand(2, 3, 2, 2).clone()
    x[:, 0] *= 0.5
    factors = torch.tensor([[1.5, 0.5, 1.0, 0.0]] * 2)
    order = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])  # brightness first / contrast first
    params = dict(flip=torch.zeros(2, dtype=torch.bool), jitter=torch.ones(2, dtype=torch.bool),
                  factors=factors, order=order, gray=torch.zeros(2, dtype=torch.bool),
                  blur=torch.zeros(2, dtype=torch.bool), sigma=torch.ones(2),
                  solarize=torch.zeros(2, dtype=torch.bool))
    out = aug.photometric(x.clone(), params)
    f = torch.tensor([1.5, 0.5])
    first = adjust_contrast(adjust_brightness(x[:1], f[:1]), f[1:])
    second = adjust_brightness(adjust_contrast(x[1:], f[1:]), f[:1])
    assert torch.allclose(out[:1], first) and torch.allclose(out[1:], second)
    assert not torch.allclose(first, second)  # the order matters (clamping at 1)


def test_jitter_groups_that_are_not_runs_are_gathered():
    aug = BatchViewAugmentation(ViewAugmentation((4, 3), (1, 1), (1, 1), jitter_prob=1.0))
    x = torch.rand(4, 3, 4, 3, generator=torch.Generator().manual_seed(0))
    factors = torch.tensor([[1.4, 0.7, 1.3, 0.1], [0.8, 1.2, 0.6, -0.2],
                            [0.9, 1.5, 1.1, 0.05], [1.2, 0.9, 0.5, -0.1]])
    # Rows 0 and 2 share an order (a gathered group), row 1 has its own, row 3 is unjittered.
    order = torch.tensor([[3, 0, 1, 2], [0, 1, 2, 3], [3, 0, 1, 2], [1, 2, 3, 0]])
    jitter = torch.tensor([True, True, True, False])
    out = aug.color_jitter(x.clone(), dict(jitter=jitter, order=order, factors=factors))
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    for i in range(3):
        expected = x[i:i + 1]
        for op_id in order[i].tolist():
            expected = ops[op_id](expected, factors[i:i + 1, op_id])
        assert torch.allclose(out[i:i + 1], expected, atol=1e-6), i
    assert torch.equal(out[3], x[3])


@pytest.mark.parametrize('size,seed', [((256, 128), 0), ((128, 64), 1), ((224, 224), 2)])
def test_opencv_photometric_backend_equals_the_tensor_ops(size, seed):
    aug = BatchViewAugmentation(ViewAugmentation(size, (0.5, 1), (0.5, 2), jitter_prob=0.8,
                                                 gray_prob=0.2, blur_prob=0.5,
                                                 solarize_prob=0.3))
    gen = torch.Generator().manual_seed(seed)
    # Smooth images with grey and saturated pixels: the hue and blur paths all matter.
    x = F.avg_pool2d(torch.rand(40, 3, *size, generator=gen), 5, 1, 2)
    x[:4, :, :8] = 0.5
    x[4:8, 0] = 1.0
    torch.manual_seed(seed)
    params = aug.sample_params(torch.full((40, ), 300), torch.full((40, ), 150))
    assert params['jitter'].any() and params['blur'].any() and params['solarize'].any()
    tensor_ops = aug.photometric(x.clone(), params, flip=False)
    opencv = aug.photometric(x.clone(), params, flip=False, backend='opencv')
    assert (opencv - tensor_ops).abs().max() < 1e-5
    with pytest.raises(ValueError, match='backend'):
        aug.photometric(x, params, backend='kornia')


def test_patches_sit_side_by_side_and_masks_cover_them_exactly():
    torch.manual_seed(0)
    roi, ins = place_patches(500, (224, 224), (128, 64), (128, 64))
    assert (roi[:, 2] <= ins[:, 0]).all()  # the instance is right of the ROI
    assert (roi[:, :2] >= 0).all() and (ins[:, 2] <= 224).all() and (ins[:, 3] <= 224).all()
    assert ((roi[:, 2] - roi[:, 0]) == 64).all() and ((ins[:, 3] - ins[:, 1]) == 128).all()
    # Every ROI position that leaves room on its right is drawn: 0 .. 224 - 128.
    assert roi[:, 0].min() == 0 and roi[:, 0].max() >= 90
    masks = box_masks(roi[:3], (224, 224))
    for mask, (x1, y1, x2, y2) in zip(masks, roi[:3].tolist()):
        expected = torch.zeros(224, 224)
        expected[y1:y2, x1:x2] = 1
        assert torch.equal(mask, expected)
    # Filled in place into an output buffer (whatever it held before).
    buffer = torch.full((3, 224, 224), 7.0)
    assert box_masks(roi[:3], (224, 224), out=buffer) is buffer
    assert torch.equal(buffer, masks)
    with pytest.raises(ValueError, match='do not fit side by side'):
        place_patches(1, (224, 100), (128, 64), (128, 64))


@pytest.mark.parametrize('vectorized', [True, False])
def test_blend_is_seventy_percent_patch_at_the_box(vectorized):
    reference = torch.full((2, 3, 20, 20), 2.0)
    patches = torch.full((2, 3, 4, 2), -1.0)
    boxes = torch.tensor([[0, 0, 2, 4], [15, 10, 17, 14]])
    blend_patches(reference, patches, boxes, 0.7, vectorized)
    assert reference[1, 0, 10, 15].item() == pytest.approx(0.7 * -1.0 + 0.3 * 2.0)
    assert reference[1, 2, 13, 16].item() == pytest.approx(-0.1)
    assert reference[1, 0, 10, 17].item() == 2.0 and reference[1, 0, 9, 15].item() == 2.0
    assert reference[0, 1, 3, 1].item() == pytest.approx(-0.1)
    assert (reference != 2.0).sum() == 2 * 3 * 4 * 2
