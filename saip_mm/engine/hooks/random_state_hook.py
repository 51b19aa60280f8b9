"""Random generator states in checkpoints, so that ``--resume`` continues bit-exactly."""
import random
from typing import Iterator, Optional

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop
from mmpretrain.registry import HOOKS

#: Checkpoint key of the saved states.
CHECKPOINT_KEY = 'rng_state'


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


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generator states in each checkpoint; restore them on resume.

    MMEngine's resume restores the model, optimizer, schedulers and the sampler position but
    reseeds the generators, so augmentations and SAIP's random masks and rescale factors after
    a resume differ from those of an uninterrupted run. With this hook (and
    ``randomness=dict(seed=..., deterministic=True)``) an interrupted and resumed run gives
    bit-identical weights.

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

    Distributed runs: only the main process writes the checkpoint, so only its states are
    saved; restoring them on every rank would give all ranks the same masks and augmentations.
    With more than one process nothing is restored (a warning says so) and each rank is
    reseeded as MMEngine does (``randomness.diff_rank_seed``).

    Loading weights without resuming (``load_from``) restores nothing.
    """
    priority = 'LOWEST'  # restore after every other hook's before_train

    def __init__(self) -> None:
        self._resumed_state: Optional[dict] = None
        self._before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # A checkpoint written during validation (save_best) holds the training stream's
        # states, those that validation will hand back, not validation's own.
        checkpoint[CHECKPOINT_KEY] = self._before_val or get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Kept until before_train: only a resumed run (which continues at the checkpoint's
        # iteration) restores it, not load_from.
        self._resumed_state = checkpoint.get(CHECKPOINT_KEY, {})

    def before_train(self, runner) -> None:
        state, self._resumed_state = self._resumed_state, None
        if state is None or (runner.iter == 0 and runner.epoch == 0):
            return  # nothing loaded, or weights loaded without resuming
        if not state:
            runner.logger.warning(
                f'the checkpoint has no `{CHECKPOINT_KEY}` (saved without RandomStateHook): '
                'random generators are reseeded, so the resumed run is not bit-exact.')
            return
        if get_world_size() > 1:
            runner.logger.warning(
                'RandomStateHook restores random generator states in single-process runs only '
                '(the checkpoint holds the main process\'s); this distributed run is reseeded, '
                'so it is not bit-exact.')
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

    def before_val(self, runner) -> None:
        self._before_val = get_rng_state()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_rng_state(self._before_val)
            self._before_val = None
