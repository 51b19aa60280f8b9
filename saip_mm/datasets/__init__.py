"""SAIP datasets and data pipeline, registered into mmpretrain's registries.

``CIHPDataset`` (mmseg) is imported by the parsing configs (``saip_mm.datasets.cihp``) so that
``import saip_mm`` does not import mmseg.
"""
from .attributes import PA100KDataset, PedestrianAttributeDataset, PETADataset
from .person_image_dataset import IMG_EXTENSIONS, PersonImageDataset, list_images
from .reid import Market1501Dataset, MSMT17Dataset, ReIDDataset
from .samplers import IdentitySampler
from .transforms import (LoadPersonImage, MultiPersonReference, PackSAIPInputs,
                         PersonGlobalViews, PersonLocalViews, RegionView)

__all__ = [
    'IMG_EXTENSIONS', 'PersonImageDataset', 'list_images', 'LoadPersonImage',
    'PersonGlobalViews', 'PersonLocalViews', 'RegionView', 'MultiPersonReference',
    'PackSAIPInputs', 'PA100KDataset', 'PedestrianAttributeDataset', 'PETADataset',
    'Market1501Dataset', 'MSMT17Dataset', 'ReIDDataset', 'IdentitySampler'
]
from .text_person import (CUHKPEDESDataset, ICFGPEDESDataset, RSTPReidDataset,  # noqa: E402
                          TextPersonDataset)

__all__ += ['CUHKPEDESDataset', 'ICFGPEDESDataset', 'RSTPReidDataset', 'TextPersonDataset']
