"""Building blocks of the SAIP views: crop sampling, photometric augmentation, normalisation.

Every random draw uses NumPy's global generator, which MMEngine's ``worker_init_fn`` seeds per
DataLoader worker, so views are reproducible under ``randomness=dict(seed=...)`` and differ
between workers.
"""
import functools
import math
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

# A box is (x1, y1, x2, y2) in pixels, half-open: the crop is img[y1:y2, x1:x2].
Box = Tuple[int, int, int, int]

# ImageNet statistics on 0-255 RGB values (the convention of mmpretrain's configs).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

INTERPOLATIONS = {
    'nearest': Image.Resampling.NEAREST,
    'bilinear': Image.Resampling.BILINEAR,
    'bicubic': Image.Resampling.BICUBIC,
    'lanczos': Image.Resampling.LANCZOS,
}


def person_crop_ratio(anchor_size: Sequence[int]) -> Tuple[float, float]:
    """Width/height range of SAIP's person crops for an anchor (global view) size.

    The method's rules: 256x128 -> (0.4, 0.6); 256x192 -> (0.4, 0.6); 384x128 -> (0.25, 0.4);
    any square anchor -> (3/4, 4/3). Pass the result as the ``ratio`` argument of the view
    transforms when training at another anchor.

    Args:
        anchor_size (Sequence[int]): the anchor view size as (H, W).

    Returns:
        tuple[float, float]: (min, max) of width/height.
    """
    height, width = (int(v) for v in anchor_size)
    if height == width:
        return (3 / 4, 4 / 3)
    rules = {(256, 128): (0.4, 0.6), (256, 192): (0.4, 0.6), (384, 128): (0.25, 0.4)}
    if (height, width) not in rules:
        raise ValueError(f'person_crop_ratio: the method defines no crop ratio for an anchor of '
                         f'{height}x{width} (H x W); known anchors: {sorted(rules)} and squares. '
                         'Pass `ratio` explicitly.')
    return rules[(height, width)]


def sample_crop_box(height: int,
                    width: int,
                    scale: Sequence[float],
                    ratio: Sequence[float],
                    max_attempts: int = 10) -> Box:
    """Draw a RandomResizedCrop box whose width/height lies inside ``ratio``.

    Like torchvision's RandomResizedCrop (area uniform in ``scale``, aspect ratio log-uniform in
    ``ratio``), except that the ratio bound is checked *after* rounding to whole pixels, and the
    fallback (no attempt fits) is the largest centred box with a ratio inside the range, so a
    returned box always respects ``ratio`` (images at least 1/(max-min) pixels tall).

    Args:
        height (int): image height.
        width (int): image width.
        scale (Sequence[float]): (min, max) fraction of the image area.
        ratio (Sequence[float]): (min, max) of the box's width/height.
        max_attempts (int): random tries before the fallback. Defaults to 10 (torchvision's).

    Returns:
        tuple[int, int, int, int]: (x1, y1, x2, y2), half-open pixel box.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(max_attempts):
        target_area = area * np.random.uniform(scale[0], scale[1])
        aspect = math.exp(np.random.uniform(log_ratio[0], log_ratio[1]))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if (0 < crop_w <= width and 0 < crop_h <= height
                and ratio[0] <= crop_w / crop_h <= ratio[1]):
            x1 = int(np.random.randint(0, width - crop_w + 1))
            y1 = int(np.random.randint(0, height - crop_h + 1))
            return (x1, y1, x1 + crop_w, y1 + crop_h)
    # Fallback: clamp the whole image's ratio into range; floor keeps the bound satisfied.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, max(1, min(height, int(width / ratio[0])))
    elif in_ratio > ratio[1]:
        crop_w, crop_h = max(1, min(width, int(height * ratio[1]))), height
    else:
        crop_w, crop_h = width, height
    x1, y1 = (width - crop_w) // 2, (height - crop_h) // 2
    return (x1, y1, x1 + crop_w, y1 + crop_h)


def adjust_hue(img: Image.Image, hue_factor: float, backend: str = 'cv2') -> Image.Image:
    """Rotate the hue of an RGB image by ``hue_factor`` turns (in [-0.5, 0.5]).

    Both backends rotate hue on a 256-level wheel (PIL's HSV, OpenCV's ``HSV_FULL``) by
    ``round(hue_factor * 255)`` levels. 'cv2' is about 10x faster; it rounds where PIL's HSV
    conversion truncates, so pixels differ from 'pil' by about one level (of 255) on average,
    up to about ten at the rare pixels where the two 256-level grids round apart (PIL's
    truncation also drifts saturation down by about half a level per call).

    Args:
        img (PIL.Image.Image): RGB image.
        hue_factor (float): hue shift as a fraction of the colour wheel.
        backend (str): 'cv2' or 'pil' (the implementation before 2026-11-27, bit-identical to
            it). Defaults to 'cv2'.

    Returns:
        PIL.Image.Image: the shifted RGB image.
    """
    # One turn spans 256 hue levels; shift with wrap-around in a wide dtype.
    shift = int(round(hue_factor * 255)) % 256
    if backend == 'cv2':
        hsv = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2HSV_FULL)
        hsv[..., 0] += np.uint8(shift)  # uint8 arithmetic wraps modulo 256
        return Image.fromarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL), 'RGB')
    if backend != 'pil':
        raise ValueError(f"adjust_hue: `backend` must be 'cv2' or 'pil', got {backend!r}")
    hue, sat, val = img.convert('HSV').split()
    hue_np = ((np.asarray(hue, dtype=np.int16) + shift) % 256).astype(np.uint8)
    return Image.merge('HSV', (Image.fromarray(hue_np, 'L'), sat, val)).convert('RGB')


def gaussian_blur(img: Image.Image, sigma: float, backend: str = 'cv2') -> Image.Image:
    """Gaussian blur of standard deviation ``sigma`` pixels, edges replicated.

    'cv2' convolves with the Gaussian itself (to 3 sigma), about 2-7x faster than 'pil', which
    approximates it with three box blurs of the same variance; the two differ by a few levels.

    Args:
        img (PIL.Image.Image): RGB image.
        sigma (float): standard deviation (PIL's blur "radius").
        backend (str): 'cv2' or 'pil' (the implementation before 2026-11-27). Defaults to 'cv2'.

    Returns:
        PIL.Image.Image: the blurred image.
    """
    if backend == 'cv2':
        return Image.fromarray(cv2.GaussianBlur(np.asarray(img), (0, 0), sigma,
                                                borderType=cv2.BORDER_REPLICATE), 'RGB')
    if backend != 'pil':
        raise ValueError(f"gaussian_blur: `backend` must be 'cv2' or 'pil', got {backend!r}")
    return img.filter(ImageFilter.GaussianBlur(sigma))


def random_color_jitter(img: Image.Image, brightness: float, contrast: float,
                        saturation: float, hue: float, backend: str = 'cv2') -> Image.Image:
    """Colour jitter with random factors applied in a random order (torchvision's ColorJitter).

    Args:
        img (PIL.Image.Image): RGB image.
        brightness (float): factor drawn from [max(0, 1 - b), 1 + b].
        contrast (float): factor drawn from [max(0, 1 - c), 1 + c].
        saturation (float): factor drawn from [max(0, 1 - s), 1 + s].
        hue (float): shift drawn from [-h, h].
        backend (str): 'cv2' or 'pil', see :func:`adjust_hue`. Defaults to 'cv2'.

    Returns:
        PIL.Image.Image: the jittered image.
    """
    for op in np.random.permutation(4):
        if op == 0 and brightness > 0:
            img = ImageEnhance.Brightness(img).enhance(
                np.random.uniform(max(0.0, 1 - brightness), 1 + brightness))
        elif op == 1 and contrast > 0:
            img = ImageEnhance.Contrast(img).enhance(
                np.random.uniform(max(0.0, 1 - contrast), 1 + contrast))
        elif op == 2 and saturation > 0:
            img = ImageEnhance.Color(img).enhance(
                np.random.uniform(max(0.0, 1 - saturation), 1 + saturation))
        elif op == 3 and hue > 0:
            img = adjust_hue(img, np.random.uniform(-hue, hue), backend)
    return img


@functools.lru_cache(maxsize=8)
def _normalize_lut(mean: Tuple[float, ...], std: Tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32 table of ``(v - mean) / std`` for every uint8 value ``v``."""
    values = np.arange(256, dtype=np.float32)[None, :]
    return (values - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]


def normalize_image(img: Union[Image.Image, np.ndarray], mean: Sequence[float],
                    std: Sequence[float]) -> torch.Tensor:
    """Turn an RGB uint8 image into a normalised float tensor.

    A table lookup per channel (OpenCV's LUT): the table holds the float32 results of
    ``(v - mean) / std`` for the 256 values, so the output is bit-identical to that arithmetic,
    without the float copy and the transpose of the whole image (about 4x faster).

    Args:
        img (PIL.Image.Image | np.ndarray): RGB image, (H, W, 3) uint8.
        mean (Sequence[float]): per-channel mean on 0-255 values.
        std (Sequence[float]): per-channel std on 0-255 values.

    Returns:
        torch.Tensor: (3, H, W) float32.
    """
    arr = np.asarray(img)
    if arr.dtype != np.uint8:  # float input: plain arithmetic
        arr = (arr.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    lut = _normalize_lut(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    out = np.empty((3, ) + arr.shape[:2], dtype=np.float32)
    for channel, plane in enumerate(cv2.split(arr)):
        cv2.LUT(plane, lut[channel], dst=out[channel])
    return torch.from_numpy(out)


def as_pil(img: Union[np.ndarray, Image.Image]) -> Image.Image:
    """An RGB uint8 array as a PIL image (a PIL image is returned as is).

    Transforms making several views of one image convert it once, not once per view.

    Args:
        img (np.ndarray | PIL.Image.Image): (H, W, 3) uint8 RGB.

    Returns:
        PIL.Image.Image: the RGB image.
    """
    return Image.fromarray(img, 'RGB') if isinstance(img, np.ndarray) else img


def require_key(results: dict, key: str, owner: str):
    """Return ``results[key]``, or raise a KeyError naming the key and the transform.

    Args:
        results (dict): the pipeline's results.
        key (str): the key needed.
        owner (str): the transform asking, for the message.

    Returns:
        The value stored under ``key``.
    """
    if key not in results:
        raise KeyError(f'{owner}: `{key}` is missing from the results; '
                       'is an earlier pipeline step missing or out of order?')
    return results[key]


def _check_range(name: str, value: Sequence[float], low: float, high: float) -> Tuple[float, float]:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high or value[1] <= 0:
        raise ValueError(f'`{name}` must be (min, max) with {low} <= min <= max <= {high} and '
                         f'max > 0, got {value}')
    return (float(value[0]), float(value[1]))


def _check_prob(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f'`{name}` must be a probability in [0, 1], got {value}')
    return float(value)


def check_size(name: str, value: Sequence[int]) -> Tuple[int, int]:
    """Validate an (H, W) size argument.

    Args:
        name (str): the argument's name, for the error message.
        value (Sequence[int]): the size.

    Returns:
        tuple[int, int]: (H, W).
    """
    if len(value) != 2 or any(int(v) != v or v <= 0 for v in value):
        raise ValueError(f'`{name}` must be (H, W) positive integers, got {value}')
    return (int(value[0]), int(value[1]))


class ViewAugmentation:
    """One randomly augmented view: crop + resize, flip, colour jitter, grayscale, blur, solarise.

    The order is DINO's: RandomResizedCrop, horizontal flip, colour jitter (applied with
    ``jitter_prob``), grayscale, Gaussian blur, solarisation, normalisation.

    Args:
        size (Sequence[int]): output (H, W).
        scale (Sequence[float]): RandomResizedCrop area range.
        ratio (Sequence[float]): RandomResizedCrop width/height range.
        interpolation (str): 'bicubic', 'bilinear', 'nearest' or 'lanczos'. Defaults to 'bicubic'.
        flip_prob (float): horizontal flip probability. Defaults to 0.5.
        color_jitter (Sequence[float]): (brightness, contrast, saturation, hue).
            Defaults to (0.4, 0.4, 0.2, 0.1).
        jitter_prob (float): probability of applying the colour jitter. Defaults to 0.8.
        gray_prob (float): grayscale probability. Defaults to 0.2.
        blur_prob (float): Gaussian blur probability. Defaults to 0.
        blur_sigma (Sequence[float]): blur radius range, drawn uniformly. Defaults to (0.1, 2.0).
        solarize_prob (float): solarisation probability. Defaults to 0.
        solarize_threshold (int): pixels >= threshold are inverted. Defaults to 128.
        mean (Sequence[float]): normalisation mean (0-255 RGB). Defaults to ImageNet's.
        std (Sequence[float]): normalisation std (0-255 RGB). Defaults to ImageNet's.
        backend (str): 'cv2' (fast: hue rotation and Gaussian blur through OpenCV) or 'pil'
            (bit-identical to the implementation before 2026-11-27); see :func:`adjust_hue`
            and :func:`gaussian_blur`. Defaults to 'cv2'.
    """

    def __init__(self,
                 size: Sequence[int],
                 scale: Sequence[float],
                 ratio: Sequence[float],
                 interpolation: str = 'bicubic',
                 flip_prob: float = 0.5,
                 color_jitter: Sequence[float] = (0.4, 0.4, 0.2, 0.1),
                 jitter_prob: float = 0.8,
                 gray_prob: float = 0.2,
                 blur_prob: float = 0.0,
                 blur_sigma: Sequence[float] = (0.1, 2.0),
                 solarize_prob: float = 0.0,
                 solarize_threshold: int = 128,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 backend: str = 'cv2') -> None:
        self.size = check_size('size', size)
        self.scale = _check_range('scale', scale, 0.0, 1.0)
        self.ratio = _check_range('ratio', ratio, 1e-6, float('inf'))
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f'`interpolation` must be one of {sorted(INTERPOLATIONS)}, '
                             f'got {interpolation!r}')
        self.interpolation = interpolation
        self.flip_prob = _check_prob('flip_prob', flip_prob)
        if len(color_jitter) != 4 or any(v < 0 for v in color_jitter) or color_jitter[3] > 0.5:
            raise ValueError('`color_jitter` must be (brightness, contrast, saturation, hue) >= 0 '
                             f'with hue <= 0.5, got {color_jitter}')
        self.color_jitter = tuple(float(v) for v in color_jitter)
        self.jitter_prob = _check_prob('jitter_prob', jitter_prob)
        self.gray_prob = _check_prob('gray_prob', gray_prob)
        self.blur_prob = _check_prob('blur_prob', blur_prob)
        self.blur_sigma = _check_range('blur_sigma', blur_sigma, 0.0, float('inf'))
        self.solarize_prob = _check_prob('solarize_prob', solarize_prob)
        self.solarize_threshold = int(solarize_threshold)
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f'`mean`/`std` must have 3 values (RGB), std > 0; got {mean}, {std}')
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        if backend not in ('cv2', 'pil'):
            raise ValueError(f"`backend` must be 'cv2' or 'pil', got {backend!r}")
        self.backend = backend

    def photometric(self, img: Image.Image) -> Image.Image:
        """Apply flip, jitter, grayscale, blur and solarisation (each with its probability).

        Args:
            img (PIL.Image.Image): RGB image.

        Returns:
            PIL.Image.Image: the augmented image.
        """
        # A disabled step (probability 0) draws no random number at all.
        if self.flip_prob > 0 and np.random.rand() < self.flip_prob:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.jitter_prob > 0 and np.random.rand() < self.jitter_prob:
            img = random_color_jitter(img, *self.color_jitter, self.backend)
        if self.gray_prob > 0 and np.random.rand() < self.gray_prob:
            img = img.convert('L').convert('RGB')
        if self.blur_prob > 0 and np.random.rand() < self.blur_prob:
            img = gaussian_blur(img, np.random.uniform(*self.blur_sigma), self.backend)
        if self.solarize_prob > 0 and np.random.rand() < self.solarize_prob:
            img = ImageOps.solarize(img, threshold=self.solarize_threshold)
        return img

    def __call__(self, img: Union[np.ndarray, Image.Image],
                 box: Optional[Box] = None) -> Tuple[torch.Tensor, Box]:
        """Make one view of ``img``.

        Args:
            img (np.ndarray | PIL.Image.Image): RGB uint8 image, (H, W, 3).
            box (tuple, optional): crop box (x1, y1, x2, y2); drawn with
                :func:`sample_crop_box` when None. Defaults to None.

        Returns:
            tuple[torch.Tensor, tuple]: the normalised view (3, H, W) and its crop box in
            ``img``'s pixels.
        """
        img = as_pil(img)
        if box is None:
            box = sample_crop_box(img.height, img.width, self.scale, self.ratio)
        out_h, out_w = self.size
        # Crop, then resize, as torchvision's RandomResizedCrop (DINO) does: the filter sees no
        # pixel outside the crop (PIL's resize(box=...) would blend some in at the borders).
        view = img.crop(box).resize((out_w, out_h), INTERPOLATIONS[self.interpolation])
        view = self.photometric(view)
        return normalize_image(view, self.mean, self.std), box

    def __repr__(self) -> str:
        fields = ', '.join(f'{k}={v}' for k, v in vars(self).items())
        return f'{type(self).__name__}({fields})'
