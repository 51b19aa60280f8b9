"""Label-free health metrics of a SAIP run, and an alarm when they say it collapsed."""
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce, get_comm_device, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

#: Message-hub prefix of the health scalars (not ``train/``: MMEngine's log processor would
#: average them over its window as if they were logged every iteration).
HEALTH_PREFIX = 'health/'

#: Default collapse rules, measured (README, "Seeing what a run learns"): metric -> (op, limit).
DEFAULT_COLLAPSE_RULES: Dict[str, Tuple[str, float]] = {
    'cosine_student': ('>', 0.99),
}

_OPS = {'<': lambda v, t: v < t, '>': lambda v, t: v > t}


class CollapseError(RuntimeError):
    """A run stopped by :class:`SAIPHealthHook` because its representation collapsed."""


@HOOKS.register_module()
class SAIPHealthHook(Hook):
    """Log label-free health metrics every ``interval`` iterations; warn (or stop) on collapse.

    On every ``interval``-th iteration the model's step also returns the collapse indicators of
    :meth:`SAIP.health_metrics` (RankMe and mean cosine between different images of the student
    and the teacher cls features, the CSM teacher's entropy / log K, student–teacher
    agreement), from the features the step already computed: a few small reductions and one SVD
    of a (B, C) matrix, no extra forward. They are logged as ``health/<name>`` scalars (log
    line, the visualizer's backends: ``vis_data/scalars.json``, TensorBoard, W&B), averaged over
    processes in a distributed run.

    **Collapse alarm**: when one metric crosses its rule in ``collapse_rules`` at ``patience``
    consecutive checks, a warning names the metric, its value, the limit and the iteration,
    and says "collapse". With ``on_collapse='stop'`` the run then raises
    :class:`CollapseError` before this iteration's checkpoint is written (this hook runs before
    the checkpoint hook), so the newest checkpoint predates the alarm; the error names it and
    says whether it was written during the unhealthy checks.

    Default rule, measured (README, "Seeing what a run learns"): ``cosine_student > 0.99``
    (every image gets nearly the same feature). Over iterations 5–40, a healthy ViT-Tiny demo
    run stays at 0.88–0.97 and a healthy small ViT at 0.60–0.95; the same small ViT at lr 1e-2
    collapses to 0.96–1.00, above 0.99 from iteration 23. RankMe and ``csm_entropy`` are logged
    but are no default rule: RankMe's healthy range grows with the batch (at most
    min(B, C)), and the CSM teacher's entropy of a healthy ViT-Tiny run climbs to 0.97 of its
    maximum early in training, as high as a collapsed run's.

    Args:
        interval (int): iterations between checks. Defaults to 10.
        collapse_rules (dict, optional): metric -> (``'<'`` or ``'>'``, limit); a metric the
            model does not report is ignored. None takes :data:`DEFAULT_COLLAPSE_RULES`; an
            empty dict switches the alarm off.
        patience (int): consecutive crossing checks before the alarm. Defaults to 3.
        on_collapse (str): ``'warn'`` (log a warning, go on) or ``'stop'`` (warn, then raise
            :class:`CollapseError`). Defaults to 'warn'.
    """
    priority = 'NORMAL'  # after_train_iter: before CheckpointHook (VERY_LOW)

    def __init__(self,
                 interval: int = 10,
                 collapse_rules: Optional[Dict[str, Sequence]] = None,
                 patience: int = 3,
                 on_collapse: str = 'warn') -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'SAIPHealthHook: interval must be a positive integer, got '
                             f'{interval!r}')
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f'SAIPHealthHook: patience must be a positive integer, got '
                             f'{patience!r}')
        if on_collapse not in ('warn', 'stop'):
            raise ValueError(f"SAIPHealthHook: on_collapse must be 'warn' or 'stop', got "
                             f'{on_collapse!r}')
        rules = DEFAULT_COLLAPSE_RULES if collapse_rules is None else collapse_rules
        self.collapse_rules: Dict[str, Tuple[str, float]] = {}
        for name, rule in rules.items():
            if (not isinstance(rule, (list, tuple)) or len(rule) != 2 or rule[0] not in _OPS
                    or not isinstance(rule[1], (int, float))):
                raise ValueError(f"SAIPHealthHook: collapse_rules[{name!r}] must be ('<' or "
                                 f"'>', number), got {rule!r}")
            self.collapse_rules[name] = (rule[0], float(rule[1]))
        self.interval = interval
        self.patience = patience
        self.on_collapse = on_collapse
        self._streak: Dict[str, int] = {}
        self._first_bad: Dict[str, int] = {}
        # iteration of the newest checkpoint saved or resumed from (read from its meta: the
        # file name counts epochs in an epoch-based run)
        self._ckpt_iter: Optional[int] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self._ckpt_iter = checkpoint.get('meta', {}).get('iter', runner.iter)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._ckpt_iter = checkpoint.get('meta', {}).get('iter')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.every_n_train_iters(runner, self.interval):
            model = self._model(runner)
            if hasattr(model, 'health_due'):
                model.health_due = True

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = self._model(runner)
        health = getattr(model, 'health', None)
        if not health:  # not a check, or a batch of one image
            return
        model.health = None
        health = self._reduce(health)
        it = runner.iter + 1
        hub = runner.message_hub
        for name, value in health.items():
            hub.update_scalar(HEALTH_PREFIX + name, value)
        hub.update_info('health_iter', it)
        runner.visualizer.add_scalars({HEALTH_PREFIX + k: v for k, v in health.items()}, step=it)
        runner.logger.info(f'Health(iter {it}): ' +
                           '  '.join(f'{k}: {v:.4f}' for k, v in health.items()))
        self._check(runner, health, it)

    @staticmethod
    def _reduce(health: Dict[str, float]) -> Dict[str, float]:
        """The mean over processes (every rank then takes the same alarm decision)."""
        if not is_distributed():
            return health
        names = sorted(health)
        values = torch.tensor([health[n] for n in names], dtype=torch.float64,
                              device=get_comm_device())
        all_reduce(values, op='mean')
        return dict(zip(names, values.tolist()))

    def _check(self, runner, health: Dict[str, float], it: int) -> None:
        for name, (op, limit) in self.collapse_rules.items():
            if name not in health:
                continue
            value = health[name]
            if not _OPS[op](value, limit):
                self._streak[name] = 0
                continue
            self._streak[name] = self._streak.get(name, 0) + 1
            if self._streak[name] == 1:
                self._first_bad[name] = it
            if self._streak[name] != self.patience:
                continue
            message = (f'representation collapse suspected at iteration {it}: {name}={value:.4f} '
                       f'{op} {limit:g} at {self.patience} consecutive checks (every '
                       f'{self.interval} iterations, since iteration {self._first_bad[name]}). '
                       f'Every image is being mapped to nearly the same feature; lower the lr '
                       f'or check the data. Thresholds: SAIPHealthHook(collapse_rules=...).')
            runner.logger.warning(message)
            if self.on_collapse == 'stop':
                where = self._newest_checkpoint(runner, self._ckpt_iter, self._first_bad[name])
                raise CollapseError(f'SAIP: stopped: {message} {where}')

    @staticmethod
    def _newest_checkpoint(runner, ckpt_iter: Optional[int], first_bad: int) -> str:
        """Where the run can restart from, and whether that checkpoint is already unhealthy."""
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            return 'No checkpoint was written before the alarm.'
        with open(pointer) as f:
            ckpt = f.read().strip()
        if ckpt_iter is not None and ckpt_iter >= first_bad:
            return (f'The newest checkpoint {ckpt} was written after the first unhealthy check '
                    f'(iteration {first_bad}); resume from an earlier one.')
        return f'The newest checkpoint, {ckpt}, predates the unhealthy checks.'
