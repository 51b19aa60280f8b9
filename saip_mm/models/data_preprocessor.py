"""Batching of the SAIP views on the model's device."""
from typing import Mapping, Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mmpretrain.registry import MODELS
from ..datasets.transforms.formatting import SAIP_VIEW_KEYS  # noqa: F401  (one definition)


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

    Args:
        view_keys (Sequence[str]): views to batch. Defaults to ('g1', 'g2', 'locals', 'region',
            'reference', 'instance_mask', 'roi_mask'), all of the SAIP reference recipe.
        non_blocking (bool): non-blocking host-to-device copies. Defaults to False.
    """

    def __init__(self,
                 view_keys: Sequence[str] = SAIP_VIEW_KEYS,
                 non_blocking: Optional[bool] = False) -> None:
        super().__init__(non_blocking=non_blocking)
        self.view_keys = tuple(view_keys)

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
        # Stack on the host, then one copy per view to the device.
        inputs = {key: self._stack(data['inputs'], key).float() for key in self.view_keys}
        return dict(inputs=self.cast_data(inputs),
                    data_samples=self.cast_data(data.get('data_samples')))
