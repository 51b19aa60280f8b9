"""Random generator states in checkpoints, so that ``--resume`` continues bit-exactly."""
import random
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import IterBasedTrainLoop
from mmpretrain.registry import HOOKS

#: Checkpoint key of the main process's states (what readers of older checkpoints expect).
CHECKPOINT_KEY = 'rng_state'
#: Checkpoint key of every process's states: a list indexed by rank, one entry per process.
CHECKPOINT_KEY_ALL = 'rng_states'


def get_rng_state() -> dict:
    """The states of Python's ``random``, NumPy's global and torch's CPU/CUDA generators.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` and, when CUDA is initialised, ``cuda`` (one
        state per device). Only lists, ints, floats, strings and tensors, so the checkpoint
        still loads with ``torch.load(weights_only=True)``.
    """
    version, internal, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = dict(
        python=[version, list(internal), gauss_next],
        numpy=dict(bit_generator=numpy_state['bit_generator'],
                   key=torch.from_numpy(numpy_state['state']['key'].astype(np.int64)),
                   pos=int(numpy_state['state']['pos']),
                   has_gauss=int(numpy_state['has_gauss']),
                   gauss=float(numpy_state['gauss'])),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generator states returned by :func:`get_rng_state`.

    Args:
        state (dict): the saved states. CUDA states are restored when this process has CUDA
            and as many devices as the saving process.

    Raises:
        ValueError: CUDA states were saved for a different number of devices.
    """
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state['numpy']
    np.random.set_state(dict(
        bit_generator=numpy_state['bit_generator'],
        state=dict(key=numpy_state['key'].cpu().numpy().astype(np.uint32), pos=numpy_state['pos']),
        has_gauss=numpy_state['has_gauss'], gauss=numpy_state['gauss']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        if len(state['cuda']) != torch.cuda.device_count():
            raise ValueError(
                f'the checkpoint holds CUDA random states of {len(state["cuda"])} device(s), '
                f'this process sees {torch.cuda.device_count()}: resume with the same '
                'CUDA_VISIBLE_DEVICES, or drop RandomStateHook to resume non-bit-exactly.')
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


class _RestoreAfterSkip:
    """Wrap the train loop's data iterator; restore ``state`` after the first ``skip`` batches.

    On resume MMEngine's ``IterBasedTrainLoop`` replays (loads and drops) the batches already
    trained on; with ``num_workers=0`` that replay draws random numbers in this process.
    Restoring the saved states after it makes the next batch the one the run would have drawn.
    """

    def __init__(self, iterator: Iterator, skip: int, state: dict) -> None:
        self._iterator = iterator
        self._left = skip
        self._state = state

    def __iter__(self) -> '_RestoreAfterSkip':
        return self

    def __next__(self):
        batch = next(self._iterator)
        if self._left > 0:
            self._left -= 1
            if self._left == 0:
                set_rng_state(self._state)
        return batch

    def __getattr__(self, name: str):
        return getattr(self._iterator, name)


def checkpoint_due(runner, by_epoch: bool) -> bool:
    """Whether a ``CheckpointHook`` of ``runner`` saves at this iteration (``by_epoch=False``)
    or epoch (``by_epoch=True``), by its own interval, ``save_begin`` and ``save_last``."""
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
            continue
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner))
        else:
            due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_iter(runner))
        if due:
            return True
    return False


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generator states in each checkpoint; restore them on resume.

    MMEngine's resume restores the model, optimizer, schedulers and the sampler position but
    reseeds the generators, so augmentations and SAIP's random masks and rescale factors after
    a resume differ from those of an uninterrupted run. With this hook (and
    ``randomness=dict(seed=..., deterministic=True)``) an interrupted and resumed run gives
    bit-identical weights, in one process or in several.

    What is restored: Python's ``random``, NumPy's global generator, torch's CPU generator and,
    when the run uses CUDA, the CUDA generators of this process. With an iteration-based loop
    they are restored after MMEngine replays the already-trained batches, right before the next
    one; with an epoch-based loop at the start of training.

    What is not: the generators of DataLoader worker processes (``num_workers > 0``). MMEngine
    seeds each worker from the config seed when the worker starts (``worker_init_fn``), so the
    workers' draws depend on how many batches they made since they started: an
    iteration-based run replays its batches from the start on resume and gets them back; with
    ``persistent_workers=True`` and an epoch-based loop the resumed workers start again from
    the seed, so augmentations differ from the uninterrupted run. Random numbers drawn by a
    validation loop are kept out of the training stream (states are saved before validation
    and restored after), because a resumed run does not repeat that validation.

    Distributed runs: every process has its own states (``randomness.diff_rank_seed``), but
    only the main process writes the checkpoint, and it alone runs ``before_save_checkpoint``
    (``Runner.save_checkpoint`` is ``master_only``). So the states are gathered from every
    rank (``all_gather_object``) at a moment all ranks reach right before a save: after a
    training iteration or epoch at which a ``CheckpointHook`` of the runner saves (this hook's
    priority, 80, puts it after the ``LOW`` hooks and before the ``VERY_LOW`` checkpoint hook),
    and before each validation (for ``save_best``). The checkpoint holds them under
    ``rng_states`` (a list indexed by rank) and the main process's under ``rng_state``, as
    before. On resume each rank restores its own entry when the run has as many processes as
    the saving one; otherwise nothing is restored: a warning names both world sizes and the
    ranks are reseeded as MMEngine does. A checkpoint saved at a moment nobody announced (a
    direct ``runner.save_checkpoint`` call in a distributed run) holds the main process's
    states only, with a warning.

    Loading weights without resuming (``load_from``) restores nothing.
    """
    # After LOW hooks (which may still draw random numbers after an iteration) and before the
    # CheckpointHook (VERY_LOW, 90), which saves at that moment.
    priority = 80

    def __init__(self) -> None:
        self._loaded: Optional[dict] = None  # the resumed checkpoint's states
        self._before_val: Optional[List[dict]] = None  # every rank's, during validation
        # (runner.iter, runner.epoch, every rank's states) gathered for a save at that moment
        self._gathered: Optional[Tuple[int, int, List[dict]]] = None

    def _gather(self, runner) -> None:
        self._gathered = (runner.iter, runner.epoch, all_gather_object(get_rng_state()))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if get_world_size() > 1 and checkpoint_due(runner, by_epoch=False):
            self._gather(runner)

    def after_train_epoch(self, runner) -> None:
        if get_world_size() > 1 and checkpoint_due(runner, by_epoch=True):
            self._gather(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Main process only. A checkpoint written during validation (save_best) holds the
        # training stream's states, those that validation will hand back, not validation's own.
        if self._before_val is not None:
            states = self._before_val
        elif get_world_size() == 1:
            states = [get_rng_state()]
        elif self._gathered is not None and self._gathered[:2] == (runner.iter, runner.epoch):
            states = self._gathered[2]
        else:
            runner.logger.warning(
                'RandomStateHook: this checkpoint is saved at a moment the other processes did '
                'not announce (not by a CheckpointHook), so it holds the main process\'s random '
                'states only; a run resumed from it is reseeded, not bit-exact.')
            checkpoint[CHECKPOINT_KEY] = get_rng_state()
            return
        checkpoint[CHECKPOINT_KEY] = states[0]
        checkpoint[CHECKPOINT_KEY_ALL] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Kept until before_train: only a resumed run (which continues at the checkpoint's
        # iteration) restores it, not load_from.
        self._loaded = {k: checkpoint[k] for k in (CHECKPOINT_KEY, CHECKPOINT_KEY_ALL)
                        if k in checkpoint}

    def before_train(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None or (runner.iter == 0 and runner.epoch == 0):
            return  # nothing loaded, or weights loaded without resuming
        state = self._own_state(runner, loaded)
        if state is None:
            return
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreAfterSkip(loop.dataloader_iterator,
                                                         runner.iter, state)
            runner.logger.info('Random generator states from the checkpoint are restored '
                               f'after the {runner.iter} replayed batches.')
        else:
            set_rng_state(state)
            runner.logger.info('Random generator states restored from the checkpoint.')

    @staticmethod
    def _own_state(runner, loaded: dict) -> Optional[dict]:
        """This rank's saved states, or None (with a warning) when there are none for it."""
        if not loaded:
            runner.logger.warning(
                f'the checkpoint has no `{CHECKPOINT_KEY}` (saved without RandomStateHook): '
                'random generators are reseeded, so the resumed run is not bit-exact.')
            return None
        # Checkpoints of older versions hold the main process's states only.
        states = loaded.get(CHECKPOINT_KEY_ALL) or [loaded[CHECKPOINT_KEY]]
        world_size = get_world_size()
        if len(states) != world_size:
            saved = (f'{len(states)} process' + ('es' if len(states) > 1 else '')
                     if CHECKPOINT_KEY_ALL in loaded else
                     'the main process only (an older checkpoint)')
            runner.logger.warning(
                f'the checkpoint holds the random generator states of {saved}, this run has '
                f'{world_size} process(es): random generators are reseeded, so the resumed run '
                'is not bit-exact (resume with as many processes to continue exactly).')
            return None
        return states[get_rank()]

    def before_val(self, runner) -> None:
        self._before_val = all_gather_object(get_rng_state())

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_rng_state(self._before_val[get_rank()])
            self._before_val = None
