"""Batching of the SAIP views on the model's device."""
import math
from typing import Mapping, Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mmpretrain.registry import MODELS
from ..datasets.transforms.formatting import SAIP_VIEW_KEYS  # noqa: F401  (one definition)


def check_mean_std(field: str, mean: Optional[Sequence[float]],
                   std: Optional[Sequence[float]]) -> None:
    """Refuse a normalisation that cannot give finite images, naming the config field.

    A std of 0 divides by zero: every image becomes inf/NaN, and a run would validate on
    non-finite features instead of stopping.

    Args:
        field (str): the config path of the owner, e.g. ``'model.data_preprocessor'``.
        mean (Sequence[float], optional): per-channel means (None: not given, not checked).
        std (Sequence[float], optional): per-channel stds (None: not checked).

    Raises:
        ValueError: a mean or std value is not a finite number, or a std is <= 0.
    """
    for name, values in (('mean', mean), ('std', std)):
        if values is None:
            continue
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f'{field}.{name} must be a sequence of numbers, got '
                             f'{values!r}') from None
        if not numbers or not all(math.isfinite(v) for v in numbers) or (
                name == 'std' and any(v <= 0 for v in numbers)):
            need = 'finite numbers > 0' if name == 'std' else 'finite numbers'
            raise ValueError(f'{field}.{name} must be {need} (images are normalised as '
                             f'(x - mean) / std), got {list(values)}; ImageNet\'s, on 0-255 '
                             f'RGB values, are mean (123.675, 116.28, 103.53), std (58.395, '
                             f'57.12, 57.375)')


@MODELS.register_module()
class SAIPDataPreprocessor(BaseDataPreprocessor):
    """Stack the per-sample SAIP views into float batches on the model's device.

    It does **not** normalise: the pipeline already did, because the multi-person reference is
    blended from normalised tensors (``0.7 * person + 0.3 * background``), which a later
    normalisation could not reproduce. Accepts the batch of either ``pseudo_collate`` (inputs as
    a dict of per-sample lists, or a list of per-sample dicts) or ``default_collate`` (a dict of
    stacked tensors). Returns ``dict(inputs=dict(key=tensor), data_samples=list)``, with
    ``g1``/``g2`` (B, 3, 256, 128), ``locals`` (B, 7, 3, 128, 64), ``region`` (B, 3, 128, 64),
    ``reference`` (B, 3, 224, 224), ``instance_mask``/``roi_mask`` (B, 224, 224) for the
    reference recipe. A missing view raises a KeyError naming it.

    Plain image batches (online evaluation: ``PackInputs`` gives one (3, H, W) uint8 BGR tensor
    per image) are stacked, turned to RGB and normalised with ``mean``/``std``, as mmpretrain's
    ``ClsDataPreprocessor`` does; ``inputs`` is then a (B, 3, H, W) float tensor.

    Args:
        view_keys (Sequence[str]): views to batch. Defaults to ('g1', 'g2', 'locals', 'region',
            'reference', 'instance_mask', 'roi_mask'), all of the SAIP reference recipe.
        mean (Sequence[float]): RGB mean of plain image batches. Defaults to ImageNet's
            (123.675, 116.28, 103.53), the pipeline's.
        std (Sequence[float]): RGB std of plain image batches, finite and > 0 (checked at
            build). Defaults to ImageNet's (58.395, 57.12, 57.375).
        to_rgb (bool): plain images arrive BGR (OpenCV decoding) and are flipped to RGB.
            Defaults to True.
        non_blocking (bool): non-blocking host-to-device copies. Defaults to False.
    """

    def __init__(self,
                 view_keys: Sequence[str] = SAIP_VIEW_KEYS,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 to_rgb: bool = True,
                 non_blocking: Optional[bool] = False) -> None:
        super().__init__(non_blocking=non_blocking)
        check_mean_std('model.data_preprocessor', mean, std)
        self.view_keys = tuple(view_keys)
        self.to_rgb = to_rgb
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1),
                             persistent=False)

    @staticmethod
    def is_image_batch(inputs) -> bool:
        """Whether ``inputs`` are plain images (a tensor, or a list of them), not SAIP views."""
        return isinstance(inputs, torch.Tensor) or (
            isinstance(inputs, (list, tuple)) and len(inputs) > 0
            and isinstance(inputs[0], torch.Tensor))

    def image_batch(self, data: dict) -> dict:
        """Stack, flip to RGB and normalise a batch of plain (3, H, W) images."""
        images = data['inputs']
        if not isinstance(images, torch.Tensor):
            shapes = {tuple(img.shape) for img in images}
            if len(shapes) != 1:
                raise ValueError(f'{type(self).__name__}: evaluation images of different sizes '
                                 f'{sorted(shapes)}; resize them to one size in the pipeline')
            images = torch.stack(list(images))
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'{type(self).__name__}: evaluation images must be (B, 3, H, W), '
                             f'got {tuple(images.shape)}')
        images = self.cast_data(images).float()
        if self.to_rgb:
            images = images.flip(1)
        images = (images - self.mean) / self.std
        return dict(inputs=images, data_samples=self.cast_data(data.get('data_samples')))

    @staticmethod
    def _stack(inputs, key: str) -> torch.Tensor:
        """One view of every sample as a (B, ...) tensor."""
        if isinstance(inputs, Mapping):  # default_collate / pseudo_collate of dict inputs
            if key not in inputs:
                raise KeyError(f'SAIPDataPreprocessor: view `{key}` is missing from the batch '
                               f'inputs (has {sorted(inputs)})')
            value = inputs[key]
            return value if isinstance(value, torch.Tensor) else torch.stack(list(value))
        # A list of per-sample dicts.
        for i, sample in enumerate(inputs):
            if key not in sample:
                raise KeyError(f'SAIPDataPreprocessor: view `{key}` is missing from the inputs '
                               f'of sample {i} (has {sorted(sample)})')
        return torch.stack([sample[key] for sample in inputs])

    def forward(self, data: dict, training: bool = False) -> dict:
        """Batch the views and move them to the device.

        Args:
            data (dict): the collated batch, with ``inputs`` and optionally ``data_samples``.
            training (bool): unused; the views are augmented in the pipeline. Defaults to False.

        Returns:
            dict: ``inputs`` (a dict of float tensors) and ``data_samples`` (list or None).
        """
        if 'inputs' not in data:
            raise KeyError(f'SAIPDataPreprocessor: the batch has no `inputs` (keys: '
                           f'{sorted(data)})')
        if self.is_image_batch(data['inputs']):
            return self.image_batch(data)
        # Stack on the host, then one copy per view to the device.
        inputs = {key: self._stack(data['inputs'], key).float() for key in self.view_keys}
        return dict(inputs=self.cast_data(inputs),
                    data_samples=self.cast_data(data.get('data_samples')))
