"""SAIP datasets and data pipeline, registered into mmpretrain's DATASETS and TRANSFORMS."""
from .person_image_dataset import IMG_EXTENSIONS, PersonImageDataset, list_images
from .transforms import (LoadPersonImage, MultiPersonReference, PackSAIPInputs,
                         PersonGlobalViews, PersonLocalViews, RegionView)

__all__ = [
    'IMG_EXTENSIONS', 'PersonImageDataset', 'list_images', 'LoadPersonImage',
    'PersonGlobalViews', 'PersonLocalViews', 'RegionView', 'MultiPersonReference',
    'PackSAIPInputs'
]
