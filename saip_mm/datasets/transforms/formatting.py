"""Packing of the SAIP views into the model's input format."""
from typing import Sequence

import torch
from mmcv.transforms import BaseTransform

from mmpretrain.registry import TRANSFORMS
from mmpretrain.structures import DataSample
from .augmentation import require_key

SAIP_VIEW_KEYS = ('g1', 'g2', 'locals', 'region', 'reference', 'instance_mask', 'roi_mask')


@TRANSFORMS.register_module()
class PackSAIPInputs(BaseTransform):
    """Pack the views into ``inputs`` (a dict of tensors) and the metadata into a DataSample.

    Output: ``{'inputs': {key: tensor for key in input_keys}, 'data_samples': DataSample}``.
    The pipeline drops everything else (the decoded images), so workers send only tensors.

    Args:
        input_keys (Sequence[str]): views to pack; a missing one raises a KeyError naming it.
            Defaults to ('g1', 'g2', 'locals', 'region', 'reference', 'instance_mask',
            'roi_mask'), all of the SAIP reference recipe.
        meta_keys (Sequence[str]): results copied into the DataSample's metainfo when present.
            Defaults to ('img_path', 'bg_img_path', 'instance_box', 'roi_box',
            'region_interpolation'); the last lets ``SAIP`` check the region view's resize mode.
    """

    def __init__(self,
                 input_keys: Sequence[str] = SAIP_VIEW_KEYS,
                 meta_keys: Sequence[str] = ('img_path', 'bg_img_path', 'instance_box',
                                             'roi_box', 'region_interpolation')) -> None:
        self.input_keys = tuple(input_keys)
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack ``results``.

        Args:
            results (dict): the pipeline's results holding every ``input_keys`` tensor.

        Returns:
            dict: ``inputs`` and ``data_samples``.
        """
        inputs = {}
        for key in self.input_keys:
            value = require_key(results, key, type(self).__name__)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f'PackSAIPInputs: `{key}` must be a tensor, got {type(value)}')
            inputs[key] = value
        data_sample = DataSample()
        data_sample.set_metainfo({key: results[key] for key in self.meta_keys if key in results})
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(input_keys={self.input_keys}, meta_keys={self.meta_keys})'
