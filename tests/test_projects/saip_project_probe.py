"""A test-only hook, imported by the tiny derived configs, that records what the tests check.

It runs inside the library's own tools/train.py too, so the subprocess runs are checked the
same way as in-process ones: files in the work dir.
"""
import json
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ProjectTestProbeHook(Hook):
    """Writes ``probe_backbone.pth`` (backbone state after init, before the first iteration),
    ``probe_losses.json`` and ``probe_metrics.json`` into the work dir."""
    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backbone = model.backbone
        torch.save(dict(state_dict=backbone.state_dict(),  # TinyViT: no patch grid
                        patch_resolution=tuple(getattr(backbone, 'patch_resolution', ()))),
                   osp.join(runner.work_dir, 'probe_backbone.pth'))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        losses = {k: float(v.detach() if torch.is_tensor(v) else v)
                  for k, v in (outputs or {}).items()}
        with open(osp.join(runner.work_dir, 'probe_losses.json'), 'w') as f:
            json.dump(losses, f)

    def after_val_epoch(self, runner, metrics=None) -> None:
        with open(osp.join(runner.work_dir, 'probe_metrics.json'), 'w') as f:
            json.dump({k: float(v) for k, v in (metrics or {}).items()
                       if isinstance(v, (int, float))}, f)
