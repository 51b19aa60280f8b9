"""A dataset of unlabelled single-person images (LUPerson-style crops) with background images."""
import logging
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmpretrain.registry import DATASETS, TRANSFORMS
from .image_sources import (SOURCE_KINDS, FileSource, KeyedSource, PathArray,  # noqa: F401
                            detect_source, open_keyed_source)
from .transforms.loading import CorruptImageError

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


def list_images(folder: str,
                ann_file: str = '',
                extensions: Sequence[str] = IMG_EXTENSIONS,
                check_files: bool = True,
                hint: str = '') -> List[str]:
    """List the images of a folder (recursively, sorted) or of a list file.

    Args:
        folder (str): image folder; list-file entries are relative to it.
        ann_file (str): list file, one image path per line (blank lines and lines starting
            with '#' are skipped). Defaults to '' (scan ``folder``).
        extensions (Sequence[str]): file extensions scanned, case-insensitive.
            Defaults to ('.jpg', '.jpeg', '.png', '.bmp').
        check_files (bool): check that every listed file exists. Defaults to True.
        hint (str): appended to the errors for a missing list file or folder (which config
            key to set). Defaults to ''.

    Returns:
        list[str]: image paths.
    """
    if ann_file:
        if not osp.isfile(ann_file):
            raise FileNotFoundError(f'image list file not found: {ann_file}{hint}')
        with open(ann_file, encoding='utf-8') as f:
            names = [line.strip() for line in f]
        paths = [osp.join(folder, name) for name in names if name and not name.startswith('#')]
        if not paths:
            raise ValueError(f'the image list file {ann_file} names no image')
        if check_files:
            missing = [path for path in paths if not osp.isfile(path)]
            if missing:
                raise FileNotFoundError(
                    f'{len(missing)} image(s) listed in {ann_file} do not exist, '
                    f'first: {missing[0]}')
        return paths

    if not folder:
        raise ValueError('no image source: set `data_root`/`data_prefix` to a folder, '
                         'or `ann_file` to a list file')
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}{hint}')
    extensions = tuple(ext.lower() for ext in extensions)
    paths = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()  # deterministic walk order
        paths += [osp.join(root, name) for name in files if name.lower().endswith(extensions)]
    if not paths:
        raise ValueError(f'no image files ({", ".join(extensions)}) found under {folder}')
    return sorted(paths)


def _same_path(a: str, b: str) -> bool:
    return (not a and not b) or (bool(a) and bool(b) and osp.abspath(a) == osp.abspath(b))


PERSON_HINT = ('; set `train_dataloader.dataset.data_root` (and `.ann_file`; it is relative '
               'to data_root)')


@DATASETS.register_module()
class PersonImageDataset(BaseDataset):
    """Unlabelled single-person images, each paired with a random background image.

    Person images come from one of three kinds of source (``source``; 'auto' tells them apart
    by their layout, see :func:`~saip_mm.datasets.image_sources.detect_source`). ``<root>`` is
    ``data_prefix`` joined to ``data_root``; a relative ``ann_file`` is relative to
    ``data_root``.

    - ``'files'``: a folder (recursive, sorted, ``extensions``), or a list file (``ann_file``,
      one path per line, relative to ``<root>``);
    - ``'lmdb'``: LUPerson's LMDB (an environment, key -> encoded image, and a pickled key
      list), in either published layout: LUPerson-NL's ``<root>/lmdb/`` + ``<root>/keys.pkl``
      (``dict(keys=[...], pids=[...])``), or what LUPerson's ``LUP/convert_lmdb.py`` writes,
      ``lup_lmdb/`` + ``keys.pkl`` beside it (a plain list of keys), with ``<root>`` the
      folder holding both or ``lup_lmdb/`` itself. The environment is ``<root>`` when it
      holds ``data.mdb``, else ``<root>/lmdb/``, else ``<root>/lup_lmdb/``; the key list is
      ``ann_file`` (any ``.pkl``), else ``<root>/keys.pkl``, else ``keys.pkl`` beside the
      environment (:class:`~saip_mm.datasets.image_sources.LmdbSource`). Read with a
      restricted unpickler (no globals); Python 2 pickles load too;
    - ``'shards'``: tar shards written by ``tools/dataset_converters/images_to_shards.py``,
      ``<root>/shard_index.npz`` or the index named by ``ann_file`` (any ``.npz``).

    Every sample's data info is ``dict(img_path, bg_img_path, sample_idx)``: ``bg_img_path``
    is drawn at random (NumPy's global generator, seeded per worker by MMEngine) from the
    background source, the background of SAIP's multi-person reference. For LMDB and shard
    entries the paths read ``<container>[<key>]`` and the entries' bytes come along as
    ``img_bytes`` / ``bg_img_bytes``, which ``LoadPersonImage`` decodes like a file's bytes.
    Keys are held in NumPy buffers (``PathArray``), so millions of them stay shared by the
    DataLoader workers; LMDB environments and shard files are opened lazily in each worker.

    Args:
        data_root (str): root of the images, of a relative ``ann_file`` and of the background
            source, unless that has its own ``data_root``. Defaults to ''.
        ann_file (str): list file, LUPerson key list (``.pkl``) or shard index (``.npz``);
            '' uses ``<root>`` itself. Defaults to ''.
        data_prefix (str | dict): image folder relative to ``data_root``, as a string or as
            ``dict(img_path=...)``. Defaults to ''.
        background (str | dict, optional): background source: a folder, a LUPerson LMDB root
            or a shard folder given as a string, or ``dict(data_root=..., ann_file=...,
            data_prefix=..., source=...)`` read like the arguments of the same names. Its
            relative paths are relative to its own ``data_root`` when it has one, else to the
            dataset's ``data_root``: overriding the dataset's ``data_root`` moves both sources.
            Defaults to None: the person images themselves.
        pipeline (Sequence[dict | Callable]): the transforms, built from mmpretrain's TRANSFORMS
            registry (so no default scope is needed). Defaults to ().
        extensions (Sequence[str]): extensions scanned in folders.
            Defaults to ('.jpg', '.jpeg', '.png', '.bmp').
        check_files (bool): check at start that every listed file (every LMDB key) exists;
            turn off for huge lists on slow storage: loading then names the missing file, and
            a missing LMDB key is then skippable. Defaults to True.
        skip_corrupt (bool): when an image (person or background) does not decode, or an LMDB
            key is missing (``check_files=False``), log a warning naming it and the number
            skipped so far by this process (each DataLoader worker counts its own), and train
            on another random sample instead (MMEngine's ``BaseDataset`` refetch, at most
            ``max_refetch`` tries). Defaults to False: the run stops with ``CorruptImageError``
            naming the file or entry. Missing files and shards that do not match their index
            (``ShardIndexError``) always stop it.
        source (str): 'auto', 'files', 'lmdb' or 'shards'. Defaults to 'auto'.
        **kwargs: other ``mmengine.dataset.BaseDataset`` arguments (``serialize_data``,
            ``lazy_init``, ``indices``, ``test_mode``, ...).
    """

    def __init__(self,
                 data_root: str = '',
                 ann_file: str = '',
                 data_prefix: Union[str, dict] = '',
                 background: Optional[Union[str, dict]] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 check_files: bool = True,
                 skip_corrupt: bool = False,
                 source: str = 'auto',
                 **kwargs) -> None:
        if source not in SOURCE_KINDS:
            raise ValueError(f'`source` must be one of {SOURCE_KINDS}, got {source!r}')
        self.source = source
        self.skip_corrupt = skip_corrupt
        self.num_skipped = 0  # corrupt images skipped by this process
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        self.extensions = tuple(extensions)
        self.check_files = check_files
        self.background = self._resolve_background(background, data_root)
        self._images: Optional[KeyedSource] = None  # the person images, when keyed
        self._backgrounds: Optional[Union[FileSource, KeyedSource]] = None
        transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix,
                         pipeline=transforms, **kwargs)

    @staticmethod
    def _resolve_background(background: Optional[Union[str, dict]],
                            data_root: str) -> Optional[dict]:
        """Turn ``background`` into dict(folder, ann_file, source, hint), or None."""
        if background is None:
            return None
        given_as_str = isinstance(background, str)
        if given_as_str:
            background = dict(data_prefix=background)
        if not isinstance(background, dict):
            raise TypeError(f'`background` must be None, a folder or a dict, got {background!r}')
        unknown = set(background) - {'data_root', 'ann_file', 'data_prefix', 'source'}
        if unknown:
            raise ValueError(f'`background` has unknown key(s) {sorted(unknown)}; '
                             'expected data_root, ann_file, data_prefix, source')
        own_root = background.get('data_root', '') or ''
        root = own_root or data_root or ''
        prefix = background.get('data_prefix', '') or ''
        if isinstance(prefix, dict):
            prefix = prefix.get('img_path', '') or ''
        ann_file = background.get('ann_file', '') or ''
        source = background.get('source', 'auto') or 'auto'
        if source not in SOURCE_KINDS:
            raise ValueError(f'`background.source` must be one of {SOURCE_KINDS}, '
                             f'got {source!r}')
        # The config key to fix when the background is not found.
        key = 'train_dataloader.dataset.background'
        if given_as_str:
            what = f'`{key}`'
        else:
            field = 'ann_file' if ann_file else 'data_prefix'
            what = f'`{key}.{field}` (or `{key}.data_root`)'
        base = (f"background.data_root {own_root!r}" if own_root else
                f"the dataset's data_root {data_root!r}" if data_root else 'the working folder')
        hint = f'; set {what}: relative background paths are relative to {base}'
        # osp.join keeps an absolute second part as it is
        return dict(folder=osp.join(root, prefix) if prefix else root,
                    ann_file=osp.join(root, ann_file) if ann_file else '',
                    source=source, hint=hint)

    def _person_kind(self) -> str:
        folder = self.data_prefix.get('img_path', '')
        return self.source if self.source != 'auto' else detect_source(folder, self.ann_file)

    def load_data_list(self) -> List[dict]:
        """List the person images.

        Returns:
            list[dict]: one ``dict(img_path=...)`` per image file, or one ``dict(img_idx=i)``
            per LMDB or shard entry (its key stays in the source's ``PathArray``).
        """
        folder = self.data_prefix.get('img_path', '')
        kind = self._person_kind()
        if kind == 'files':
            paths = list_images(folder, self.ann_file, self.extensions, self.check_files,
                                hint=PERSON_HINT)
            return [dict(img_path=path) for path in paths]
        self._images = open_keyed_source(kind, folder, self.ann_file, self.check_files,
                                         hint=PERSON_HINT)
        return [dict(img_idx=i) for i in range(len(self._images))]

    def full_init(self) -> None:
        """Load the person images (see ``BaseDataset.full_init``) and the background source."""
        if self._fully_initialized:
            return
        super().full_init()
        bg = self.background
        if bg is None:
            return
        kind = bg['source'] if bg['source'] != 'auto' else detect_source(bg['folder'],
                                                                          bg['ann_file'])
        if kind == 'files':
            self._backgrounds = FileSource(
                list_images(bg['folder'], bg['ann_file'], self.extensions, self.check_files,
                            hint=bg['hint']))
        elif (self._images is not None and kind == self._person_kind()
              and _same_path(bg['folder'], self.data_prefix.get('img_path', ''))
              and _same_path(bg['ann_file'], self.ann_file)):
            self._backgrounds = self._images  # one open environment / set of files per worker
        else:
            self._backgrounds = open_keyed_source(kind, bg['folder'], bg['ann_file'],
                                                  self.check_files, hint=bg['hint'])

    @property
    def num_backgrounds(self) -> int:
        """Number of background images (the person images when no source is given)."""
        self.full_init()
        return len(self._backgrounds) if self._backgrounds is not None else len(self)

    def _person_entry(self, info: dict, read: bool = True) -> Tuple[str, Optional[bytes]]:
        """A person data info's image name and, for a keyed source when ``read``, its bytes."""
        if 'img_idx' not in info:
            return info['img_path'], None
        idx = info['img_idx']
        return self._images.name(idx), self._images.read(idx) if read else None

    def _background_entry(self, idx: int, read: bool = True) -> Tuple[str, Optional[bytes]]:
        """The ``idx``-th background's name and, for a keyed source when ``read``, its bytes."""
        self.full_init()
        if self._backgrounds is None:
            return self._person_entry(super().get_data_info(idx), read)
        return (self._backgrounds.name(idx),
                self._backgrounds.read(idx) if read else None)

    def get_background_path(self, idx: int) -> str:
        """The ``idx``-th background image's path (``<container>[<key>]`` for an entry).

        Args:
            idx (int): index in [0, num_backgrounds).

        Returns:
            str: the path.
        """
        return self._background_entry(idx, read=False)[0]

    def get_data_info(self, idx: int) -> dict:
        """The ``idx``-th data info with a freshly drawn background.

        Args:
            idx (int): sample index.

        Returns:
            dict: ``img_path``, ``sample_idx`` and ``bg_img_path``; for LMDB and shard entries
            also their bytes, ``img_bytes`` and ``bg_img_bytes``.
        """
        data_info = super().get_data_info(idx)
        data_info['img_path'], img_bytes = self._person_entry(data_info)
        data_info.pop('img_idx', None)
        if img_bytes is not None:
            data_info['img_bytes'] = img_bytes
        bg_path, bg_bytes = self._background_entry(
            int(np.random.randint(0, self.num_backgrounds)))
        data_info['bg_img_path'] = bg_path
        if bg_bytes is not None:
            data_info['bg_img_bytes'] = bg_bytes
        return data_info

    def prepare_data(self, idx: int) -> Optional[dict]:
        """Run the pipeline on the ``idx``-th sample; with ``skip_corrupt``, None for a bad image.

        Args:
            idx (int): sample index.

        Returns:
            dict | None: the transformed sample; None (``BaseDataset`` then draws another
            sample) when ``skip_corrupt`` is on and an image does not decode (or an LMDB key
            is missing).
        """
        if not self.skip_corrupt:
            return super().prepare_data(idx)
        try:
            return super().prepare_data(idx)
        except CorruptImageError as err:
            self.num_skipped += 1
            print_log(f'PersonImageDataset: skipped corrupt image {err.path} '
                      f'({self.num_skipped} skipped so far in this process)',
                      logger='current', level=logging.WARNING)
            return None
