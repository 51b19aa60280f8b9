"""A dataset of unlabelled single-person images (LUPerson-style crops) with background images."""
import logging
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmpretrain.registry import DATASETS, TRANSFORMS
from .transforms.loading import CorruptImageError

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


def list_images(folder: str,
                ann_file: str = '',
                extensions: Sequence[str] = IMG_EXTENSIONS,
                check_files: bool = True) -> List[str]:
    """List the images of a folder (recursively, sorted) or of a list file.

    Args:
        folder (str): image folder; list-file entries are relative to it.
        ann_file (str): list file, one image path per line (blank lines and lines starting
            with '#' are skipped). Defaults to '' (scan ``folder``).
        extensions (Sequence[str]): file extensions scanned, case-insensitive.
            Defaults to ('.jpg', '.jpeg', '.png', '.bmp').
        check_files (bool): check that every listed file exists. Defaults to True.

    Returns:
        list[str]: image paths.
    """
    if ann_file:
        if not osp.isfile(ann_file):
            raise FileNotFoundError(f'image list file not found: {ann_file}')
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
        raise FileNotFoundError(f'image folder not found: {folder}')
    extensions = tuple(ext.lower() for ext in extensions)
    paths = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()  # deterministic walk order
        paths += [osp.join(root, name) for name in files if name.lower().endswith(extensions)]
    if not paths:
        raise ValueError(f'no image files ({", ".join(extensions)}) found under {folder}')
    return sorted(paths)


class PathArray:
    """An immutable list of strings packed in two NumPy arrays.

    A Python list of a million strings gets copied into every DataLoader worker as their
    reference counts change (copy-on-read); NumPy buffers stay shared.

    Args:
        paths (Sequence[str]): the strings.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [path.encode('utf-8') for path in paths]
        self._ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        self._bytes = np.frombuffer(b''.join(encoded), dtype=np.uint8).copy()

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, idx: int) -> str:
        if not -len(self) <= idx < len(self):
            raise IndexError(f'PathArray index {idx} out of range for {len(self)} paths')
        idx = idx % len(self)
        start = 0 if idx == 0 else int(self._ends[idx - 1])
        return self._bytes[start:int(self._ends[idx])].tobytes().decode('utf-8')


@DATASETS.register_module()
class PersonImageDataset(BaseDataset):
    """Unlabelled single-person images, each paired with a random background image.

    Images come from a folder (recursive, sorted, ``extensions``) or from a list file
    (``ann_file``, one path per line, relative to ``data_prefix``, itself relative to
    ``data_root``). Every sample's data info is ``dict(img_path, bg_img_path, sample_idx)``:
    ``bg_img_path`` is drawn at random (NumPy's global generator, seeded per worker by MMEngine)
    from the background source, the background of SAIP's multi-person reference.

    Args:
        data_root (str): root of the images and of a relative ``ann_file``. Defaults to ''.
        ann_file (str): list file; '' scans the image folder. Defaults to ''.
        data_prefix (str | dict): image folder relative to ``data_root``, as a string or as
            ``dict(img_path=...)``. Defaults to ''.
        background (str | dict, optional): background source: a folder, or
            ``dict(data_root=..., ann_file=..., data_prefix=...)`` read like the arguments
            above. Defaults to None: the person images themselves.
        pipeline (Sequence[dict | Callable]): the transforms, built from mmpretrain's TRANSFORMS
            registry (so no default scope is needed). Defaults to ().
        extensions (Sequence[str]): extensions scanned in folders.
            Defaults to ('.jpg', '.jpeg', '.png', '.bmp').
        check_files (bool): check at start that every listed file exists (turn off for huge
            lists on slow storage; loading then names the missing file). Defaults to True.
        skip_corrupt (bool): when an image (person or background) does not decode, log a
            warning naming it and the number skipped so far by this process (each DataLoader
            worker counts its own), and train on another random sample instead (MMEngine's
            ``BaseDataset`` refetch, at most ``max_refetch`` tries). Defaults to False: the
            run stops with ``CorruptImageError`` naming the file. Missing files always stop it.
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
                 **kwargs) -> None:
        self.skip_corrupt = skip_corrupt
        self.num_skipped = 0  # corrupt images skipped by this process
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        self.extensions = tuple(extensions)
        self.check_files = check_files
        self.background = self._resolve_background(background)
        self._background_paths: Optional[PathArray] = None
        transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix,
                         pipeline=transforms, **kwargs)

    @staticmethod
    def _resolve_background(background: Optional[Union[str, dict]]) -> Optional[dict]:
        """Turn the ``background`` argument into dict(folder=..., ann_file=...) or None."""
        if background is None:
            return None
        if isinstance(background, str):
            return dict(folder=background, ann_file='')
        if not isinstance(background, dict):
            raise TypeError(f'`background` must be None, a folder or a dict, got {background!r}')
        unknown = set(background) - {'data_root', 'ann_file', 'data_prefix'}
        if unknown:
            raise ValueError(f'`background` has unknown key(s) {sorted(unknown)}; '
                             'expected data_root, ann_file, data_prefix')
        root = background.get('data_root', '') or ''
        prefix = background.get('data_prefix', '') or ''
        if isinstance(prefix, dict):
            prefix = prefix.get('img_path', '') or ''
        ann_file = background.get('ann_file', '') or ''
        return dict(folder=osp.join(root, prefix) if prefix else root,
                    ann_file=osp.join(root, ann_file) if ann_file else '')

    def load_data_list(self) -> List[dict]:
        """List the person images.

        Returns:
            list[dict]: one ``dict(img_path=...)`` per image.
        """
        paths = list_images(self.data_prefix.get('img_path', ''), self.ann_file,
                            self.extensions, self.check_files)
        return [dict(img_path=path) for path in paths]

    def full_init(self) -> None:
        """Load the person images (see ``BaseDataset.full_init``) and the background list."""
        if self._fully_initialized:
            return
        super().full_init()
        if self.background is not None:
            self._background_paths = PathArray(
                list_images(self.background['folder'], self.background['ann_file'],
                            self.extensions, self.check_files))

    @property
    def num_backgrounds(self) -> int:
        """Number of background images (the person images when no source is given)."""
        self.full_init()
        return len(self._background_paths) if self._background_paths is not None else len(self)

    def get_background_path(self, idx: int) -> str:
        """The ``idx``-th background image path.

        Args:
            idx (int): index in [0, num_backgrounds).

        Returns:
            str: the path.
        """
        self.full_init()
        if self._background_paths is None:
            return super().get_data_info(idx)['img_path']
        return self._background_paths[idx]

    def get_data_info(self, idx: int) -> dict:
        """The ``idx``-th data info with a freshly drawn ``bg_img_path``.

        Args:
            idx (int): sample index.

        Returns:
            dict: ``img_path``, ``sample_idx`` and ``bg_img_path``.
        """
        data_info = super().get_data_info(idx)
        data_info['bg_img_path'] = self.get_background_path(
            int(np.random.randint(0, self.num_backgrounds)))
        return data_info

    def prepare_data(self, idx: int) -> Optional[dict]:
        """Run the pipeline on the ``idx``-th sample; with ``skip_corrupt``, None for a bad image.

        Args:
            idx (int): sample index.

        Returns:
            dict | None: the transformed sample; None (``BaseDataset`` then draws another
            sample) when ``skip_corrupt`` is on and an image does not decode.
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
