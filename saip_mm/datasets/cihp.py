"""CIHP (Crowd Instance-level Human Parsing) for mmseg 1.x, which ships no class for it."""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


# Registered in mmseg's DATASETS (scope 'mmseg'): mmseg configs (default_scope='mmseg') name it
# `CIHPDataset`; configs of other libraries would write `mmseg.CIHPDataset`.
@DATASETS.register_module()
class CIHPDataset(BaseSegDataset):
    """CIHP semantic part parsing: 20 classes (background + 19 parts), as released.

    Gong et al., "Instance-level Human Parsing via Part Grouping Network", ECCV 2018. The
    labels are LIP's except that index 10 is torso skin (LIP: jumpsuits). Maps store class ids
    0-19 directly (0 is background, a scored class), so ``reduce_zero_label`` stays False.

    The released ``instance-level_human_parsing/`` tree is read as is (no conversion)::

        instance-level_human_parsing/          <- data_root
        ├── Training/
        │   ├── Images/0000006.jpg ...
        │   ├── Category_ids/0000006.png ...   <- semantic maps used here
        │   ├── Instance_ids/, Human_ids/ ...  (instance annotations, unused)
        │   └── train_id.txt                   <- ann_file: one image id per line
        └── Validation/
            ├── Images/, Category_ids/ ...
            └── val_id.txt

    Args:
        img_suffix (str): image suffix. Defaults to '.jpg'.
        seg_map_suffix (str): label map suffix. Defaults to '.png'.
        **kwargs: other arguments of ``mmseg.datasets.BaseSegDataset``
            (``data_root``, ``data_prefix=dict(img_path=..., seg_map_path=...)``, ``ann_file``).
    """
    METAINFO = dict(
        classes=('Background', 'Hat', 'Hair', 'Glove', 'Sunglasses', 'UpperClothes', 'Dress',
                 'Coat', 'Socks', 'Pants', 'Torso-skin', 'Scarf', 'Skirt', 'Face', 'Left-arm',
                 'Right-arm', 'Left-leg', 'Right-leg', 'Left-shoe', 'Right-shoe'),
        # The colours of the CIHP/LIP visualisations (RGB).
        palette=[[0, 0, 0], [128, 0, 0], [255, 0, 0], [0, 85, 0], [170, 0, 51], [255, 85, 0],
                 [0, 0, 85], [0, 119, 221], [85, 85, 0], [0, 85, 85], [85, 51, 0],
                 [52, 86, 128], [0, 128, 0], [0, 0, 255], [51, 170, 221], [0, 255, 255],
                 [85, 255, 170], [170, 255, 85], [255, 255, 0], [255, 170, 0]])

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '.png', **kwargs) -> None:
        if kwargs.pop('reduce_zero_label', False):
            raise ValueError('CIHPDataset: reduce_zero_label must be False, background (0) is '
                             'one of the 20 scored classes')
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=False, **kwargs)
