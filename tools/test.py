"""Evaluate a checkpoint with the test split of an MMEngine config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                                           [--cfg-options k=v ...] [--launcher none|pytorch|slurm]
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
from typing import List, Optional

if importlib.util.find_spec('saip_mm') is None:  # a checkout that is not pip-installed
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
# Importing saip_mm first registers our modules and makes full Runner checkpoints loadable
# with torch.load(weights_only=True).
import saip_mm  # noqa: F401,E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from saip_mm.utils.cpu_distributed import setup_cpu_distributed  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a checkpoint with MMEngine (saip_mm)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, key=value; a list is key="[a,b]" or key=a,b, no spaces')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config; CLI flags win over ``--cfg-options``."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint

    if cfg.get('test_dataloader', None) is None or cfg.get('test_evaluator', None) is None:
        raise ValueError(f'{args.config} has no test_dataloader/test_evaluator to test with.')
    if args.out is not None:
        # mmengine's DumpResults metric writes every prediction; keep the config's metrics.
        evaluators = cfg.test_evaluator
        if not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        cfg.test_evaluator = list(evaluators) + [
            dict(type='mmengine.DumpResults', out_file_path=args.out)
        ]
    return cfg


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    setup_cpu_distributed(cfg)  # no-op unless --launcher is set on a CPU-only machine
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    return runner.test()


if __name__ == '__main__':
    main()
