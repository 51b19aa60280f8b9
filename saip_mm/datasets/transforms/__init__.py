"""The SAIP data pipeline: one transform per view-building step."""
from .augmentation import (IMAGENET_MEAN, IMAGENET_STD, ViewAugmentation, person_crop_ratio,
                           sample_crop_box)
from .batch_inputs import PackSAIPImages, ResizeForBatchViews
from .formatting import PackSAIPInputs
from .loading import LoadPersonImage, load_rgb_image
from .query_downsample import QueryDownsample, downsample_image, downsampled_size
from .reference import MultiPersonReference, box_mask
from .views import PersonGlobalViews, PersonLocalViews, RegionView

__all__ = [
    'IMAGENET_MEAN', 'IMAGENET_STD', 'ViewAugmentation', 'person_crop_ratio', 'sample_crop_box',
    'LoadPersonImage', 'load_rgb_image', 'PersonGlobalViews', 'PersonLocalViews', 'RegionView',
    'MultiPersonReference', 'box_mask', 'PackSAIPInputs', 'ResizeForBatchViews', 'PackSAIPImages',
    'QueryDownsample', 'downsample_image', 'downsampled_size'
]
