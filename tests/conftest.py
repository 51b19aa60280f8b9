import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# Two cores: keep intra-op threads bounded so parallel work does not thrash.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def write_person_images(folder: Path, n: int = 8, size=(96, 48), seed: int = 0) -> Path:
    """Tiny person-like crops: a coloured body and head on a textured background."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        color = tuple(int(c) for c in rng.integers(80, 255, 3))
        cv2.rectangle(img, (w // 4, h // 4), (3 * w // 4, h - 4), color, -1)
        cv2.circle(img, (w // 2, h // 6), max(3, w // 8), (200, 170, 150), -1)
        cv2.imwrite(str(folder / f'person_{i:03d}.jpg'), img)
    return folder


def write_market1501_split(root: Path) -> Path:
    """Market-1501 layout of generated person crops: 4 identities, query from camera 1,
    gallery from cameras 2 and 3."""
    rng = np.random.default_rng(0)
    for pid in range(1, 5):
        color = rng.integers(60, 255, 3)
        for cam, folder in ((1, 'query'), (2, 'bounding_box_test'), (3, 'bounding_box_test')):
            img = rng.integers(0, 60, (64, 32, 3)).astype(np.uint8)
            img[12:60, 6:26] = np.clip(color + rng.integers(-20, 20, 3), 0, 255)
            path = root / folder / f'{pid:04d}_c{cam}s1_{pid * 100 + cam:06d}_00.jpg'
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), img)
    return root


@pytest.fixture(scope='session')
def market1501_split(tmp_path_factory) -> Path:
    """:func:`write_market1501_split` in a session temp folder."""
    return write_market1501_split(tmp_path_factory.mktemp('reid_split'))


@pytest.fixture(scope='session')
def person_folder(tmp_path_factory) -> Path:
    return write_person_images(tmp_path_factory.mktemp('persons') / 'images')


@pytest.fixture(scope='session')
def train_tool():
    """tools/train.py as a module: ``train_tool.main(argv)`` trains in this process, which
    saves the interpreter start and imports of a subprocess."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / 'tools' / 'train.py'
    spec = importlib.util.spec_from_file_location('saip_train_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
