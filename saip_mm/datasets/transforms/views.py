"""The single-person views of SAIP: two global views, the local crops and the region view."""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform

from mmpretrain.registry import TRANSFORMS
from .augmentation import (IMAGENET_MEAN, IMAGENET_STD, ViewAugmentation, as_pil,
                           check_size, require_key)


@TRANSFORMS.register_module()
class PersonGlobalViews(BaseTransform):
    """Two global views ``g1`` (the anchor) and ``g2`` of the person image.

    Both are RandomResizedCrops with a person aspect ratio, sharing the crop arguments; the
    photometric arguments given as pairs are (g1, g2). Adds ``g1``/``g2`` (3, H, W) float
    tensors, normalised, and their crop boxes ``g1_crop_box``/``g2_crop_box`` (x1, y1, x2, y2)
    in the source image.

    Args:
        size (Sequence[int]): (H, W) of both views. Defaults to (256, 128), the SAIP anchor.
        scale (Sequence[float]): crop area range. Defaults to (0.8, 1.0) (SAIP reference).
        ratio (Sequence[float]): crop width/height range. Defaults to (0.4, 0.6), the person
            ratio for a 256x128 anchor; see ``person_crop_ratio`` for other anchors.
        interpolation (str): resize interpolation. Defaults to 'bicubic' (SAIP reference).
        flip_prob (float): horizontal flip probability. Defaults to 0.5 (SAIP reference).
        color_jitter (Sequence[float]): (brightness, contrast, saturation, hue).
            Defaults to (0.4, 0.4, 0.2, 0.1) (SAIP reference).
        jitter_prob (float): colour jitter probability. Defaults to 0.8 (SAIP reference).
        gray_prob (float): grayscale probability. Defaults to 0.2 (SAIP reference).
        blur_prob (Sequence[float]): blur probability of (g1, g2). Defaults to (1.0, 0.1)
            (SAIP reference).
        blur_sigma (Sequence[float]): blur radius range. Defaults to (0.1, 2.0) (DINO's, SAIP
            reference).
        solarize_prob (Sequence[float]): solarisation probability of (g1, g2).
            Defaults to (0.0, 0.2) (SAIP reference).
        solarize_threshold (int): solarisation threshold. Defaults to 128 (SAIP reference).
        mean (Sequence[float]): normalisation mean, 0-255 RGB. Defaults to ImageNet's.
        std (Sequence[float]): normalisation std, 0-255 RGB. Defaults to ImageNet's.
        keys (Sequence[str]): output keys of the two views. Defaults to ('g1', 'g2').
        img_key (str): source image key. Defaults to 'img'.
        backend (str): 'cv2' (fast) or 'pil' (bit-identical to before 2026-11-27) hue rotation
            and blur (see ``adjust_hue``, ``gaussian_blur``). Defaults to 'cv2'.
    """

    def __init__(self,
                 size: Sequence[int] = (256, 128),
                 scale: Sequence[float] = (0.8, 1.0),
                 ratio: Sequence[float] = (0.4, 0.6),
                 interpolation: str = 'bicubic',
                 flip_prob: float = 0.5,
                 color_jitter: Sequence[float] = (0.4, 0.4, 0.2, 0.1),
                 jitter_prob: float = 0.8,
                 gray_prob: float = 0.2,
                 blur_prob: Sequence[float] = (1.0, 0.1),
                 blur_sigma: Sequence[float] = (0.1, 2.0),
                 solarize_prob: Sequence[float] = (0.0, 0.2),
                 solarize_threshold: int = 128,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 keys: Sequence[str] = ('g1', 'g2'),
                 img_key: str = 'img',
                 backend: str = 'cv2') -> None:
        for name, value in (('blur_prob', blur_prob), ('solarize_prob', solarize_prob),
                            ('keys', keys)):
            if len(value) != 2:
                raise ValueError(f'PersonGlobalViews: `{name}` needs one value per view '
                                 f'(g1, g2), got {value}')
        self.keys = tuple(keys)
        self.img_key = img_key
        self.augmentations = [
            ViewAugmentation(
                size=size, scale=scale, ratio=ratio, interpolation=interpolation,
                flip_prob=flip_prob, color_jitter=color_jitter, jitter_prob=jitter_prob,
                gray_prob=gray_prob, blur_prob=blur_prob[i], blur_sigma=blur_sigma,
                solarize_prob=solarize_prob[i], solarize_threshold=solarize_threshold,
                mean=mean, std=std, backend=backend) for i in range(2)
        ]

    def transform(self, results: dict) -> dict:
        """Add the two global views.

        Args:
            results (dict): holds the RGB uint8 image under ``img_key``.

        Returns:
            dict: ``results`` with the views and their crop boxes.
        """
        img = as_pil(require_key(results, self.img_key, type(self).__name__))
        for key, augment in zip(self.keys, self.augmentations):
            results[key], results[f'{key}_crop_box'] = augment(img)  # (3, H, W)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(keys={self.keys}, augmentations={self.augmentations})'


@TRANSFORMS.register_module()
class PersonLocalViews(BaseTransform):
    """The local crops: ``n_local - 1`` small RandomResizedCrops of the person image.

    Adds ``locals`` (num_views, 3, H, W), normalised, and ``locals_crop_boxes`` (a list of
    (x1, y1, x2, y2) in the source image). The last crop is the one the multi-person reference
    pastes as the ROI.

    Args:
        num_views (int): number of local crops. Defaults to 7 (``n_local - 1`` with
            ``n_local = 8``, SAIP reference).
        size (Sequence[int]): (H, W) of each crop. Defaults to (128, 64) (SAIP reference).
        scale (Sequence[float]): crop area range. Defaults to (0.05, 0.8) (SAIP reference).
        ratio (Sequence[float]): crop width/height range. Defaults to (0.4, 0.6) (SAIP
            reference for a 256x128 anchor).
        interpolation (str): resize interpolation. Defaults to 'bicubic' (SAIP reference).
        flip_prob (float): flip probability. Defaults to 0.5 (SAIP reference).
        color_jitter (Sequence[float]): (brightness, contrast, saturation, hue).
            Defaults to (0.4, 0.4, 0.2, 0.1) (SAIP reference).
        jitter_prob (float): colour jitter probability. Defaults to 0.8 (SAIP reference).
        gray_prob (float): grayscale probability. Defaults to 0.2 (SAIP reference).
        blur_prob (float): blur probability. Defaults to 0.5 (SAIP reference).
        blur_sigma (Sequence[float]): blur radius range. Defaults to (0.1, 2.0) (SAIP reference).
        solarize_prob (float): solarisation probability. Defaults to 0.0 (SAIP reference).
        solarize_threshold (int): solarisation threshold. Defaults to 128.
        mean (Sequence[float]): normalisation mean, 0-255 RGB. Defaults to ImageNet's.
        std (Sequence[float]): normalisation std, 0-255 RGB. Defaults to ImageNet's.
        key (str): output key. Defaults to 'locals'.
        img_key (str): source image key. Defaults to 'img'.
        backend (str): 'cv2' (fast) or 'pil' (bit-identical to before 2026-11-27) hue rotation
            and blur (see ``adjust_hue``, ``gaussian_blur``). Defaults to 'cv2'.
    """

    def __init__(self,
                 num_views: int = 7,
                 size: Sequence[int] = (128, 64),
                 scale: Sequence[float] = (0.05, 0.8),
                 ratio: Sequence[float] = (0.4, 0.6),
                 interpolation: str = 'bicubic',
                 flip_prob: float = 0.5,
                 color_jitter: Sequence[float] = (0.4, 0.4, 0.2, 0.1),
                 jitter_prob: float = 0.8,
                 gray_prob: float = 0.2,
                 blur_prob: float = 0.5,
                 blur_sigma: Sequence[float] = (0.1, 2.0),
                 solarize_prob: float = 0.0,
                 solarize_threshold: int = 128,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 key: str = 'locals',
                 img_key: str = 'img',
                 backend: str = 'cv2') -> None:
        if int(num_views) != num_views or num_views < 1:
            raise ValueError(f'PersonLocalViews: `num_views` must be a positive integer, '
                             f'got {num_views}')
        self.num_views = int(num_views)
        self.key = key
        self.img_key = img_key
        self.augmentation = ViewAugmentation(
            size=size, scale=scale, ratio=ratio, interpolation=interpolation,
            flip_prob=flip_prob, color_jitter=color_jitter, jitter_prob=jitter_prob,
            gray_prob=gray_prob, blur_prob=blur_prob, blur_sigma=blur_sigma,
            solarize_prob=solarize_prob, solarize_threshold=solarize_threshold,
            mean=mean, std=std, backend=backend)

    def transform(self, results: dict) -> dict:
        """Add the local crops.

        Args:
            results (dict): holds the RGB uint8 image under ``img_key``.

        Returns:
            dict: ``results`` with ``locals`` and ``locals_crop_boxes``.
        """
        img = as_pil(require_key(results, self.img_key, type(self).__name__))
        views, boxes = zip(*(self.augmentation(img) for _ in range(self.num_views)))
        results[self.key] = torch.stack(views)  # (num_views, 3, H, W)
        results[f'{self.key}_crop_boxes'] = list(boxes)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_views={self.num_views}, key={self.key!r}, '
                f'augmentation={self.augmentation})')


@TRANSFORMS.register_module()
class RegionView(BaseTransform):
    """The region view: the anchor ``g1`` resized to half scale (same person, same pixels).

    Resizes the already normalised tensor, so the region view shares g1's crop and photometric
    augmentation exactly. Reference: ``F.interpolate(g1, size=(128, 64))``, i.e. its default
    nearest-neighbour; ours: the same by default, ``'bicubic'`` (with antialiasing) for
    experiments. The mode must equal the model's ``resize_mode``: it is recorded as
    ``region_interpolation`` and checked by ``SAIP`` at every step.

    Args:
        size (Sequence[int]): (H, W) of the region view. Defaults to (128, 64) (SAIP reference,
            half the 256x128 anchor).
        interpolation (str): ``'nearest'`` (SAIP reference) or ``'bicubic'``.
            Defaults to 'nearest'.
        antialias (bool): antialias when downsampling; used by ``'bicubic'`` only.
            Defaults to True.
        src_key (str): the view to resize. Defaults to 'g1'.
        key (str): output key. Defaults to 'region'.
    """

    def __init__(self,
                 size: Sequence[int] = (128, 64),
                 interpolation: str = 'nearest',
                 antialias: bool = True,
                 src_key: str = 'g1',
                 key: str = 'region') -> None:
        self.size: Tuple[int, int] = check_size('size', size)
        if interpolation not in ('nearest', 'bicubic'):
            raise ValueError(f"RegionView: `interpolation` must be 'nearest' (SAIP reference) or "
                             f"'bicubic', got {interpolation!r}")
        self.interpolation = interpolation
        # torch antialiases bilinear/bicubic only.
        self.antialias = bool(antialias) and interpolation == 'bicubic'
        self.src_key = src_key
        self.key = key

    def transform(self, results: dict) -> dict:
        """Add the region view.

        Args:
            results (dict): holds the normalised (3, H, W) tensor under ``src_key``.

        Returns:
            dict: ``results`` with the region view (3, h, w) and ``region_interpolation``.
        """
        src = require_key(results, self.src_key, type(self).__name__)
        if self.interpolation == 'nearest':
            region = F.interpolate(src[None], size=self.size)
        else:
            region = F.interpolate(src[None], size=self.size, mode='bicubic',
                                   align_corners=False, antialias=self.antialias)
        results[self.key] = region[0]  # (3, h, w)
        results['region_interpolation'] = self.interpolation
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, interpolation={self.interpolation!r}, '
                f'antialias={self.antialias}, src_key={self.src_key!r}, key={self.key!r})')
