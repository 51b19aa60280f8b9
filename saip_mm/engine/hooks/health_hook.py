"""Label-free health metrics of a SAIP run, and an alarm when they say it collapsed."""
import math
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

#: Checkpoint key of the alarm's state (so a resumed run goes on counting its streak).
CHECKPOINT_KEY = 'saip_health'


def checkpoint_iteration(path: str) -> Optional[int]:
    """The ``meta['iter']`` of a Runner checkpoint (finished iterations), None if unreadable.

    The file is memory-mapped: only the pickled metadata is read, not the weights.
    """
    try:
        ckpt = torch.load(path, map_location='cpu', mmap=True)
        return int(ckpt['meta']['iter'])
    except Exception:  # a remote path, another format, a file being replaced: not judged
        return None


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
    and says "collapse". The streak lives in checkpoints: a resumed run goes on counting it
    (weights loaded with ``load_from`` start a new count). A NaN value (non-finite features:
    the step's loss is then non-finite too, and ``SAIP.parse_losses`` stops the run naming
    the loss terms) is logged with a warning and neither extends nor ends a streak.

    With ``on_collapse='stop'`` the run then raises :class:`CollapseError` before this
    iteration's checkpoint is written (this hook runs before the checkpoint hook), after
    closing the visualizer's backends (TensorBoard, W&B flush what they hold); the curves
    of :class:`TrainingCurvesHook` are written on the way out with every point up to the stop.
    The error names the checkpoint ``last_checkpoint`` points to (the one ``--resume``
    takes) and judges it by the iteration in its meta: a checkpoint of iteration ``k``
    (``meta['iter']``, finished iterations) holds the weights after ``k`` steps, which are
    what the check of iteration ``k + 1`` (``runner.iter + 1``) measures. With the first
    unhealthy check at iteration ``f`` it therefore predates the unhealthy checks iff
    ``k <= f - 2``; ``k = f - 1`` holds the very weights found unhealthy.

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
        # per rule: consecutive crossing checks, and the iteration of the first of them
        self._streak: Dict[str, int] = {}
        self._first_bad: Dict[str, int] = {}
        self._loaded: Optional[dict] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Saved in after_train_iter after this hook's check of the same iteration: the streak
        # includes it, and a run resumed from here continues with the next check.
        checkpoint[CHECKPOINT_KEY] = dict(streak=dict(self._streak),
                                          first_bad=dict(self._first_bad))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        self._streak, self._first_bad = {}, {}
        # only a resumed run continues the count, not weights loaded with load_from
        if loaded is None or runner.iter == 0:
            return
        self._streak = {k: int(v) for k, v in loaded.get('streak', {}).items()}
        self._first_bad = {k: int(v) for k, v in loaded.get('first_bad', {}).items()}

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
        not_finite = sorted(k for k, v in health.items() if not math.isfinite(v))
        if not_finite:
            runner.logger.warning(
                f'Health(iter {it}): {not_finite} not finite: the features of this step hold '
                f'NaN/inf (check the inputs: data_preprocessor or pipeline mean/std, and the '
                f'lr). These values count neither towards nor against the collapse rules.')
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
            if not math.isfinite(value):  # no evidence either way: the streak stays
                continue
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
                where = self._newest_checkpoint(runner, self._first_bad[name])
                # MMEngine closes the backends only in after_run, which an exception skips;
                # TrainingCurvesHook writes its curves on the way out by itself.
                runner.visualizer.close()
                raise CollapseError(f'SAIP: stopped: {message} {where}')

    @staticmethod
    def _newest_checkpoint(runner, first_bad: int) -> str:
        """Where the run can restart from, and whether that checkpoint is already unhealthy.

        Judges the checkpoint ``<work_dir>/last_checkpoint`` names (what ``--resume`` takes;
        not a best checkpoint, nor ``load_from``) by the iteration in its meta, ``k``: it holds
        the weights after ``k`` steps, measured by the check of iteration ``k + 1``. It
        predates the unhealthy checks iff ``k + 1 < first_bad``.

        Args:
            runner (Runner): the runner (its ``work_dir``).
            first_bad (int): the iteration (1-based, ``runner.iter + 1``) of the first
                unhealthy check.
        """
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            return 'No checkpoint was written before the alarm.'
        with open(pointer) as f:
            ckpt = f.read().strip()
        ckpt_iter = checkpoint_iteration(ckpt)
        if ckpt_iter is None:
            return (f'The newest checkpoint is {ckpt}; its iteration could not be read, so '
                    f'whether it predates the first unhealthy check (iteration {first_bad}) is '
                    f'unknown.')
        if ckpt_iter + 1 >= first_bad:
            return (f'The newest checkpoint, {ckpt} (after iteration {ckpt_iter}), does not '
                    f'predate the unhealthy checks: the first, at iteration {first_bad}, '
                    f'measured the weights after iteration {first_bad - 1}; resume from an '
                    f'earlier one.')
        return (f'The newest checkpoint, {ckpt} (after iteration {ckpt_iter}), predates the '
                f'unhealthy checks (the first, at iteration {first_bad}, measured the weights '
                f'after iteration {first_bad - 1}).')
