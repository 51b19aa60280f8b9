"""Tiny images on disk for the data pipeline tests."""
import io
import os
import os.path as osp
from typing import Callable, List

import cv2
import numpy as np
import pytest

from saip_mm.datasets.image_sources import write_luperson_lmdb


def write_image(path: str, height: int = 48, width: int = 24, seed: int = 0) -> np.ndarray:
    """Write a random RGB image with cv2 (which stores BGR) and return it as RGB."""
    rgb = np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


@pytest.fixture(name='write_image')
def write_image_fixture() -> Callable[..., np.ndarray]:
    """The ``write_image`` helper, as a fixture (test modules are not importable packages)."""
    return write_image


@pytest.fixture
def make_images() -> Callable[..., List[str]]:
    """Factory: write ``names`` (relative paths) under ``folder`` and return the full paths."""

    def make(folder, names, height: int = 48, width: int = 24) -> List[str]:
        paths = []
        for i, name in enumerate(names):
            path = osp.join(str(folder), name)
            os.makedirs(osp.dirname(path), exist_ok=True)
            write_image(path, height, width, seed=i)
            paths.append(path)
        return paths

    return make


@pytest.fixture(name='write_luperson_lmdb')
def write_luperson_lmdb_fixture() -> Callable[..., str]:
    """``saip_mm.datasets.image_sources.write_luperson_lmdb``, as a fixture."""
    return write_luperson_lmdb


def load_shard_converter():
    """tools/dataset_converters/images_to_shards.py as a module."""
    import importlib.util
    path = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
                    'dataset_converters', 'images_to_shards.py')
    spec = importlib.util.spec_from_file_location('images_to_shards', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def shard_converter():
    """The shard converter module (``convert``, ``main``)."""
    return load_shard_converter()


@pytest.fixture
def make_sources(shard_converter) -> Callable[..., dict]:
    """Factory: the same ``n`` person JPEGs (32x16) and 3 background JPEGs as every source
    kind under ``root``: ``folder`` (persons/ + frames/), ``list`` (persons.txt, frames.txt),
    ``lmdb`` (LUPerson layout; keys without extension) and ``shards`` (via the converter).
    Returns the roots by kind."""

    def make(root, n: int = 6, shard_size: int = 4) -> dict:
        root = str(root)
        persons = [f'persons/p{i:03d}.jpg' for i in range(n)]
        frames = [f'frames/f{i:03d}.jpg' for i in range(3)]
        for i, rel in enumerate(persons):
            write_image(osp.join(_mkdir(root, 'folder/persons'), osp.basename(rel)), 32, 16, i)
        for i, rel in enumerate(frames):
            write_image(osp.join(_mkdir(root, 'folder/frames'), osp.basename(rel)), 24, 40,
                        100 + i)
        folder = osp.join(root, 'folder')
        for name, rels in (('persons.txt', persons), ('frames.txt', frames)):
            with open(osp.join(folder, name), 'w') as f:
                f.write('\n'.join(rels) + '\n')

        def items(rels):
            out = []
            for rel in rels:
                with open(osp.join(folder, rel), 'rb') as f:
                    out.append((osp.splitext(osp.basename(rel))[0], f.read()))
            return out

        lmdb_root = write_luperson_lmdb(osp.join(root, 'lmdb_persons'), items(persons))
        lmdb_bg = write_luperson_lmdb(osp.join(root, 'lmdb_frames'), items(frames))
        shard_converter.convert(osp.join(folder, 'persons'), osp.join(root, 'shards_persons'),
                                shard_size=shard_size, stream=io.StringIO())
        shard_converter.convert(osp.join(folder, 'frames'), osp.join(root, 'shards_frames'),
                                shard_size=shard_size, stream=io.StringIO())
        return dict(folder=osp.join(folder, 'persons'), folder_bg=osp.join(folder, 'frames'),
                    list=folder, lmdb=lmdb_root, lmdb_bg=lmdb_bg,
                    shards=osp.join(root, 'shards_persons'),
                    shards_bg=osp.join(root, 'shards_frames'))

    return make


def _mkdir(root: str, rel: str) -> str:
    path = osp.join(root, rel)
    os.makedirs(path, exist_ok=True)
    return path
