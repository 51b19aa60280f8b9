import numpy as np
import pytest
import torch
from PIL import Image

from saip_mm.datasets.transforms import (IMAGENET_MEAN, IMAGENET_STD, ViewAugmentation,
                                         person_crop_ratio, sample_crop_box)
from saip_mm.datasets.transforms.augmentation import adjust_hue, gaussian_blur, normalize_image

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def denormalize(t: torch.Tensor) -> torch.Tensor:
    return t * STD + MEAN


def no_photometric(**kwargs) -> dict:
    return dict(flip_prob=0.0, jitter_prob=0.0, gray_prob=0.0, blur_prob=0.0, solarize_prob=0.0,
                **kwargs)


@pytest.mark.parametrize('height,width,scale,ratio', [
    (256, 128, (0.05, 0.8), (0.4, 0.6)),
    (160, 64, (0.8, 1.0), (0.4, 0.6)),
    (384, 128, (0.8, 1.0), (0.25, 0.4)),
    (90, 200, (0.2, 1.0), (3 / 4, 4 / 3)),
])
def test_crop_boxes_respect_ratio_scale_and_bounds(height, width, scale, ratio):
    np.random.seed(0)
    for _ in range(300):
        x1, y1, x2, y2 = sample_crop_box(height, width, scale, ratio)
        w, h = x2 - x1, y2 - y1
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert ratio[0] <= w / h <= ratio[1]
        # At most the largest scale, up to the rounding of w and h (here the fallback box is
        # never larger either).
        assert w * h <= scale[1] * height * width + (w + h)


def test_crop_fallback_is_the_largest_centred_in_ratio_box():
    # A near-whole-image area never fits a 0.4-0.6 box in a square: the fallback clamps the
    # width to 0.6 x the height, centred.
    np.random.seed(0)
    assert sample_crop_box(100, 100, (0.99, 1.0), (0.4, 0.6)) == (20, 0, 80, 100)


def test_crop_fallback_for_a_too_thin_image():
    np.random.seed(0)
    x1, y1, x2, y2 = sample_crop_box(100, 20, (0.99, 1.0), (0.4, 0.6))
    # Width 20 at ratio >= 0.4 allows a height of 50 at most, centred.
    assert (x1, y1, x2, y2) == (0, 25, 20, 75)


def test_person_crop_ratio_follows_the_method():
    assert person_crop_ratio((256, 128)) == (0.4, 0.6)
    assert person_crop_ratio((256, 192)) == (0.4, 0.6)
    assert person_crop_ratio((384, 128)) == (0.25, 0.4)
    assert person_crop_ratio((224, 224)) == (3 / 4, 4 / 3)
    with pytest.raises(ValueError, match='300x100'):
        person_crop_ratio((300, 100))


def test_view_without_photometric_is_the_normalised_bicubic_crop():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (60, 30, 3), dtype=np.uint8)
    aug = ViewAugmentation((32, 16), (0.5, 1.0), (0.4, 0.6), **no_photometric())
    np.random.seed(1)
    view, box = aug(img)
    expected = Image.fromarray(img).crop(box).resize((16, 32), Image.Resampling.BICUBIC)
    assert view.shape == (3, 32, 16) and view.dtype == torch.float32
    assert torch.allclose(denormalize(view), torch.from_numpy(
        np.asarray(expected, np.float32)).permute(2, 0, 1), atol=1e-3)
    # Same seed, same view: all randomness is NumPy's global generator.
    np.random.seed(1)
    again, box_again = aug(img)
    assert box_again == box and torch.equal(again, view)


def test_flip_gray_solarize_each_do_their_job():
    img = np.zeros((40, 20, 3), np.uint8)
    img[:, :10] = (200, 30, 60)  # left half coloured, right half black
    full = (0, 0, 20, 40)
    flipped, _ = ViewAugmentation((40, 20), (1, 1), (0.5, 0.5), interpolation='nearest',
                                  **dict(no_photometric(), flip_prob=1.0))(img, full)
    assert torch.allclose(denormalize(flipped)[:, :, 10:],
                          torch.tensor([200., 30., 60.]).view(3, 1, 1).expand(3, 40, 10),
                          atol=1e-3)
    gray, _ = ViewAugmentation((40, 20), (1, 1), (0.5, 0.5), interpolation='nearest',
                               **dict(no_photometric(), gray_prob=1.0))(img, full)
    gray = denormalize(gray)
    assert torch.allclose(gray[0], gray[1], atol=1e-3) and torch.allclose(gray[1], gray[2],
                                                                          atol=1e-3)
    solar, _ = ViewAugmentation((40, 20), (1, 1), (0.5, 0.5), interpolation='nearest',
                                **dict(no_photometric(), solarize_prob=1.0))(img, full)
    # Threshold 128: 200 -> 55, values below stay.
    assert torch.allclose(denormalize(solar)[:, 0, 0], torch.tensor([55., 30., 60.]), atol=1e-3)
    assert torch.allclose(denormalize(solar)[:, 0, 15], torch.zeros(3), atol=1e-3)


def test_blur_and_jitter_change_the_image_when_on():
    img = np.random.RandomState(0).randint(0, 256, (40, 20, 3), dtype=np.uint8)
    full = (0, 0, 20, 40)
    plain, _ = ViewAugmentation((40, 20), (1, 1), (0.5, 0.5), **no_photometric())(img, full)
    np.random.seed(0)
    blurred, _ = ViewAugmentation((40, 20), (1, 1), (0.5, 0.5), blur_sigma=(2.0, 2.0),
                                  **dict(no_photometric(), blur_prob=1.0))(img, full)
    # A radius-2 blur removes most of the variance of white noise.
    assert blurred.var() < 0.5 * plain.var()
    np.random.seed(0)
    jittered, _ = ViewAugmentation((40, 20), (1, 1), (0.5, 0.5),
                                   **dict(no_photometric(), jitter_prob=1.0))(img, full)
    assert not torch.allclose(jittered, plain, atol=0.05)


def test_adjust_hue_rotates_the_colour_wheel():
    red = Image.new('RGB', (2, 2), (255, 0, 0))
    green = np.asarray(adjust_hue(red, 1 / 3))[0, 0].astype(int)
    assert np.abs(green - [0, 255, 0]).max() <= 6
    assert np.array_equal(np.asarray(adjust_hue(red, 0.0)), np.asarray(red))


def test_normalize_image_uses_imagenet_statistics():
    t = normalize_image(np.full((2, 2, 3), 255, np.uint8), IMAGENET_MEAN, IMAGENET_STD)
    expected = (255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(t[:, 1, 1], expected)


@pytest.mark.parametrize('kwargs,field', [
    (dict(scale=(0.9, 0.1)), 'scale'),
    (dict(ratio=(0.0, 0.6)), 'ratio'),
    (dict(flip_prob=1.5), 'flip_prob'),
    (dict(interpolation='cubic'), 'interpolation'),
    (dict(size=(0, 64)), 'size'),
])
def test_bad_arguments_name_the_field(kwargs, field):
    args = dict(size=(128, 64), scale=(0.05, 0.8), ratio=(0.4, 0.6))
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        ViewAugmentation(**args)


def test_normalize_image_is_bit_identical_to_float_arithmetic():
    img = np.random.RandomState(0).randint(0, 256, (37, 19, 3), dtype=np.uint8)
    arr = (img.astype(np.float32) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
        IMAGENET_STD, np.float32)
    assert torch.equal(normalize_image(img, IMAGENET_MEAN, IMAGENET_STD),
                       torch.from_numpy(arr.transpose(2, 0, 1).copy()))
    assert torch.equal(normalize_image(Image.fromarray(img), IMAGENET_MEAN, IMAGENET_STD),
                       torch.from_numpy(arr.transpose(2, 0, 1).copy()))


def pil_hue(img: Image.Image, hue_factor: float) -> Image.Image:
    """The hue rotation through PIL's HSV conversion, written out plainly."""
    hue, sat, val = img.convert('HSV').split()
    shifted = (np.asarray(hue, dtype=np.int32) + int(round(hue_factor * 255))) % 256
    return Image.merge('HSV', (Image.fromarray(shifted.astype(np.uint8), 'L'), sat,
                               val)).convert('RGB')


@pytest.mark.parametrize('factor', [-0.1, -0.03, 0.05, 0.1])
def test_hue_backends_agree_and_pil_is_the_plain_rotation(factor):
    rng = np.random.RandomState(1)
    # A smooth colourful image, as photographs are (noise would exaggerate rounding).
    yy, xx = np.mgrid[0:64, 0:32]
    img = Image.fromarray(np.clip(np.stack([4 * yy, 8 * xx, 255 - 3 * yy], -1) +
                                  rng.normal(0, 3, (64, 32, 3)), 0, 255).astype(np.uint8))
    assert np.array_equal(np.asarray(adjust_hue(img, factor, 'pil')),
                          np.asarray(pil_hue(img, factor)))
    diff = np.abs(np.asarray(adjust_hue(img, factor, 'cv2')).astype(int) -
                  np.asarray(adjust_hue(img, factor, 'pil')).astype(int))
    # OpenCV rounds where PIL truncates: about one level on average, up to ten or so at the
    # rare pixels where the 256-level hue and saturation grids round apart (measured 1.3 and 9
    # at the 99th percentile).
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 10
    with pytest.raises(ValueError, match='backend'):
        adjust_hue(img, factor, 'skimage')


def test_pil_backend_reproduces_the_previous_views():
    img = np.random.RandomState(2).randint(0, 256, (40, 20, 3), dtype=np.uint8)
    args = dict(size=(40, 20), scale=(1, 1), ratio=(0.5, 0.5), jitter_prob=1.0)
    np.random.seed(0)
    pil_view, _ = ViewAugmentation(**args, backend='pil')(img)
    np.random.seed(0)
    cv2_view, _ = ViewAugmentation(**args)(img)
    assert pil_view.shape == cv2_view.shape
    # Same random draws: the views differ only by the hue rounding, a few levels.
    assert (pil_view - cv2_view).abs().mean() * 57.4 < 3
    with pytest.raises(ValueError, match='backend'):
        ViewAugmentation(**args, backend='skimage')


@pytest.mark.parametrize('sigma', [0.5, 1.2, 2.0])
def test_blur_backends_have_the_same_strength(sigma):
    from PIL import ImageFilter
    rng = np.random.RandomState(3)
    yy, xx = np.mgrid[0:64, 0:32]
    img = Image.fromarray(np.clip(np.stack([4 * yy, 8 * xx, 128 + 0 * yy], -1) +
                                  rng.normal(0, 20, (64, 32, 3)), 0, 255).astype(np.uint8))
    pil = np.asarray(gaussian_blur(img, sigma, 'pil')).astype(float)
    assert np.array_equal(pil, np.asarray(img.filter(ImageFilter.GaussianBlur(sigma))))
    fast = np.asarray(gaussian_blur(img, sigma, 'cv2')).astype(float)
    # The same smoothing: the noise left differs by a few percent, pixels by a few levels.
    residual = lambda b: (b - np.asarray(img, float)).std()  # noqa: E731
    assert abs(residual(fast) / residual(pil) - 1) < 0.1
    assert np.abs(fast - pil)[4:-4, 4:-4].mean() < 3
    with pytest.raises(ValueError, match='backend'):
        gaussian_blur(img, sigma, 'skimage')
