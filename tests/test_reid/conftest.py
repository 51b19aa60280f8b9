"""Shared by the ReID and attribute tests: SAIP checkpoints and tiny-run helpers.

tests/test_attributes/conftest.py loads this file too.

The end-to-end tests run the real configs at the real 256x128 input, but (on CPU, two shared
cores) with a 2-block, 32-wide ViT: the SAIP checkpoint is pretrained-format with that backbone
and the configs' backbone arch is overridden to match. The wrong-checkpoint tests use the
configs' real ViT-Tiny, since they stop before any computation.
"""
import importlib.util
import os
import os.path as osp
from pathlib import Path
from typing import Callable, Dict, Optional

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CONVERTER = ROOT / 'tools' / 'model_converters' / 'saip_to_backbone.py'
# A ViT small enough for CPU tests; the input stays 256x128 (16x8 patch grid).
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def _write_image(path: str, height: int = 64, width: int = 32, seed: int = 0) -> None:
    """A small random image (the pipelines resize it to 256x128)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(path, img)


@pytest.fixture(name='write_image', scope='session')
def write_image_fixture() -> Callable[..., None]:
    """``write_image(path, height=64, width=32, seed=0)`` (test modules cannot import it)."""
    return _write_image


def _load_converter():
    spec = importlib.util.spec_from_file_location('saip_to_backbone', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def saip_checkpoints(tmp_path_factory) -> Dict[str, object]:
    """SAIP pretraining checkpoints as the Runner writes them and their backbones converted by
    tools/model_converters/saip_to_backbone.py: ``full`` / ``vit_tiny`` (the real ViT-Tiny,
    teacher backbone in ``vit_tiny_teacher``), ``backbone`` (TINY_ARCH, for the training
    runs); ``small``: a ViT-Small backbone checkpoint (the wrong architecture)."""
    import saip_mm  # noqa: F401
    from mmpretrain.models import VisionTransformer
    from mmpretrain.registry import MODELS
    # One set per test session, also when tests/test_attributes loads this file a second time.
    folder = tmp_path_factory.getbasetemp() / 'saip_ckpt_shared'
    done = folder / 'paths.pt'
    if done.is_file():
        return torch.load(done, weights_only=True)
    folder.mkdir()
    converter = _load_converter()
    out = {}
    torch.manual_seed(0)
    for name, arch, inter_index in (('vit_tiny', 'tiny', 6), ('backbone', TINY_ARCH, 1)):
        width = 192 if arch == 'tiny' else arch['embed_dims']
        # a small CSM head keeps the files small; the backbone is what matters
        model = MODELS.build(dict(
            type='SAIP', backbone=dict(type='SAIPViT', arch=arch, inter_index=inter_index),
            csm_head=dict(type='CSMHead', in_channels=width, hidden_channels=64,
                          bottleneck_channels=32, out_channels=256),
            csr_head=None, css_head=None))
        model.init_weights()
        full = folder / f'{name}_epoch_1.pth'
        torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), full)
        out[name] = str(folder / f'{name}_backbone.pth')
        converter.convert(str(full), out[name])  # the CLI's code path, in-process
        if name == 'vit_tiny':
            out['full'] = str(full)
            out['vit_tiny_teacher'] = {k[len('teacher.backbone.'):]: v.clone()
                                       for k, v in model.state_dict().items()
                                       if k.startswith('teacher.backbone.')}
    small = VisionTransformer(arch='deit-small', img_size=(256, 128))
    out['small'] = str(folder / 'vit-small_backbone.pth')
    torch.save(dict(state_dict={'backbone.' + k: v for k, v in small.state_dict().items()}),
               out['small'])
    torch.save(out, done)
    return out


def _shrink_config(cfg, work_dir: str, data_root: str, batch_size: int = 4,
                   num_identities: Optional[int] = None, tiny_model: bool = True):
    """One training iteration per epoch, one epoch, validation after it, no worker processes,
    the TINY_ARCH backbone (``tiny_model``), a checkpoint only for the best score."""
    cfg.work_dir = work_dir
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data_root
        loader.batch_size = batch_size
    if num_identities is not None:  # P x K identity batches
        cfg.train_dataloader.sampler.num_identities = num_identities
        cfg.train_dataloader.sampler.num_instances = batch_size // num_identities
        cfg.train_dataloader.sampler.seed = 0
    if tiny_model:
        cfg.model.backbone.arch = dict(TINY_ARCH)
        cfg.model.backbone.drop_path_rate = 0.0
        cfg.model.head.in_channels = TINY_ARCH['embed_dims']
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = -1
    cfg.default_hooks.checkpoint.save_last = False
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    return cfg


@pytest.fixture(scope='session')
def tiny_arch() -> dict:
    """The small test ViT (``arch`` of mmpretrain's VisionTransformer)."""
    return dict(TINY_ARCH)


@pytest.fixture(name='shrink_config', scope='session')
def shrink_config_fixture() -> Callable:
    """``shrink_config(cfg, work_dir, data_root, batch_size=4, num_identities=None,
    tiny_model=True)``."""
    return _shrink_config


@pytest.fixture
def run_train() -> Callable:
    """Build a Runner from a config and train; return the runner."""

    def run(cfg):
        from mmengine.runner import Runner
        runner = Runner.from_cfg(cfg)
        runner.train()
        return runner

    return run
