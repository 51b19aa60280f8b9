"""Helpers of the downstream-project tests: SAIP checkpoints, tiny runs, checks.

Every project config is run on a tiny dataset in its real on-disk format through a derived
config (``_base_`` = the project config plus a few overrides: 1 iteration, small inputs, the
test's data root, and the test-only ``ProjectTestProbeHook`` that writes the backbone state
after weight init, the losses and the metrics into the work dir). The same derived file runs
in-process (:func:`train_in_process`) or through the library's own ``tools/train.py``
(:func:`train_with_tool`), with the checkpoint passed the user's way,
``--cfg-options pretrained=PATH``, over a default that does not exist.
"""
import glob
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Optional

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONVERTER = ROOT / 'tools' / 'model_converters' / 'saip_to_backbone.py'
SAIP_GRID = (16, 8)  # the 256x128 anchor of SAIP pretraining, patch 16
# Default `pretrained` of the derived configs: the real one must come from the override.
MISSING_DEFAULT = '/nonexistent/default_saip_checkpoint.pth'


def _converter():
    spec = importlib.util.spec_from_file_location('saip_to_backbone', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_pretraining_checkpoint(path: Path, arch: str, width: int) -> None:
    """A SAIP pretraining checkpoint as the Runner writes it (random init, CSM head only)."""
    from mmpretrain.registry import MODELS
    import saip_mm  # noqa: F401  (registers SAIP)
    model = MODELS.build(dict(
        type='SAIP', backbone=dict(type='SAIPViT', arch=arch),
        csm_head=dict(type='CSMHead', in_channels=width, out_channels=256),
        csr_head=None, css_head=None))
    model.init_weights()
    with torch.no_grad():  # pos_embed starts at zero: make it informative for the resize checks
        model.teacher['backbone'].pos_embed.normal_(std=0.02)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1, iter=1)), path)


@pytest.fixture(scope='session')
def saip_checkpoints(tmp_path_factory) -> SimpleNamespace:
    """``full`` (ViT-Tiny pretraining checkpoint), ``tiny`` and ``small`` (converted backbones)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp('saip_checkpoints')
    convert = _converter().convert
    paths = SimpleNamespace(full=root / 'saip_vit-tiny_pretrain.pth',
                            tiny=root / 'saip_vit-tiny.pth',
                            small_full=root / 'saip_vit-small_pretrain.pth',
                            small=root / 'saip_vit-small.pth')
    _write_pretraining_checkpoint(paths.full, 'tiny', 192)
    convert(str(paths.full), str(paths.tiny))
    _write_pretraining_checkpoint(paths.small_full, 'small', 384)
    convert(str(paths.small_full), str(paths.small))
    return paths


def write_derived_config(path: Path, base: Path, body: str) -> Path:
    """A config inheriting ``base``: missing default checkpoint, 1 iteration then validation,
    no checkpoint saving, the probe hook, and the overrides in ``body``."""
    from mmengine.config import Config
    base_cfg = Config.fromfile(str(base))
    imports = list(base_cfg.custom_imports['imports']) + ['saip_project_probe']
    hooks = [h.to_dict() if hasattr(h, 'to_dict') else dict(h) for h in base_cfg.custom_hooks]
    hooks.append(dict(type='ProjectTestProbeHook'))
    path.write_text(
        f'_base_ = [{str(base)!r}]\n'
        f'pretrained = {MISSING_DEFAULT!r}\n'
        f'custom_imports = dict(imports={imports!r}, allow_failed_imports=False)\n'
        f'custom_hooks = {hooks!r}\n'
        'train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=1, val_interval=1)\n'
        'param_scheduler = None\n'
        'default_hooks = dict(checkpoint=None, logger=dict(interval=1))\n'
        f'{body}\n')
    return path


def probe_results(work_dir: Path) -> SimpleNamespace:
    """What ``ProjectTestProbeHook`` wrote: backbone state after init, losses, metrics."""
    backbone = torch.load(work_dir / 'probe_backbone.pth', weights_only=True)
    return SimpleNamespace(
        backbone_state=backbone['state_dict'], patch_resolution=tuple(backbone['patch_resolution']),
        losses=json.loads((work_dir / 'probe_losses.json').read_text()),
        metrics=json.loads((work_dir / 'probe_metrics.json').read_text()))


def train_in_process(config: Path, checkpoint: Optional[Path], work_dir: Path):
    """Run the derived config for 1 iteration + validation; returns (runner, probe results)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(config))
    # exactly what `--cfg-options pretrained=...` does in tools/train.py
    cfg.merge_from_dict(dict(pretrained=None if checkpoint is None else str(checkpoint)))
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, probe_results(work_dir)


def train_with_tool(library: str, config: Path, checkpoint: Path, work_dir: Path,
                    timeout: int = 300):
    """Run ``<library>/.mim/tools/train.py`` as a user would; returns its log and the probe
    results."""
    tool = Path(importlib.import_module(library).__file__).parent / '.mim' / 'tools' / 'train.py'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(HERE)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    proc = subprocess.run(
        [sys.executable, str(tool), str(config), '--work-dir', str(work_dir),
         '--cfg-options', f'pretrained={checkpoint}'],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=str(work_dir.parent))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return log, probe_results(work_dir)


def logged_metrics(work_dir: Path) -> Dict[str, float]:
    """Validation metrics as the LoggerHook wrote them (``<timestamp>/vis_data/*.json``)."""
    metrics: Dict[str, float] = {}
    for json_log in glob.glob(str(work_dir / '*' / 'vis_data' / '*.json')):
        if os.path.basename(json_log) != 'scalars.json':
            for line in Path(json_log).read_text().splitlines():
                metrics.update({k: v for k, v in json.loads(line).items()
                                if isinstance(v, (int, float))})
    return metrics


def expected_backbone(checkpoint: Path, grid) -> Dict[str, torch.Tensor]:
    """The backbone state the checkpoint must produce, computed independently of the loader:
    tensors as stored, ``pos_embed`` resized by mmpretrain's ``resize_pos_embed`` from the SAIP
    16x8 grid to ``grid`` when that differs."""
    from mmpretrain.models.utils import resize_pos_embed
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    state = {k[len('backbone.'):]: v for k, v in state.items()}
    if tuple(grid) != SAIP_GRID:
        state['pos_embed'] = resize_pos_embed(state['pos_embed'], SAIP_GRID, tuple(grid),
                                              mode='bicubic', num_extra_tokens=1)
    return state


def assert_backbone_loaded(probe: SimpleNamespace, checkpoint: Path) -> None:
    """Every backbone tensor after init equals the checkpoint's (position embeddings resized
    to the model's grid)."""
    expected = expected_backbone(checkpoint, probe.patch_resolution)
    assert sorted(probe.backbone_state) == sorted(expected)
    for name, value in expected.items():
        torch.testing.assert_close(probe.backbone_state[name], value, rtol=0, atol=0, msg=name)


def assert_trained_and_evaluated(probe: SimpleNamespace, metric_names) -> None:
    assert probe.losses and all(is_finite_number(v) for v in probe.losses.values()), probe.losses
    for name in metric_names:
        assert is_finite_number(probe.metrics.get(name)), (name, probe.metrics)


def random_image(path: Path, height: int, width: int, seed: int) -> None:
    """Write a noise JPEG (the pipelines decode real files)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float('inf')
