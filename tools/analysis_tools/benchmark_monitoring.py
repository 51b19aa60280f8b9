#!/usr/bin/env python
"""What seeing a run costs: online validation, health metrics and curves vs training time.

Builds the demo config's Runner (ViT-Tiny, batch 16, n_local 4, CPU) on the demo data, trains
``--iters`` iterations with health metrics at every iteration (the call timed on its own), then
times the validation loop over the held-out ReID split and one curves.{json,png} write. Prints
each cost and their sum as a fraction of training time at the config's own intervals (the demo:
validation every 10 iterations, health every 5, a curves write per validation and at the end):

    python tools/analysis_tools/benchmark_monitoring.py --data-root data/vtest

Time nothing else on the machine meanwhile.
"""
import argparse
import os.path as osp
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / 'configs' / 'saip' / 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=str(DEMO))
    parser.add_argument('--data-root', default=str(ROOT / 'data' / 'vtest'),
                        help='video_to_persons.py output (persons.txt, frames.txt, reid/)')
    parser.add_argument('--iters', type=int, default=4, help='timed training iterations '
                        '(after 1 warm-up)')
    parser.add_argument('--val-repeats', type=int, default=2)
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (0: default)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    import saip_mm  # noqa: F401
    from saip_mm.engine.hooks import SAIPHealthHook, TrainingCurvesHook

    data = args.data_root.rstrip('/') + '/'
    if not osp.isdir(data + 'reid'):
        raise SystemExit(f'{data}reid not found: make the demo data first '
                         f'(tools/dataset_converters/video_to_persons.py --out {data})')
    cfg = Config.fromfile(args.config)
    val_interval = cfg.train_cfg.get('val_interval')
    max_iters = cfg.train_cfg.max_iters
    health_interval = next(h['interval'] for h in cfg.custom_hooks
                           if h['type'] == 'SAIPHealthHook')
    step_times, health_times = [], []

    class _StepTimer(Hook):
        priority = 'VERY_HIGH'

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            step_times.append(time.perf_counter() - self._start)

    with tempfile.TemporaryDirectory() as work:
        cfg.work_dir = work
        cfg.train_dataloader.dataset.data_root = data
        cfg.train_dataloader.dataset.background.data_root = data
        cfg.val_dataloader.dataset.data_root = data + 'reid/'
        cfg.train_cfg.max_iters = args.iters + 1
        cfg.train_cfg.val_interval = 10 ** 9  # validation is timed below, on its own
        cfg.default_hooks.checkpoint = None
        cfg.custom_hooks = [dict(type='SAIPTeacherHook')]
        runner = Runner.from_cfg(cfg)
        health_hook = SAIPHealthHook(interval=1)
        curves_hook = TrainingCurvesHook(loss_interval=1)
        runner.register_hook(health_hook)
        runner.register_hook(curves_hook)
        runner.register_hook(_StepTimer())
        model = runner.model
        original = model.health_metrics

        def timed_health(*a, **kw):
            start = time.perf_counter()
            out = original(*a, **kw)
            health_times.append(time.perf_counter() - start)
            return out

        model.health_metrics = timed_health
        runner.train()
        val_times = []
        for _ in range(args.val_repeats):
            start = time.perf_counter()
            runner.val_loop.run()
            val_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        curves_hook.write(runner)
        curves_time = time.perf_counter() - start
        num_val = len(runner.val_loop.dataloader.dataset)

    step = sorted(step_times[1:])[len(step_times[1:]) // 2]
    health = sorted(health_times[1:])[len(health_times[1:]) // 2]
    val = min(val_times)
    n_val = max_iters // val_interval if val_interval else 0
    n_health = max_iters // health_interval
    train_total = step * max_iters
    monitor_total = n_val * val + n_health * health + (n_val + 1) * curves_time
    print(f'config: {osp.basename(args.config)} ({max_iters} iterations, validation every '
          f'{val_interval}, health every {health_interval}), torch threads '
          f'{torch.get_num_threads()}')
    print(f'training step (median of {len(step_times) - 1}, health included): {step:.3f} s')
    print(f'health metrics (median of {len(health_times) - 1}): {health * 1e3:.2f} ms '
          f'= {100 * health / step:.3f}% of a step')
    print(f'validation over {num_val} images (fastest of {len(val_times)}): {val:.2f} s '
          f'= {val / step:.2f} steps')
    print(f'curves.json + curves.png write: {curves_time * 1e3:.0f} ms')
    print(f'at the config\'s intervals: training {train_total:.1f} s, monitoring '
          f'{monitor_total:.2f} s ({n_val} validations, {n_health} health checks, '
          f'{n_val + 1} curve writes) = {100 * monitor_total / train_total:.2f}% of training')


if __name__ == '__main__':
    main()
