"""Builders shared by test files in different folders (``tests/`` is on ``sys.path``)."""
import importlib.util
import itertools
import logging
import textwrap
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS, MODELS

import saip_mm  # noqa: F401  (registers SAIP)

ROOT = Path(__file__).resolve().parents[1]
MICRO_CONFIG = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'
ONLINE_EVAL = ROOT / 'configs' / 'saip' / '_base_' / 'datasets' / \
    'market1501_online-eval-256x128.py'


@HOOKS.register_module(name='_CrashHook')
class CrashHook(Hook):
    """Stands for a kill: interrupts the run before iteration ``at_iter + 1``."""

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at_iter:
            raise KeyboardInterrupt


class LogRecords(logging.Handler):
    """Keeps the messages of every record it sees (attach it to MMEngine's logger)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def load_tool(relative_path: str, name: str):
    """A script of the checkout (e.g. ``tools/analysis_tools/preflight.py``) as a module, so
    tests call its functions in this process."""
    path = Path(__file__).resolve().parents[1] / relative_path
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_micro_4iter_config(path: Path, extra: str = '') -> Path:
    """The micro config over 4 iterations, cosine lr, a checkpoint after iteration 2 and
    deterministic algorithms: the set-up of the bit-exact resume tests; ``extra`` config lines
    are appended."""
    path.write_text(textwrap.dedent(f'''
        _base_ = '{MICRO_CONFIG}'
        max_iters = 4
        train_cfg = dict(max_iters=max_iters)
        param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_iters, by_epoch=False,
                                begin=0, end=max_iters)]
        default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=-1))
        randomness = dict(seed=0, deterministic=True)
    ''') + textwrap.dedent(extra))
    return path


_RUN_IDS = itertools.count()


def micro_runner(work, persons, split=None, iters=4, hooks=(), **options) -> Runner:
    """An MMEngine runner of the micro SAIP config (tests/data/configs/saip_micro_toy.py) on
    the images of ``persons``, ``iters`` iterations at a constant lr, checkpoint every
    iteration; with ``split`` (a Market-1501 layout), online validation every 2 iterations and
    the best checkpoint kept. ``options`` are merged into the config last."""
    cfg = Config.fromfile(str(MICRO_CONFIG))
    cfg.work_dir = str(work)
    # MMEngine names the logger, visualizer and message hub of a run after the experiment name,
    # the second by default: two runners built within one second would share them.
    cfg.experiment_name = f'micro{next(_RUN_IDS)}'
    cfg.train_dataloader.dataset.data_root = str(persons)
    cfg.train_cfg.max_iters = iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0,
                                end=iters)]
    cfg.custom_hooks = [dict(type='SAIPTeacherHook')] + list(hooks)
    if split is not None:
        val = Config.fromfile(str(ONLINE_EVAL))
        cfg.val_dataloader = val.val_dataloader
        cfg.val_dataloader.update(batch_size=4, num_workers=0)
        cfg.val_dataloader.dataset.data_root = str(split)
        cfg.val_evaluator = val.val_evaluator
        cfg.val_cfg = val.val_cfg
        cfg.train_cfg.val_interval = 2
        cfg.default_hooks.checkpoint.save_best = 'reid/mAP'
        cfg.default_hooks.checkpoint.rule = 'greater'
    cfg.merge_from_dict(options)
    return Runner.from_cfg(cfg)


def tinyvit_saip(seed: int = 0):
    """SAIP with the TinyViT-5M backbone of the TinyViT variant: CSM without its attention term,
    no CSR, a small CSS head (the heads hold no BatchNorm). ``init_weights`` is not called:
    the teacher is a deep copy of the student from construction, and the weight init (seconds
    on 2 cores) changes no BatchNorm buffer."""
    torch.manual_seed(seed)
    return MODELS.build(dict(
        type='SAIP', backbone=dict(type='SAIPTinyViT', arch='5m'),
        csm_head=dict(type='CSMHead', in_channels=320, out_channels=256,
                      loss=dict(type='CSMLoss', attn_loss_weight=0.0)),
        csr_head=None, css_head=dict(type='CSSHead', in_channels=160, embed_dims=32,
                                     num_heads=2)))
