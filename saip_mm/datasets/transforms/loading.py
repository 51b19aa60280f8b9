"""Loading of the person image and of the background image of the multi-person reference."""
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio

from mmpretrain.registry import TRANSFORMS


class CorruptImageError(ValueError):
    """An image file that exists but does not decode; ``path`` names it.

    Args:
        path (str): the file.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f'cannot decode image file (corrupt or not an image): {path}')
        self.path = path


def load_rgb_image(path: str, backend_args: Optional[dict] = None) -> np.ndarray:
    """Read an image file as an RGB uint8 array.

    Args:
        path (str): image path (or URI understood by ``mmengine.fileio``).
        backend_args (dict, optional): file backend arguments. Defaults to None (local disk).

    Returns:
        np.ndarray: (H, W, 3) uint8, RGB. Grayscale images are expanded, alpha is dropped.
    """
    try:
        data = fileio.get(path, backend_args=backend_args)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'image file not found: {path}') from err
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        # cv2 returns None (no exception) for undecodable bytes.
        raise CorruptImageError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@TRANSFORMS.register_module()
class LoadPersonImage(BaseTransform):
    """Load ``img_path`` into ``img`` and, when present, ``bg_img_path`` into ``bg_img``.

    Both are RGB uint8 arrays (H, W, 3), unlike mmcv's ``LoadImageFromFile`` (BGR): every SAIP
    view is built from RGB images. Adds ``img_shape``/``ori_shape`` (and ``bg_img_shape``).
    A missing file raises FileNotFoundError, an undecodable one ``CorruptImageError`` (a
    ValueError); both name the file. ``PersonImageDataset(skip_corrupt=True)`` skips the latter.

    Args:
        backend_args (dict, optional): ``mmengine.fileio`` backend arguments.
            Defaults to None (local disk).
    """

    def __init__(self, backend_args: Optional[dict] = None) -> None:
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        """Load the images named in ``results``.

        Args:
            results (dict): holds ``img_path`` and optionally ``bg_img_path``.

        Returns:
            dict: ``results`` with ``img`` (and ``bg_img``) added.
        """
        if 'img_path' not in results:
            raise KeyError('LoadPersonImage: `img_path` is missing from the data info')
        img = load_rgb_image(results['img_path'], self.backend_args)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        if results.get('bg_img_path') is not None:
            bg_img = load_rgb_image(results['bg_img_path'], self.backend_args)
            results['bg_img'] = bg_img
            results['bg_img_shape'] = bg_img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(backend_args={self.backend_args})'
