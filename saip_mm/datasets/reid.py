"""Person re-identification datasets: Market-1501 and MSMT17 in their released layouts."""
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.dataset import BaseDataset

from mmpretrain.registry import DATASETS
from .transforms.query_downsample import (MIXED_FACTORS, parse_query_settings, query_factors,
                                          setting_name)

SPLITS = ('train', 'query', 'gallery', 'test')


class ReIDDataset(BaseDataset):
    """Base class of the ReID datasets: images with an identity (``pid``) and a camera.

    Each data info holds ``img_path``, ``pid`` and ``camid`` (as in the dataset's file names,
    not renumbered) and ``split`` (``'train'``, ``'query'`` or ``'gallery'``). Training samples
    also get ``gt_label``, the identity's index among the sorted training identities
    (0 … num_identities - 1), the class an identity classifier learns. ``split='test'`` lists
    the query images, then the gallery images, for :class:`saip_mm.evaluation.ReIDMetric`;
    keep ``pid``, ``camid`` and ``split`` in ``PackInputs(meta_keys=...)``.

    Cross-resolution evaluation (``query_downsample``, e.g. ``(1, 2, 3, 4, 'mixed')``): the
    data list is today's (the query images, then the gallery images), followed by the query
    images once more for every other setting. Every query entry carries ``query_setting``
    (``'r1'``, ``'r2'`` ... ``'mixed'``) and ``downsample_factor`` (its r), which
    :class:`~saip_mm.datasets.transforms.QueryDownsample` applies in the pipeline and by which
    :class:`~saip_mm.evaluation.ReIDMetric` groups the queries: one validation pass embeds the
    gallery once and every query once per setting, and reports each setting. List
    ``query_setting`` in ``PackInputs(meta_keys=...)``. Setting names and the mixed draw are
    those of :mod:`saip_mm.datasets.transforms.query_downsample`; ``r = 1`` always comes first.
    The dataset's metainfo names the settings (``query_settings``).

    Subclasses implement :meth:`load_split`.

    Args:
        data_root (str): the dataset folder.
        split (str): ``'train'``, ``'query'``, ``'gallery'`` or ``'test'`` (query + gallery).
            Defaults to 'train'.
        data_prefix (dict, optional): folders of the splits relative to ``data_root``.
            Defaults to the dataset's released layout.
        pipeline (Sequence): data pipeline. Defaults to ().
        test_mode (bool, optional): defaults to True unless ``split='train'``.
        query_downsample (Sequence[int | str], optional): cross-resolution settings of the
            queries (factors and ``'mixed'``); only with ``split='test'`` or ``'query'``.
            Defaults to None (the queries as recorded, no extra entries).
        mixed_factors (Sequence[int]): factors of the mixed setting. Defaults to (2, 3, 4)
            (MLR-Market-1501's).
        mixed_seed (int): seed of the mixed setting's draw. Defaults to 0.
        **kwargs: other arguments of ``mmengine.dataset.BaseDataset`` (``indices``,
            ``serialize_data``, ``lazy_init`` ...).
    """
    DEFAULT_PREFIX: Dict[str, str] = {}

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 data_prefix: Optional[Dict[str, str]] = None,
                 pipeline: Sequence = (),
                 test_mode: Optional[bool] = None,
                 query_downsample: Optional[Sequence[Union[int, str]]] = None,
                 mixed_factors: Sequence[int] = MIXED_FACTORS,
                 mixed_seed: int = 0,
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if query_downsample is not None and split not in ('test', 'query'):
            raise ValueError(f"{type(self).__name__}: query_downsample needs query images "
                             f"(split='test' or 'query'), got split={split!r}")
        self.query_downsample = None if query_downsample is None else \
            parse_query_settings(query_downsample)
        self.mixed_factors = tuple(mixed_factors)
        self.mixed_seed = mixed_seed
        if not data_root or not osp.isdir(data_root):
            raise FileNotFoundError(
                f'{type(self).__name__}: data_root {data_root!r} is not a folder. Set the '
                f"dataset's data_root in the config (the SAIP pretraining configs' online "
                f'evaluation: val_dataloader.dataset.data_root=DIR, or val_cfg=None '
                f'val_dataloader=None val_evaluator=None default_hooks.checkpoint.save_best=None '
                f'to switch it off)')
        self.split = split
        prefix = dict(self.DEFAULT_PREFIX)
        prefix.update(data_prefix or {})
        super().__init__(
            data_root=data_root,
            data_prefix=prefix,
            pipeline=list(pipeline),
            test_mode=split != 'train' if test_mode is None else test_mode,
            **kwargs)

    def load_split(self, split: str) -> List[Tuple[str, int, int]]:
        """Return ``(img_path, pid, camid)`` of every image of ``split`` (train/query/gallery)."""
        raise NotImplementedError

    def load_data_list(self) -> List[dict]:
        if self.split == 'test':
            items = [(*item, 'query') for item in self.load_split('query')]
            items += [(*item, 'gallery') for item in self.load_split('gallery')]
        else:
            items = [(*item, self.split) for item in self.load_split(self.split)]
        if not items:
            raise ValueError(f'{type(self).__name__}: no images in split {self.split!r} under '
                             f'{self.data_root}')
        pids = sorted({pid for _, pid, _, _ in items})
        label_of = {pid: i for i, pid in enumerate(pids)}
        data_list = []
        for img_path, pid, camid, split in items:
            info = dict(img_path=img_path, pid=pid, camid=camid, split=split)
            if split == 'train':
                info['gt_label'] = label_of[pid]
            data_list.append(info)
        self._metainfo.update(
            num_identities=len(pids), num_cameras=len({c for _, _, c, _ in items}))
        if self.query_downsample is not None:
            data_list = self._add_query_settings(data_list)
        return data_list

    def _add_query_settings(self, data_list: List[dict]) -> List[dict]:
        """Mark the queries as the first setting (r = 1) and append them once per other
        setting; the first ``len(data_list)`` entries stay today's, in today's order."""
        queries = [info for info in data_list if info['split'] == 'query']
        extra = []
        for setting in self.query_downsample:
            factors = query_factors(setting, len(queries), self.mixed_factors, self.mixed_seed)
            name = setting_name(setting)
            for info, factor in zip(queries, factors):
                if setting == 1:
                    info.update(query_setting=name, downsample_factor=factor)
                else:
                    extra.append(dict(info, query_setting=name, downsample_factor=factor))
        self._metainfo.update(
            query_settings=tuple(setting_name(s) for s in self.query_downsample))
        return data_list + extra

    def get_pids(self) -> List[int]:
        """Identity of every sample, in order (used by the identity sampler)."""
        return [self.get_data_info(i)['pid'] for i in range(len(self))]


# Market-1501 names: <pid>_c<camera>s<sequence>_<frame>_<box>.jpg, pid -1 = junk, 0 = distractor
MARKET_NAME = re.compile(r'^(-1|\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.jpg$')


@DATASETS.register_module()
class Market1501Dataset(ReIDDataset):
    """Market-1501 (Zheng et al., 2015): 751 training and 750 test identities, 6 cameras.

    Layout (as released)::

        data_root/
            bounding_box_train/   0002_c1s1_000451_03.jpg ...  (12,936 images)
            query/                0001_c1s1_001051_00.jpg ...  (3,368 images)
            bounding_box_test/    0000_c1s1_000151_01.jpg, -1_c1s1_000401_03.jpg ... (19,732)

    The identity and the camera come from the file name. Junk images (identity ``-1``) are
    dropped unless ``keep_junk=True``: the protocol ignores them, so they would only cost
    time (:func:`~saip_mm.evaluation.reid_metrics` also ignores ``-1`` when they are kept).
    Distractors (identity ``0``) stay in the gallery, as negatives. Other files
    (``Thumbs.db``) are skipped; a ``.jpg`` that does not follow the naming is an error.

    Args:
        keep_junk (bool): keep identity ``-1`` images. Defaults to False.
        **kwargs: see :class:`ReIDDataset`.
    """
    DEFAULT_PREFIX = dict(train='bounding_box_train', query='query', gallery='bounding_box_test')
    METAINFO = dict(dataset_name='Market-1501')

    def __init__(self, *args, keep_junk: bool = False, **kwargs) -> None:
        self.keep_junk = keep_junk
        super().__init__(*args, **kwargs)

    def load_split(self, split: str) -> List[Tuple[str, int, int]]:
        folder = self.data_prefix[split]
        if not osp.isdir(folder):
            raise FileNotFoundError(f'Market-1501 {split} folder not found: {folder}')
        items = []
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith('.jpg'):
                continue
            match = MARKET_NAME.match(name)
            if match is None:
                raise ValueError(f'{osp.join(folder, name)}: not a Market-1501 image name '
                                 f'(<pid>_c<cam>s<seq>_<frame>_<box>.jpg)')
            pid, camid = int(match.group(1)), int(match.group(2))
            if pid == -1 and not self.keep_junk:
                continue
            items.append((osp.join(folder, name), pid, camid))
        return items


@DATASETS.register_module()
class MSMT17Dataset(ReIDDataset):
    """MSMT17 (Wei et al., 2018), V1 layout: 1,041 training and 3,060 test identities, 15 cameras.

    Layout (as released, ``MSMT17_V1/``)::

        data_root/
            train/   0000/0000_000_01_0303morning_0015_0.jpg ...
            test/    0000/0000_000_01_0303morning_0008_0.jpg ...
            list_train.txt  list_val.txt  list_query.txt  list_gallery.txt

    Each list line is ``<path relative to train/ or test/> <pid>``; the camera is the third
    ``_``-separated field of the file name (``01`` … ``15``). The official training set is
    ``list_train.txt`` + ``list_val.txt`` (32,621 images), as used by published results; pass
    ``with_val=False`` to train on ``list_train.txt`` only (30,248).

    Args:
        with_val (bool): add ``list_val.txt`` to the training split. Defaults to True.
        **kwargs: see :class:`ReIDDataset`. ``data_prefix`` keys: ``train``/``test``
            (image folders) and ``train_list``, ``val_list``, ``query_list``,
            ``gallery_list``.
    """
    DEFAULT_PREFIX = dict(train='train', test='test', train_list='list_train.txt',
                          val_list='list_val.txt', query_list='list_query.txt',
                          gallery_list='list_gallery.txt')
    METAINFO = dict(dataset_name='MSMT17')

    def __init__(self, *args, with_val: bool = True, **kwargs) -> None:
        self.with_val = with_val
        super().__init__(*args, **kwargs)

    def _read_list(self, list_file: str, folder: str) -> List[Tuple[str, int, int]]:
        if not osp.isfile(list_file):
            raise FileNotFoundError(f'MSMT17 list file not found: {list_file}')
        items = []
        with open(list_file, encoding='utf-8') as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                fields = line.split()
                name_parts = osp.basename(fields[0]).split('_')
                if len(fields) != 2 or len(name_parts) < 3 or not fields[1].lstrip('-').isdigit() \
                        or not name_parts[2].isdigit():
                    raise ValueError(f'{list_file}:{line_no}: expected "<pid>/<pid>_<idx>_<cam>_'
                                     f'....jpg <pid>", got {line.strip()!r}')
                items.append((osp.join(folder, fields[0]), int(fields[1]), int(name_parts[2])))
        return items

    def load_split(self, split: str) -> List[Tuple[str, int, int]]:
        prefix = self.data_prefix
        if split == 'train':
            items = self._read_list(prefix['train_list'], prefix['train'])
            if self.with_val:
                items += self._read_list(prefix['val_list'], prefix['train'])
            return items
        return self._read_list(prefix[f'{split}_list'], prefix['test'])
