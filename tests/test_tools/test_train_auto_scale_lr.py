"""tools/train.py --auto-scale-lr: MMEngine's linear scaling rule from the command line."""
import argparse
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
MICRO = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'


def _lr_after_one_step(train_tool, work: Path, person_folder, *flags) -> float:
    train_tool.main([str(MICRO), '--work-dir', str(work), *flags, '--cfg-options',
                     f'train_dataloader.dataset.data_root={person_folder}',
                     'train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1'])
    ckpt = torch.load(work / 'iter_1.pth', map_location='cpu', weights_only=True)
    return ckpt['optimizer']['param_groups'][0]['lr']


def test_auto_scale_lr_scales_by_the_batch(train_tool, person_folder, tmp_path):
    """The micro config: batch 2 on one process, auto_scale_lr.base_batch_size 16 (the demo's):
    the lr is 2/16 of the config's (constant schedule)."""
    plain = _lr_after_one_step(train_tool, tmp_path / 'plain', person_folder)
    scaled = _lr_after_one_step(train_tool, tmp_path / 'scaled', person_folder,
                                '--auto-scale-lr')
    assert plain == pytest.approx(Config.fromfile(str(MICRO)).optim_wrapper.optimizer.lr)
    assert scaled == pytest.approx(plain * 2 / 16)


def test_auto_scale_lr_needs_a_base_batch(train_tool, tmp_path):
    config = tmp_path / 'no_base.py'
    config.write_text(f"_base_ = '{MICRO}'\nauto_scale_lr = None\n")
    args = argparse.Namespace(config=str(config), cfg_options=None, launcher='none',
                              work_dir=str(tmp_path), amp=False, auto_scale_lr=True,
                              resume=None)
    with pytest.raises(ValueError, match='auto_scale_lr.base_batch_size'):
        train_tool.merge_args(Config.fromfile(str(config)), args)
