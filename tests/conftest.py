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
