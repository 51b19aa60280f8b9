"""Tiny images on disk for the data pipeline tests."""
import os
import os.path as osp
from typing import Callable, List

import cv2
import numpy as np
import pytest


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
