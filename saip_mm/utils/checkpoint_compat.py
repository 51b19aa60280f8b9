"""Make MMEngine Runner checkpoints loadable with ``torch.load(weights_only=True)``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: the unpickler only rebuilds
tensors, plain containers and globals that were explicitly allow-listed. MMEngine 0.10.7 calls
``torch.load`` without the argument, and a checkpoint written by its Runner holds more than
tensors: the message hub's ``HistoryBuffer`` objects (numpy arrays of float64/int64 inside, and
a dict of the buffer's own statistics methods, pickled as ``getattr(HistoryBuffer, 'min')``),
numpy scalars, and numpy dtype objects. Without an allow-list, ``--resume``, ``load_from`` and
``Pretrained`` init from a full training checkpoint fail with
``UnpicklingError: ... Unsupported global: mmengine.logging.history_buffer.HistoryBuffer``.

We allow-list exactly what a Runner checkpoint needs instead of turning ``weights_only`` off,
so a checkpoint downloaded from the internet still goes through the restricted unpickler.
The list was found by writing real Runner checkpoints (plain and AMP optimizer wrappers,
warm-up + cosine schedulers, message hub) and loading them until nothing was missing; the
tests in ``tests/test_foundation/test_checkpoint_compat.py`` repeat that.
"""
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch

SafeGlobal = Union[Callable, Tuple[Callable, str]]

# Statistics methods that mmengine's HistoryBuffer pickles by reference to itself.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(owner: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` inside weights-only unpickling.

    Python pickles the functions in ``HistoryBuffer._statistics_methods`` as
    ``getattr(HistoryBuffer, 'min')``. Allow-listing the real ``getattr`` would let any
    checkpoint read any attribute of any allow-listed object, so this only resolves
    HistoryBuffer's own statistics methods and rejects everything else.
    """
    from mmengine.logging import HistoryBuffer
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'weights_only load: getattr({owner!r}, {name!r}) is not allowed; saip_mm only '
        f'allows HistoryBuffer statistics methods {_HISTORY_BUFFER_METHODS}.')


def _numpy_globals() -> List[SafeGlobal]:
    """Numpy array/scalar reconstruction functions and the numeric dtype classes.

    Object, void (structured) and string dtypes are left out on purpose: MMEngine never
    writes them, and object arrays are how arbitrary Python objects would ride along.
    """
    if int(np.__version__.split('.')[0]) >= 2:
        from numpy._core import multiarray
    else:
        from numpy.core import multiarray
    reconstruct, scalar = multiarray._reconstruct, multiarray.scalar
    items: List[SafeGlobal] = [
        np.ndarray,
        np.dtype,
        # Files written under numpy 1.x and 2.x name these functions differently.
        (reconstruct, 'numpy.core.multiarray._reconstruct'),
        (reconstruct, 'numpy._core.multiarray._reconstruct'),
        (scalar, 'numpy.core.multiarray.scalar'),
        (scalar, 'numpy._core.multiarray.scalar'),
    ]
    # numpy >= 1.25 gives each dtype its own class; unpickling a dtype BUILDs an instance of it.
    numeric_kinds = (np.bool_, np.number)
    time_kinds = (np.datetime64, np.timedelta64)  # np.timedelta64 subclasses np.integer
    dtypes_module = getattr(np, 'dtypes', None)
    if dtypes_module is not None:
        for name in dir(dtypes_module):
            cls = getattr(dtypes_module, name)
            if not (isinstance(cls, type) and issubclass(cls, np.dtype) and cls is not np.dtype):
                continue
            scalar_type = getattr(cls, 'type', None)
            if (isinstance(scalar_type, type) and issubclass(scalar_type, numeric_kinds)
                    and not issubclass(scalar_type, time_kinds)):
                items.append(cls)
    return items


def _mmengine_globals() -> List[SafeGlobal]:
    from mmengine.logging import HistoryBuffer
    items: List[SafeGlobal] = [
        HistoryBuffer,
        (_history_buffer_method, 'builtins.getattr'),
    ]
    # The Runner stores its config as text, but user code and older tools put ``Config`` /
    # ``ConfigDict`` objects into ``meta``. Both unpickle as plain data (dict items and
    # attribute assignment in ``__setstate__``); nothing is executed or imported.
    from mmengine.config import Config, ConfigDict
    items += [Config, ConfigDict]
    return items


def checkpoint_safe_globals() -> List[SafeGlobal]:
    """Return the globals :func:`register_checkpoint_safe_globals` allow-lists."""
    return _numpy_globals() + _mmengine_globals()


def register_checkpoint_safe_globals() -> None:
    """Allow-list the classes an MMEngine Runner checkpoint holds for weights-only loading.

    Called on ``import saip_mm``. Idempotent: torch keeps the allow-list as a set. Does
    nothing on a torch without ``add_safe_globals`` (< 2.4), where ``weights_only`` is not the
    default anyway. See the module docstring for why this is needed and why we do not simply
    pass ``weights_only=False``.
    """
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return
    add_safe_globals(checkpoint_safe_globals())
