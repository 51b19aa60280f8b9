"""Checks shared by the SAIP losses."""
import numbers

from torch import nn


def check_loss_weight(owner: nn.Module, name: str, value, field: str) -> None:
    """Raise a ``TypeError`` naming the config field when a loss weight is not a number.

    A string such as ``'1.0'`` (easy to write in ``--cfg-options``) would otherwise fail deep in
    the loss with torch's ``only integer tensors …``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{type(owner).__name__}: `{name}` must be a number, got {value!r} '
                        f'({type(value).__name__}); set {field}=1.0 (a number, not a string)')
