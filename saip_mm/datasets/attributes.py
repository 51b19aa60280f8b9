"""Pedestrian attribute datasets: PA-100K and PETA, from annotations converted out of MATLAB.

Both datasets are released with ``.mat`` annotations; ``tools/dataset_converters/pa100k_to_json.py``
and ``peta_to_json.py`` write one OpenMMLab 2.0 annotation file per split::

    {"metainfo": {"classes": [<attribute names>], "dataset_name": "PA-100K", ...},
     "data_list": [{"img_path": "000001.jpg", "gt_label": [0, 7, 22]}, ...]}

``gt_label`` lists the indices of the attributes present (mmpretrain's multi-label format).
"""
import os.path as osp
from typing import Optional

import numpy as np

from mmpretrain.datasets import MultiLabelDataset
from mmpretrain.registry import DATASETS


class PedestrianAttributeDataset(MultiLabelDataset):
    """A multi-label dataset of pedestrian images, one annotation file per split.

    Args:
        data_root (str): the dataset folder.
        split (str): ``'train'``, ``'val'``, ``'trainval'`` or ``'test'``; the annotation file
            is ``annotations/<split>.json`` unless ``ann_file`` is given. Defaults to 'train'.
        ann_file (str): annotation file, relative to ``data_root``. Defaults to ''.
        data_prefix (str): image folder, relative to ``data_root``. Defaults to the released
            layout of the dataset.
        **kwargs: other arguments of ``mmpretrain.datasets.MultiLabelDataset``.
    """
    DEFAULT_IMG_PREFIX = ''
    SPLITS = ('train', 'val', 'trainval', 'test')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 ann_file: str = '',
                 data_prefix: Optional[str] = None,
                 **kwargs) -> None:
        if not ann_file:
            if split not in self.SPLITS:
                raise ValueError(f'split must be one of {self.SPLITS}, got {split!r}')
            ann_file = osp.join('annotations', f'{split}.json')
        path = ann_file if osp.isabs(ann_file) else osp.join(data_root, ann_file)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{type(self).__name__}: annotation file {path} not found; convert the '
                f'released .mat with tools/dataset_converters/ (see projects/attributes/README.md)')
        self.split = split
        kwargs.setdefault('test_mode', split not in ('train', 'trainval'))
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=self.DEFAULT_IMG_PREFIX if data_prefix is None else data_prefix,
            **kwargs)

    def load_data_list(self):
        data_list = super().load_data_list()
        classes = self.metainfo.get('classes')
        if not classes:
            raise ValueError(f'{self.ann_file}: metainfo has no attribute names ("classes")')
        for info in data_list:
            labels = np.asarray(info['gt_label'], dtype=np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
                raise ValueError(f'{self.ann_file}: {info["img_path"]} has attribute index '
                                 f'outside 0..{len(classes) - 1}: {labels.tolist()}')
        return data_list


@DATASETS.register_module()
class PA100KDataset(PedestrianAttributeDataset):
    """PA-100K (Liu et al., 2017): 100,000 images, 26 attributes, 80k/10k/10k train/val/test.

    Released layout: ``data_root/annotation.mat`` and the images in ``data_root/data/``.
    Convert once: ``python tools/dataset_converters/pa100k_to_json.py data/pa100k``, which
    writes ``data_root/annotations/{train,val,trainval,test}.json``.

    Args:
        **kwargs: see :class:`PedestrianAttributeDataset`; images default to ``data/``.
    """
    DEFAULT_IMG_PREFIX = 'data'
    METAINFO = dict(dataset_name='PA-100K')


@DATASETS.register_module()
class PETADataset(PedestrianAttributeDataset):
    """PETA (Deng et al., 2014): 19,000 images, the 35 commonly used of its 105 attributes.

    Layout of the commonly distributed conversion (``PETA.mat`` + ``images/00001.png`` …
    ``19000.png``, as used by Li et al. 2015 and Jia et al. 2021). Convert once:
    ``python tools/dataset_converters/peta_to_json.py data/peta`` (one of the 5 random
    partitions of ``PETA.mat``, or the zero-shot split of Jia et al. with ``--split-file``),
    which writes ``data_root/annotations/{train,val,trainval,test}.json``.

    Args:
        **kwargs: see :class:`PedestrianAttributeDataset`; images default to ``images/``.
    """
    DEFAULT_IMG_PREFIX = 'images'
    METAINFO = dict(dataset_name='PETA')

