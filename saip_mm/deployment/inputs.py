"""Inputs of exported graphs: image files read as the models' test pipelines read them."""
import glob
import os.path as osp
from typing import List, Sequence

import cv2
import numpy as np
import torch

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def image_paths(specs: Sequence[str]) -> List[str]:
    """Files as given, folders expanded to the images directly inside them (sorted).

    Raises:
        FileNotFoundError: a path does not exist, or a folder holds no image.
    """
    paths: List[str] = []
    for spec in specs:
        if osp.isdir(spec):
            found = sorted(p for p in glob.glob(osp.join(spec, '*'))
                           if p.lower().endswith(IMAGE_EXTS))
            if not found:
                raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTS)}) in {spec}')
            paths += found
        elif osp.isfile(spec):
            paths.append(spec)
        else:
            raise FileNotFoundError(f'image not found: {spec}')
    return paths


def read_rgb(paths: Sequence[str], size: Sequence[int]) -> torch.Tensor:
    """Read images and resize them (bicubic, as the ReID test pipeline) to ``size``.

    Args:
        paths (Sequence[str]): image files.
        size (Sequence[int]): (H, W).

    Returns:
        Tensor: (N, 3, H, W) float32 RGB in [0, 255].
    """
    out = []
    for path in paths:
        img = cv2.imread(path)
        if img is None:
            raise ValueError(f'cannot read image {path}')
        img = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (int(size[1]), int(size[0])),
                         interpolation=cv2.INTER_CUBIC)
        out.append(torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1)))
    return torch.stack(out)


def normalize(rgb: torch.Tensor, spec) -> torch.Tensor:
    """``(rgb - mean) / std`` with the mean and std of an :class:`ExportSpec`."""
    mean = torch.tensor(spec.mean, dtype=rgb.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb - mean) / std


def model_inputs(rgb: torch.Tensor, spec) -> torch.Tensor:
    """What the exported graph takes: ``rgb`` as is when it normalises itself, else normalised."""
    return rgb if spec.bake_normalization else normalize(rgb, spec)
