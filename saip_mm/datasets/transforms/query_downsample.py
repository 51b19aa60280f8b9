"""Cross-resolution ReID: query images down-sampled by a factor from their recorded size.

The protocol of the cross-resolution person re-identification benchmarks (MLR-Market-1501,
MLR-CUHK03): each query image is shrunk by an integer factor ``r`` from the size it was
recorded at, with area interpolation, then resized to the model's input like every image;
the gallery stays as recorded. A *setting* is one way of choosing the queries' factors:

- an integer ``r`` (``1``, ``2``, ``3``, ``4`` ...): every query at ``r``; named ``'r<r>'``;
- ``'mixed'``: each query its own factor, drawn once from ``mixed_factors`` (default
  ``(2, 3, 4)``) with ``numpy.random.default_rng(seed)`` in the order of the query list, so
  the same seed gives the same factors on every run, online and offline.

``r = 1`` is always evaluated, first: it is today's protocol and the unsuffixed metric names
(``reid/mAP``, what ``save_best`` keeps) report it.

The online evaluation (:class:`saip_mm.datasets.ReIDDataset` with ``query_downsample``, this
module's :class:`QueryDownsample` in the val pipeline, :class:`saip_mm.evaluation.ReIDMetric`)
and ``tools/analysis_tools/reid_frozen_eval.py --query-downsample`` share these functions, so
they shrink the same queries by the same factors to the same sizes.
"""
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform

from mmpretrain.registry import TRANSFORMS

MIXED = 'mixed'
#: The factors of the mixed setting (MLR-Market-1501's down-sampling rates).
MIXED_FACTORS = (2, 3, 4)
#: Every setting of the cross-resolution protocol, in report order.
ALL_SETTINGS = (1, 2, 3, 4, MIXED)

Setting = Union[int, str]


def _check_factor(factor, what: str) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f'{what}: a down-sampling factor is an integer >= 1, got {factor!r}')
    return int(factor)


def downsampled_size(height: int, width: int, factor: int) -> Tuple[int, int]:
    """The (height, width) of an image of ``height`` x ``width`` shrunk by ``factor``.

    Each side is divided by ``factor`` and rounded half up, at least 1 pixel (mmcv's rounding
    of a rescaled size, ``int(x * scale + 0.5)``, in integer arithmetic): 128 x 64 gives
    64 x 32 at r = 2, 43 x 21 at r = 3 (42.67, 21.33), 32 x 16 at r = 4; 108 x 54 gives
    27 x 14 at r = 4 (13.5 rounds up).

    Args:
        height (int): recorded height.
        width (int): recorded width.
        factor (int): down-sampling factor r >= 1.

    Returns:
        tuple[int, int]: (height, width) after down-sampling.
    """
    factor = _check_factor(factor, 'downsampled_size')
    return (max(1, (2 * height + factor) // (2 * factor)),
            max(1, (2 * width + factor) // (2 * factor)))


def downsample_image(img: np.ndarray, factor: int) -> np.ndarray:
    """Shrink an (H, W[, C]) image by ``factor`` with area interpolation (``cv2.INTER_AREA``).

    ``factor`` 1 returns ``img`` itself (no resampling: the r = 1 setting is today's protocol
    pixel for pixel). The output size is :func:`downsampled_size`.
    """
    factor = _check_factor(factor, 'downsample_image')
    if factor == 1:
        return img
    height, width = downsampled_size(img.shape[0], img.shape[1], factor)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def parse_query_settings(settings: Sequence[Setting]) -> List[Setting]:
    """Validate a list of settings; ``1`` first (added when missing), duplicates dropped.

    Args:
        settings (Sequence[int | str]): integers >= 1 (or their strings, as a command line
            gives them) and ``'mixed'``.

    Returns:
        list[int | str]: e.g. ``[1, 2, 3, 4, 'mixed']``.
    """
    if isinstance(settings, (str, int)):
        settings = [settings]
    out: List[Setting] = [1]
    for setting in settings:
        if isinstance(setting, str):
            setting = setting.strip().lower()
            if setting != MIXED:
                if not setting.isdigit():
                    raise ValueError(f'query_downsample: a setting is a factor (1, 2, 3, 4 ...) '
                                     f'or {MIXED!r}, got {setting!r}')
                setting = int(setting)
        if setting != MIXED:
            setting = _check_factor(setting, 'query_downsample')
        if setting not in out:
            out.append(setting)
    return out


def setting_name(setting: Setting) -> str:
    """``'r2'`` for factor 2, ``'mixed'`` for the mixed setting."""
    return MIXED if setting == MIXED else f'r{int(setting)}'


def mixed_query_factors(num_queries: int, factors: Sequence[int] = MIXED_FACTORS,
                        seed: int = 0) -> List[int]:
    """Each query's factor in the mixed setting: ``numpy.random.default_rng(seed)`` draws one
    of ``factors`` per query, uniformly, in query order (same seed, same factors)."""
    factors = [_check_factor(f, 'mixed_factors') for f in factors]
    if not factors:
        raise ValueError('mixed_factors: at least one factor')
    rng = np.random.default_rng(seed)
    return [factors[i] for i in rng.integers(0, len(factors), size=num_queries)]


def query_factors(setting: Setting, num_queries: int, mixed_factors: Sequence[int] = MIXED_FACTORS,
                  seed: int = 0) -> List[int]:
    """Every query's factor under one setting (``r`` for all, or the seeded mixed draw)."""
    if setting == MIXED:
        return mixed_query_factors(num_queries, mixed_factors, seed)
    return [_check_factor(setting, 'query_downsample')] * num_queries


@TRANSFORMS.register_module()
class QueryDownsample(BaseTransform):
    """Shrink a query image by a factor from its recorded size (area interpolation).

    Place it right after the image is loaded and before the ``Resize`` to the model's input, so
    the query is first brought to the low resolution, then resized like every image (the
    cross-resolution ReID protocol; see this module's docstring). Only samples whose ``split``
    is ``'query'`` are changed: the gallery stays as recorded. The factor comes from the
    sample's ``downsample_factor`` (written by the ReID datasets' ``query_downsample``, which
    emit each query once per setting), or is fixed by ``factor``; a query with neither is left
    as it is, so the transform is a no-op in a pipeline whose dataset asks for nothing.

    Required keys: ``img``, ``split``; optional ``downsample_factor``.
    Modified keys: ``img``, ``img_shape``. Added keys: ``downsample_factor`` (queries).

    Args:
        factor (int, optional): one factor for every query. Defaults to None (each sample's
            ``downsample_factor``, 1 when absent).
    """

    def __init__(self, factor: Optional[int] = None) -> None:
        self.factor = None if factor is None else _check_factor(factor, 'QueryDownsample')

    def transform(self, results: dict) -> dict:
        if 'split' not in results:
            raise KeyError(f'QueryDownsample needs the sample\'s `split` (query or gallery), as '
                           f'the ReID datasets give it; {results.get("img_path", "a sample")} '
                           f'has none')
        if results['split'] != 'query':
            return results
        factor = results.get('downsample_factor')
        if self.factor is not None:
            if factor is not None and factor != self.factor:
                raise ValueError(f'QueryDownsample(factor={self.factor}), but the dataset asks '
                                 f'for factor {factor} for {results.get("img_path")} (its '
                                 f'query_downsample); set one of the two')
            factor = self.factor
        factor = 1 if factor is None else _check_factor(factor, 'downsample_factor')
        results['img'] = downsample_image(results['img'], factor)
        results['img_shape'] = results['img'].shape[:2]
        results['downsample_factor'] = factor
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(factor={self.factor})'
