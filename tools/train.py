"""Train a model from an MMEngine config (SAIP pretraining or a downstream config).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

The OpenMMLab form: ``--resume`` without a path continues from the newest checkpoint in the
work dir; with a path, from that checkpoint.
"""
import argparse
import importlib.util
import logging
import os
import os.path as osp
import sys
from typing import List, Optional, Tuple

if importlib.util.find_spec('saip_mm') is None:  # a checkout that is not pip-installed
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
# Importing saip_mm first registers our modules into mmpretrain's registries and allow-lists
# the classes in Runner checkpoints for torch.load(weights_only=True), which --resume needs.
import saip_mm  # noqa: F401,E402

from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.device import get_device  # noqa: E402
from mmengine.logging import MMLogger, print_log  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from saip_mm.engine.optimizers import amp_on_cpu, cpu_bf16_feature  # noqa: E402
from saip_mm.utils.cpu_distributed import setup_cpu_distributed  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model with MMEngine (saip_mm)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, from the latest checkpoint '
        'in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision: AmpOptimWrapper (float16, dynamic loss '
                        'scale) on an accelerator, CPUAmpOptimWrapper (bfloat16 autocast) on a '
                        'CPU; a CPU without bf16 units runs it emulated (slower, with a warning)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr by (processes x train_dataloader.batch_size) / '
        'auto_scale_lr.base_batch_size of the config (MMEngine\'s linear scaling rule)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value (e.g. train_cfg.max_iters=10); a list is '
        'key="[a,b]" or key=a,b, no spaces')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    # torch.distributed launchers pass --local-rank (new) or --local_rank (old).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace,
               notes: Optional[List[Tuple[int, str]]] = None) -> Config:
    """Apply the command line to the config; CLI flags win over ``--cfg-options``.

    ``--amp`` (or a config's own ``AmpOptimWrapper``) on a machine without an accelerator
    becomes :class:`CPUAmpOptimWrapper` (bf16 autocast on CPU, no loss scaler); the line that
    says so, and whether this CPU runs bf16 natively, is appended to ``notes`` as
    ``(logging level, message)`` for the run's log (printed at once without ``notes``).
    """
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher

    # work_dir priority: --work-dir > work_dir in the config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.auto_scale_lr:
        auto_scale = cfg.get('auto_scale_lr', None)
        if not auto_scale or auto_scale.get('base_batch_size') is None:
            raise ValueError(
                f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size (the '
                'batch its lr is written for); add auto_scale_lr = dict(base_batch_size=N)')
        auto_scale.enable = True  # the Runner scales when it builds the optimizer

    optim_wrapper = cfg.get('optim_wrapper', None)
    on_cpu = get_device() == 'cpu'
    if args.amp:
        if optim_wrapper is None:
            raise ValueError(f'--amp: {args.config} has no optim_wrapper to switch to AMP.')
        if optim_wrapper.get('type', 'OptimWrapper') in ('AmpOptimWrapper',
                                                         'CPUAmpOptimWrapper'):
            raise ValueError(
                f'--amp: optim_wrapper is already {optim_wrapper.type} (in {args.config} or '
                '--cfg-options); drop --amp.')
        if not on_cpu:
            optim_wrapper.type = 'AmpOptimWrapper'
            optim_wrapper.loss_scale = 'dynamic'
    if on_cpu and optim_wrapper is not None and \
            (args.amp or optim_wrapper.get('type') == 'AmpOptimWrapper'):
        # MMEngine's AmpOptimWrapper asserts an accelerator: bf16 autocast on CPU instead.
        cpu_wrapper, note = amp_on_cpu(optim_wrapper)
        cfg.optim_wrapper = ConfigDict(cpu_wrapper)
        level = logging.INFO if cpu_bf16_feature() else logging.WARNING
        if notes is None:
            print_log(note, logger='current', level=level)
        else:
            notes.append((level, note))

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None  # the Runner then finds the latest checkpoint in work_dir
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def log_exception_to_files(logger: logging.Logger) -> None:
    """Write the exception being handled, with its traceback, to the logger's log files.

    Only the file handlers get it: the console shows the traceback anyway when the exception
    leaves ``main``, and would otherwise show it twice.

    Args:
        logger (logging.Logger): the run's logger (``runner.logger``).
    """
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0,
                               'Training stopped by an exception:', None, sys.exc_info())
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    notes: List[Tuple[int, str]] = []
    cfg = merge_args(Config.fromfile(args.config), args, notes)
    setup_cpu_distributed(cfg)  # no-op unless --launcher is set on a CPU-only machine
    runner = None
    try:
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        for level, note in notes:
            runner.logger.log(level, note)
        runner.train()
    except (Exception, KeyboardInterrupt):
        # A data error raised in a DataLoader or a hook must reach the run's log file too,
        # not only the console. The Runner creates its logger early in its construction.
        log_exception_to_files(runner.logger if runner is not None
                               else MMLogger.get_current_instance())
        raise


if __name__ == '__main__':
    main()
