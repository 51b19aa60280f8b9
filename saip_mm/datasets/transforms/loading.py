"""Loading of the person image and of the background image of the multi-person reference."""
import io
from typing import Callable, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image
from mmcv.transforms import BaseTransform
from mmengine import fileio

from mmpretrain.registry import TRANSFORMS


class CorruptImageError(ValueError):
    """An image file that exists but does not decode; ``path`` names it.

    Args:
        path (str): the file.
        message (str, optional): the message. Defaults to None (says the file does not decode).
    """

    def __init__(self, path: str, message: Optional[str] = None) -> None:
        super().__init__(message or f'cannot decode image file (corrupt or not an image): {path}')
        self.path = path


class CorruptEntryError(CorruptImageError):
    """An LMDB or shard entry whose bytes do not decode; ``path`` names it as
    ``<container>[<key>]``.

    Args:
        path (str): the entry's name.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, f'cannot decode image entry (corrupt or not an image): {path}')


def decode_jpeg_draft(data: bytes, min_size: Sequence[int]) -> Optional[Tuple[np.ndarray,
                                                                             Tuple[int, int]]]:
    """Decode a JPEG at the smallest DCT scale (1, 1/2, 1/4, 1/8) that keeps ``min_size``.

    libjpeg then skips most of the work for large files (PIL's ``Image.draft``). Returns None
    for other formats.

    Args:
        data (bytes): the file's bytes.
        min_size (Sequence[int]): (H, W) both sides of the decoded image must reach (or the
            full size, when smaller).

    Returns:
        tuple | None: the RGB uint8 (h, w, 3) image and the file's full (H, W), or None.
    """
    try:
        img = Image.open(io.BytesIO(data))
    except Exception:  # not an image PIL knows: leave it to OpenCV (and its error message)
        return None
    if img.format != 'JPEG':
        return None
    full_hw = (img.height, img.width)
    img.draft('RGB', (int(min_size[1]), int(min_size[0])))
    return np.asarray(img.convert('RGB')), full_hw


def load_rgb_image(path: str, backend_args: Optional[dict] = None,
                   decode_size: Optional[Sequence[int]] = None) -> np.ndarray:
    """Read an image file as an RGB uint8 array.

    Args:
        path (str): image path (or URI understood by ``mmengine.fileio``).
        backend_args (dict, optional): file backend arguments. Defaults to None (local disk).
        decode_size (Sequence[int], optional): (H, W): decode JPEGs at the smallest DCT
            scale whose size reaches it (see :func:`decode_jpeg_draft`). Defaults to None
            (full size, OpenCV).

    Returns:
        np.ndarray: (H, W, 3) uint8, RGB. Grayscale images are expanded, alpha is dropped.
    """
    return _load(path, backend_args, decode_size)[0]


def _load(path: str, backend_args: Optional[dict],
          decode_size: Optional[Sequence[int]]) -> Tuple[np.ndarray, Tuple[int, int]]:
    """The RGB image and the file's full (H, W)."""
    try:
        data = fileio.get(path, backend_args=backend_args)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'image file not found: {path}') from err
    return decode_image(data, path, decode_size)


def decode_image(data: bytes, name: str, decode_size: Optional[Sequence[int]] = None,
                 error: Callable[[str], Exception] = CorruptImageError
                 ) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Decode an encoded image (a file's bytes, an LMDB or shard entry) as RGB uint8.

    The one decoding path of every source, so an entry decodes to the same pixels as the file
    it was made from.

    Args:
        data (bytes): the encoded image.
        name (str): what to name in errors.
        decode_size (Sequence[int], optional): (H, W) for JPEG draft decoding (see
            :func:`decode_jpeg_draft`). Defaults to None (full size, OpenCV).
        error (Callable[[str], Exception]): builds the exception raised for undecodable bytes
            from ``name``. Defaults to ``CorruptImageError``.

    Returns:
        tuple: the (H, W, 3) RGB image and the encoded image's full (H, W).
    """
    if decode_size is not None:
        try:
            decoded = decode_jpeg_draft(data, decode_size)
        except OSError as err:  # truncated or corrupt JPEG data
            raise error(name) from err
        if decoded is not None:
            return decoded
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        # cv2 returns None (no exception) for undecodable bytes.
        raise error(name)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), img.shape[:2]


@TRANSFORMS.register_module()
class LoadPersonImage(BaseTransform):
    """Load ``img_path`` into ``img`` and, when present, ``bg_img_path`` into ``bg_img``.

    Both are RGB uint8 arrays (H, W, 3), unlike mmcv's ``LoadImageFromFile`` (BGR): every SAIP
    view is built from RGB images. Adds ``img_shape``/``ori_shape`` (and ``bg_img_shape``).
    A missing file raises FileNotFoundError, an undecodable one ``CorruptImageError`` (a
    ValueError); both name the file. ``PersonImageDataset(skip_corrupt=True)`` skips the latter.
    Entries of LMDB and shard sources come as bytes (``img_bytes``, ``bg_img_bytes``) and are
    decoded by the same code (:func:`decode_image`); undecodable ones raise
    ``CorruptEntryError`` (a ``CorruptImageError``) naming ``<container>[<key>]``.

    Args:
        backend_args (dict, optional): ``mmengine.fileio`` backend arguments.
            Defaults to None (local disk).
        decode_size (Sequence[int], optional): (H, W): decode JPEGs in draft mode at the
            smallest DCT scale (1/2, 1/4, 1/8) whose size still reaches it, which is much
            faster for files far larger than needed; ``ori_shape`` (``bg_ori_shape``) then keeps
            the file's full size. Defaults to None (full-size decoding).
        with_background (bool): load ``bg_img_path`` too. False for pipelines that never read
            a background (MAE): ``PersonImageDataset`` always names one, and decoding it would
            cost a second image per sample for nothing. Defaults to True.
    """

    def __init__(self, backend_args: Optional[dict] = None,
                 decode_size: Optional[Sequence[int]] = None,
                 with_background: bool = True) -> None:
        self.backend_args = backend_args
        self.with_background = with_background
        if decode_size is not None and (len(decode_size) != 2 or min(decode_size) <= 0):
            raise ValueError(f'LoadPersonImage: `decode_size` must be (H, W) > 0 or None, '
                             f'got {decode_size}')
        self.decode_size = None if decode_size is None else tuple(int(v) for v in decode_size)

    def transform(self, results: dict) -> dict:
        """Load the images named in ``results``.

        Args:
            results (dict): holds ``img_path`` and optionally ``bg_img_path``. An
                ``img_bytes`` (``bg_img_bytes``), put there by a keyed source of
                ``PersonImageDataset`` (LMDB, shards), is decoded instead of reading the path,
                which then only names the entry; the bytes are dropped once decoded.

        Returns:
            dict: ``results`` with ``img`` (and ``bg_img``) added.
        """
        if 'img_path' not in results:
            raise KeyError('LoadPersonImage: `img_path` is missing from the data info')
        img, full_hw = self._load(results, 'img')
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = full_hw
        if not self.with_background:
            results.pop('bg_img_bytes', None)
        elif results.get('bg_img_path') is not None:
            bg_img, bg_full_hw = self._load(results, 'bg_img')
            results['bg_img'] = bg_img
            results['bg_img_shape'] = bg_img.shape[:2]
            results['bg_ori_shape'] = bg_full_hw
        return results

    def _load(self, results: dict, prefix: str) -> Tuple[np.ndarray, Tuple[int, int]]:
        """``<prefix>_bytes`` decoded when present, else the file at ``<prefix>_path``."""
        data = results.pop(f'{prefix}_bytes', None)
        if data is not None:
            return decode_image(data, results[f'{prefix}_path'], self.decode_size,
                                CorruptEntryError)
        return _load(results[f'{prefix}_path'], self.backend_args, self.decode_size)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(backend_args={self.backend_args}, '
                f'decode_size={self.decode_size}, with_background={self.with_background})')
