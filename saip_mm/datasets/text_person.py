"""Text-based person retrieval datasets: CUHK-PEDES, ICFG-PEDES and RSTPReid, as released.

Each dataset ships one JSON annotation file, a list with one entry per image::

    CUHK-PEDES  reid_raw.json       {"split": "train", "captions": [...], "file_path":
                                     "CUHK01/0363004.png", "processed_tokens": [...], "id": 1}
    ICFG-PEDES  ICFG-PEDES.json     {"split": "test", "captions": [...], "file_path":
                                     "test/0027/0027_010_05_0303morning_0763_0.jpg", "id": 3202}
    RSTPReid    data_captions.json  {"split": "val", "captions": [...], "img_path":
                                     "0000_c14_0031.jpg", "id": 0}

Image paths are relative to ``data_root/imgs/``. ``processed_tokens`` (CUHK-PEDES, ICFG-PEDES) is
ignored: the text encoder tokenizes the raw captions itself.
"""
import json
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.dataset import BaseDataset

from mmpretrain.registry import DATASETS


class TextPersonDataset(BaseDataset):
    """Images of persons with natural-language descriptions, for text → image retrieval.

    ``split`` selects the entries of the annotation file whose ``split`` field equals it:

    - the training split gives **one sample per (image, caption) pair**: ``img_path``,
      ``caption`` (str), ``pid`` (the file's ``id``, not renumbered) and ``gt_label`` (the
      identity's index among the sorted training identities, for the identity loss);
    - any other split gives **one sample per image** with all its captions: ``img_path``,
      ``captions`` (list of str) and ``pid``. The metric
      (:class:`saip_mm.evaluation.TextPersonRetrievalMetric`) ranks every image (the gallery)
      for every caption (the queries) separately; keep ``captions`` and ``pid`` in
      ``PackInputs(meta_keys=...)``.

    Every image named by the selected entries must exist (checked when the list is loaded, with
    ``check_images=True``); a missing one is a ``FileNotFoundError`` naming the image and the
    annotation entry.

    Args:
        data_root (str): the dataset folder (holding the annotation file and ``imgs/``).
        split (str): one of the dataset's released splits (:attr:`SPLITS`). Defaults to 'train'.
        ann_file (str, optional): annotation file relative to ``data_root``. Defaults to the
            released name (:attr:`ANN_FILE`).
        img_prefix (str): image folder relative to ``data_root``. Defaults to 'imgs'.
        check_images (bool): check that every image exists when loading. Defaults to True.
        pipeline (Sequence): data pipeline. Defaults to ().
        test_mode (bool, optional): defaults to True unless ``split`` is the training split.
        **kwargs: other arguments of ``mmengine.dataset.BaseDataset``.
    """
    ANN_FILE: str = ''
    PATH_KEY: str = 'file_path'  # annotation field holding the image path
    SPLITS: Sequence[str] = ('train', 'val', 'test')
    TRAIN_SPLIT = 'train'
    METAINFO: dict = dict(dataset_name='')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 ann_file: Optional[str] = None,
                 img_prefix: str = 'imgs',
                 check_images: bool = True,
                 pipeline: Sequence = (),
                 test_mode: Optional[bool] = None,
                 **kwargs) -> None:
        name = self.METAINFO.get('dataset_name') or type(self).__name__
        if split not in self.SPLITS:
            raise ValueError(f'{name}: unknown split {split!r}; the released splits are '
                             f'{", ".join(self.SPLITS)}')
        if not data_root or not osp.isdir(data_root):
            raise FileNotFoundError(f'{name}: data_root {data_root!r} is not a folder')
        ann_file = ann_file or self.ANN_FILE
        if not osp.isfile(osp.join(data_root, ann_file)):
            raise FileNotFoundError(f'{name}: annotation file {osp.join(data_root, ann_file)} '
                                    f'not found (released name: {self.ANN_FILE})')
        self.split = split
        self.check_images = check_images
        super().__init__(
            data_root=data_root,
            ann_file=ann_file,
            data_prefix=dict(img_path=img_prefix),
            pipeline=list(pipeline),
            test_mode=split != self.TRAIN_SPLIT if test_mode is None else test_mode,
            **kwargs)

    def _read_entries(self) -> List[dict]:
        """The annotation file's entries, with every field this class uses checked."""
        with open(self.ann_file, encoding='utf-8') as f:
            try:
                entries = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f'{self.ann_file}: not valid JSON ({e})') from e
        if not isinstance(entries, list):
            raise ValueError(f'{self.ann_file}: expected a list of entries, got a '
                             f'{type(entries).__name__}')
        for i, entry in enumerate(entries):
            where = f'{self.ann_file}: entry {i}'
            if not isinstance(entry, dict):
                raise ValueError(f'{where} is a {type(entry).__name__}, not an object')
            for key in ('split', 'captions', self.PATH_KEY, 'id'):
                if key not in entry:
                    raise ValueError(f'{where} has no {key!r} field (has {sorted(entry)})')
            if entry['split'] not in self.SPLITS:
                raise ValueError(f'{where} ({entry[self.PATH_KEY]}): unknown split '
                                 f'{entry["split"]!r}; expected one of {", ".join(self.SPLITS)}')
            captions = entry['captions']
            if not isinstance(captions, list) or not captions or not all(
                    isinstance(c, str) and c.strip() for c in captions):
                raise ValueError(f'{where} ({entry[self.PATH_KEY]}): "captions" must be a '
                                 f'non-empty list of non-empty strings, got {captions!r}')
            if isinstance(entry['id'], bool) or not isinstance(entry['id'], int):
                raise ValueError(f'{where} ({entry[self.PATH_KEY]}): "id" must be an integer, '
                                 f'got {entry["id"]!r}')
        return entries

    def load_data_list(self) -> List[dict]:
        entries = [e for e in self._read_entries() if e['split'] == self.split]
        if not entries:
            raise ValueError(f'{self.ann_file}: no entry has split {self.split!r}')
        img_root = self.data_prefix['img_path']
        data_list: List[dict] = []
        pids = sorted({e['id'] for e in entries})
        label_of = {pid: i for i, pid in enumerate(pids)}
        for entry in entries:
            img_path = osp.join(img_root, entry[self.PATH_KEY])
            if self.check_images and not osp.isfile(img_path):
                raise FileNotFoundError(
                    f'{self.ann_file}: image {img_path} not found (the {self.split!r} entry with '
                    f'{self.PATH_KEY}={entry[self.PATH_KEY]!r}, id {entry["id"]})')
            if self.split == self.TRAIN_SPLIT:
                for caption in entry['captions']:
                    data_list.append(dict(img_path=img_path, caption=caption, pid=entry['id'],
                                          gt_label=label_of[entry['id']]))
            else:
                data_list.append(dict(img_path=img_path, captions=list(entry['captions']),
                                      pid=entry['id']))
        self._metainfo.update(num_identities=len(pids), num_images=len(entries),
                              num_captions=sum(len(e['captions']) for e in entries))
        return data_list

    def get_captions(self) -> List[str]:
        """Every caption of the split, in order (a text vocabulary is built from them)."""
        captions: List[str] = []
        for i in range(len(self)):
            info = self.get_data_info(i)
            captions += [info['caption']] if 'caption' in info else info['captions']
        return captions

    def get_pids(self) -> List[int]:
        """Identity of every sample, in order."""
        return [self.get_data_info(i)['pid'] for i in range(len(self))]


@DATASETS.register_module()
class CUHKPEDESDataset(TextPersonDataset):
    """CUHK-PEDES (Li et al., 2017): 40,206 images of 13,003 identities, 2 captions per image.

    Released layout::

        data_root/
            reid_raw.json        [{"split", "captions", "file_path", "processed_tokens", "id"}]
            imgs/CUHK01/0363004.png  imgs/cam_a/...  imgs/Market/...  imgs/test_query/... ...

    Splits: train (11,003 identities, 34,054 images, 68,126 captions), val and test
    (1,000 identities each). Identities are numbered from 1 in the file; ``pid`` keeps them.
    """
    ANN_FILE = 'reid_raw.json'
    METAINFO = dict(dataset_name='CUHK-PEDES')


@DATASETS.register_module()
class ICFGPEDESDataset(TextPersonDataset):
    """ICFG-PEDES (Ding et al., 2021): 54,522 MSMT17 images of 4,102 identities, 1 caption each.

    Released layout::

        data_root/
            ICFG-PEDES.json      [{"split", "captions", "file_path", "processed_tokens", "id"}]
            imgs/train/0000/0000_002_01_0303morning_0036_1.jpg  imgs/test/...

    Splits: train (3,102 identities, 34,674 images) and test (1,000 identities, 19,848
    images); there is no validation split, so the configs validate on test.
    """
    ANN_FILE = 'ICFG-PEDES.json'
    SPLITS = ('train', 'test')
    METAINFO = dict(dataset_name='ICFG-PEDES')


@DATASETS.register_module()
class RSTPReidDataset(TextPersonDataset):
    """RSTPReid (Zhu et al., 2021): 20,505 MSMT17 images of 4,101 identities, 2 captions each.

    Released layout::

        data_root/
            data_captions.json   [{"id", "img_path", "captions", "split"}]
            imgs/0000_c14_0031.jpg ...

    Splits: train (3,701 identities), val and test (200 identities, 1,000 images each). The
    image path field is ``img_path`` here (``file_path`` in the two PEDES files).
    """
    ANN_FILE = 'data_captions.json'
    PATH_KEY = 'img_path'
    METAINFO = dict(dataset_name='RSTPReid')

