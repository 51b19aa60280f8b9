"""The light per-image pipeline of the batched views: fit into a fixed canvas, pack uint8.

With ``SAIPBatchViewsPreprocessor`` the DataLoader workers only decode each image, place it in
the top-left corner of a fixed-size canvas (so a batch stacks; an image larger than the canvas
is shrunk to fit, keeping its aspect ratio, one resize) and pack it as uint8; every view is then
built for the whole batch on the model's device. An image that fits keeps its own pixels, so
its crops are those of the per-image path. The original (H, W) and the (H, W) the image covers
in its canvas travel along: crop boxes are drawn in the original image's pixels, as the
per-image path draws them.
"""
from typing import Sequence, Tuple

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from mmpretrain.registry import TRANSFORMS
from mmpretrain.structures import DataSample
from .augmentation import check_size, require_key


def fit_in_canvas(img: np.ndarray, size: Sequence[int]) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Place an image in the top-left corner of a black canvas, shrunk to fit when larger.

    Shrinking keeps the aspect ratio and averages areas (antialiased, OpenCV's INTER_AREA).

    Args:
        img (np.ndarray): (H, W, 3) uint8.
        size (Sequence[int]): canvas (H, W).

    Returns:
        tuple: the (size[0], size[1], 3) uint8 canvas and the (h, w) the image covers.
    """
    height, width = img.shape[:2]
    scale = min(1.0, size[0] / height, size[1] / width)
    if scale < 1.0:
        new_hw = (max(1, min(int(size[0]), round(height * scale))),
                  max(1, min(int(size[1]), round(width * scale))))
        img = cv2.resize(img, (new_hw[1], new_hw[0]), interpolation=cv2.INTER_AREA)
    if img.shape[:2] == tuple(size):
        return img, tuple(size)
    canvas = np.zeros((int(size[0]), int(size[1]), 3), np.uint8)
    canvas[:img.shape[0], :img.shape[1]] = img
    return canvas, img.shape[:2]


@TRANSFORMS.register_module()
class ResizeForBatchViews(BaseTransform):
    """Put the person image and the background image in canvases of fixed sizes.

    Each image goes to the top-left corner of its canvas, shrunk (aspect ratio kept) only when
    it does not fit. Adds ``img_hw``/``bg_img_hw``: the (H, W) the images had (their
    ``ori_shape`` when ``LoadPersonImage`` decoded a JPEG at reduced size), in which the batched
    views draw their crop boxes, and ``img_work_hw``/``bg_img_work_hw``: the (h, w) they cover
    in their canvases.

    Args:
        size (Sequence[int]): person canvas (H, W). Defaults to (384, 192): LUPerson crops
            (mostly up to about 400x200) keep their own pixels.
        bg_size (Sequence[int]): background canvas (H, W). Defaults to (384, 384): the
            smallest reference crop (scale 0.2 of the image, resized to 224x224) keeps about
            its resolution.
    """

    def __init__(self, size: Sequence[int] = (384, 192),
                 bg_size: Sequence[int] = (384, 384)) -> None:
        self.size = check_size('size', size)
        self.bg_size = check_size('bg_size', bg_size)

    def transform(self, results: dict) -> dict:
        """Place ``img`` and (when present) ``bg_img`` in their canvases.

        Args:
            results (dict): holds ``img`` and optionally ``bg_img``, RGB uint8.

        Returns:
            dict: ``results`` with the canvases and the sizes.
        """
        img = require_key(results, 'img', type(self).__name__)
        results['img_hw'] = tuple(results.get('ori_shape', img.shape[:2]))
        results['img'], results['img_work_hw'] = fit_in_canvas(img, self.size)
        if 'bg_img' in results:
            bg_img = results['bg_img']
            results['bg_img_hw'] = tuple(results.get('bg_ori_shape', bg_img.shape[:2]))
            results['bg_img'], results['bg_img_work_hw'] = fit_in_canvas(bg_img, self.bg_size)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size={self.size}, bg_size={self.bg_size})'


@TRANSFORMS.register_module()
class PackSAIPImages(BaseTransform):
    """Pack the working images as uint8 tensors for ``SAIPBatchViewsPreprocessor``.

    Output: ``{'inputs': dict(img, img_hw, img_work_hw, bg_img, bg_img_hw, bg_img_work_hw),
    'data_samples': DataSample}`` with ``img``/``bg_img`` (H, W, 3) uint8 canvases, channels
    last as decoded (no transpose in the workers; the preprocessor reads the collated
    (B, H, W, 3) batch as a channels-last (B, 3, H, W) view, which the CPU resampling wants),
    and the sizes as int64 (2,) tensors. Without a background image (``PersonImageDataset`` always
    draws one) the person image is its own background.

    Args:
        meta_keys (Sequence[str]): results copied into the DataSample's metainfo when present.
            Defaults to ('img_path', 'bg_img_path').
    """

    def __init__(self, meta_keys: Sequence[str] = ('img_path', 'bg_img_path')) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack ``results``.

        Args:
            results (dict): after ``ResizeForBatchViews``.

        Returns:
            dict: ``inputs`` and ``data_samples``.
        """
        owner = type(self).__name__
        img = require_key(results, 'img', owner)
        img_hw = require_key(results, 'img_hw', owner)
        work_hw = require_key(results, 'img_work_hw', owner)
        if 'bg_img' in results:
            bg_img, bg_hw, bg_work_hw = (results['bg_img'], results['bg_img_hw'],
                                         results['bg_img_work_hw'])
        else:
            bg_img, bg_hw, bg_work_hw = img, img_hw, work_hw
        inputs = dict(
            img=torch.from_numpy(np.ascontiguousarray(img)),
            img_hw=torch.tensor(img_hw, dtype=torch.int64),
            img_work_hw=torch.tensor(work_hw, dtype=torch.int64),
            bg_img=torch.from_numpy(np.ascontiguousarray(bg_img)),
            bg_img_hw=torch.tensor(bg_hw, dtype=torch.int64),
            bg_img_work_hw=torch.tensor(bg_work_hw, dtype=torch.int64))
        data_sample = DataSample()
        data_sample.set_metainfo({key: results[key] for key in self.meta_keys if key in results})
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
