"""The multi-person reference image of Cross-scale Search (CSS)."""
from typing import Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform

from mmpretrain.registry import TRANSFORMS
from .augmentation import IMAGENET_MEAN, IMAGENET_STD, Box, ViewAugmentation, require_key


def box_mask(size: Sequence[int], box: Box) -> torch.Tensor:
    """Binary float mask of a half-open box.

    Args:
        size (Sequence[int]): mask (H, W).
        box (tuple): (x1, y1, x2, y2).

    Returns:
        torch.Tensor: (H, W) float32, 1 inside the box and 0 elsewhere.
    """
    mask = torch.zeros(int(size[0]), int(size[1]), dtype=torch.float32)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = 1.0
    return mask


@TRANSFORMS.register_module()
class MultiPersonReference(BaseTransform):
    """Build the CSS reference: two person patches blended into an augmented background.

    The background is a RandomResizedCrop of ``bg_img`` with ``g2``'s photometric augmentation,
    normalised. Two patches are blended in as ``w * person + (1 - w) * background`` on the
    normalised tensors (``w = person_weight``), side by side without horizontal overlap:

    - the ROI patch (the last local crop) at a random position -> ``roi_box``/``roi_mask``;
    - the instance patch (the region view) at a random position entirely to the right of the
      ROI patch -> ``instance_box``/``instance_mask``.

    The ROI's left edge is uniform over the positions that leave room for the instance on its
    right; the instance's left edge is then uniform over the remaining room; each patch's top
    edge is uniform over the image height. Adds ``reference`` (3, H, W), ``roi_mask`` and
    ``instance_mask`` (H, W) float32 0/1, and the boxes as (x1, y1, x2, y2) half-open ints.

    Args:
        size (Sequence[int]): reference (H, W). Defaults to (224, 224) (SAIP reference).
        scale (Sequence[float]): background crop area range. Defaults to (0.2, 1.0)
            (SAIP reference).
        ratio (Sequence[float]): background crop width/height range. Defaults to (3/4, 4/3)
            (SAIP reference).
        interpolation (str): resize interpolation. Defaults to 'bicubic' (SAIP reference).
        flip_prob (float): background flip probability. Defaults to 0.5 (as g2).
        color_jitter (Sequence[float]): (brightness, contrast, saturation, hue).
            Defaults to (0.4, 0.4, 0.2, 0.1) (as g2).
        jitter_prob (float): colour jitter probability. Defaults to 0.8 (as g2).
        gray_prob (float): grayscale probability. Defaults to 0.2 (as g2).
        blur_prob (float): blur probability. Defaults to 0.1 (as g2).
        blur_sigma (Sequence[float]): blur radius range. Defaults to (0.1, 2.0) (as g2).
        solarize_prob (float): solarisation probability. Defaults to 0.2 (as g2).
        solarize_threshold (int): solarisation threshold. Defaults to 128 (as g2).
        mean (Sequence[float]): normalisation mean, 0-255 RGB. Defaults to ImageNet's.
        std (Sequence[float]): normalisation std, 0-255 RGB. Defaults to ImageNet's.
        person_weight (float): blending weight of the person patches. Defaults to 0.7
            (SAIP reference; the background keeps 0.3).
        bg_key (str): background image key (RGB uint8). Defaults to 'bg_img'; set 'img' to use
            the person image itself.
        roi_key (str): ROI patch key; for a stack of views (N, 3, h, w) the last one is used.
            Defaults to 'locals'.
        instance_key (str): instance patch key. Defaults to 'region'.
        backend (str): 'cv2' (fast) or 'pil' (bit-identical to before 2026-11-27) hue rotation
            and blur (see ``adjust_hue``, ``gaussian_blur``). Defaults to 'cv2'.
    """

    def __init__(self,
                 size: Sequence[int] = (224, 224),
                 scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3),
                 interpolation: str = 'bicubic',
                 flip_prob: float = 0.5,
                 color_jitter: Sequence[float] = (0.4, 0.4, 0.2, 0.1),
                 jitter_prob: float = 0.8,
                 gray_prob: float = 0.2,
                 blur_prob: float = 0.1,
                 blur_sigma: Sequence[float] = (0.1, 2.0),
                 solarize_prob: float = 0.2,
                 solarize_threshold: int = 128,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 person_weight: float = 0.7,
                 bg_key: str = 'bg_img',
                 roi_key: str = 'locals',
                 instance_key: str = 'region',
                 backend: str = 'cv2') -> None:
        self.augmentation = ViewAugmentation(
            size=size, scale=scale, ratio=ratio, interpolation=interpolation,
            flip_prob=flip_prob, color_jitter=color_jitter, jitter_prob=jitter_prob,
            gray_prob=gray_prob, blur_prob=blur_prob, blur_sigma=blur_sigma,
            solarize_prob=solarize_prob, solarize_threshold=solarize_threshold,
            mean=mean, std=std, backend=backend)
        self.size = self.augmentation.size
        if not 0.0 <= person_weight <= 1.0:
            raise ValueError(f'MultiPersonReference: `person_weight` must be in [0, 1], '
                             f'got {person_weight}')
        self.person_weight = float(person_weight)
        self.bg_key = bg_key
        self.roi_key = roi_key
        self.instance_key = instance_key

    def place_boxes(self, roi_hw: Tuple[int, int], instance_hw: Tuple[int, int]) -> Tuple[Box, Box]:
        """Draw the ROI box and, to its right, the instance box.

        Args:
            roi_hw (tuple[int, int]): ROI patch (h, w).
            instance_hw (tuple[int, int]): instance patch (h, w).

        Returns:
            tuple: (roi_box, instance_box), each (x1, y1, x2, y2) half-open.
        """
        height, width = self.size
        (roi_h, roi_w), (ins_h, ins_w) = roi_hw, instance_hw
        if roi_w + ins_w > width or max(roi_h, ins_h) > height:
            raise ValueError(
                f'MultiPersonReference: patches of {roi_h}x{roi_w} (ROI) and {ins_h}x{ins_w} '
                f'(instance) do not fit side by side in a {height}x{width} reference')
        roi_x1 = int(np.random.randint(0, width - roi_w - ins_w + 1))
        roi_y1 = int(np.random.randint(0, height - roi_h + 1))
        ins_x1 = int(np.random.randint(roi_x1 + roi_w, width - ins_w + 1))
        ins_y1 = int(np.random.randint(0, height - ins_h + 1))
        return ((roi_x1, roi_y1, roi_x1 + roi_w, roi_y1 + roi_h),
                (ins_x1, ins_y1, ins_x1 + ins_w, ins_y1 + ins_h))

    def blend(self, reference: torch.Tensor, patch: torch.Tensor, box: Box) -> None:
        """Blend ``patch`` into ``reference`` inside ``box``, in place.

        Args:
            reference (torch.Tensor): (3, H, W) normalised background.
            patch (torch.Tensor): (3, h, w) normalised person patch, h x w = the box size.
            box (tuple): (x1, y1, x2, y2).
        """
        x1, y1, x2, y2 = box
        area = reference[:, y1:y2, x1:x2]
        area.mul_(1.0 - self.person_weight).add_(patch, alpha=self.person_weight)

    def transform(self, results: dict) -> dict:
        """Add the reference, the two masks and the two boxes.

        Args:
            results (dict): holds ``bg_key`` (RGB uint8), ``roi_key`` and ``instance_key``
                (normalised tensors).

        Returns:
            dict: ``results`` with ``reference``, ``roi_mask``, ``instance_mask``, ``roi_box``,
            ``instance_box`` and ``reference_crop_box`` (the background crop).
        """
        owner = type(self).__name__
        background = require_key(results, self.bg_key, owner)
        roi = require_key(results, self.roi_key, owner)
        if roi.dim() == 4:
            roi = roi[-1]  # the last local crop is the ROI
        instance = require_key(results, self.instance_key, owner)
        if instance.dim() != 3 or roi.dim() != 3:
            raise ValueError(f'{owner}: `{self.roi_key}` and `{self.instance_key}` must be '
                             f'(3, h, w) tensors, got {tuple(roi.shape)} and '
                             f'{tuple(instance.shape)}')

        reference, bg_box = self.augmentation(background)  # (3, H, W)
        roi_box, instance_box = self.place_boxes(tuple(roi.shape[-2:]),
                                                 tuple(instance.shape[-2:]))
        self.blend(reference, roi, roi_box)
        self.blend(reference, instance, instance_box)

        results['reference'] = reference
        results['reference_crop_box'] = bg_box
        results['roi_box'] = roi_box
        results['instance_box'] = instance_box
        results['roi_mask'] = box_mask(self.size, roi_box)  # (H, W)
        results['instance_mask'] = box_mask(self.size, instance_box)  # (H, W)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(person_weight={self.person_weight}, '
                f'bg_key={self.bg_key!r}, roi_key={self.roi_key!r}, '
                f'instance_key={self.instance_key!r}, augmentation={self.augmentation})')
