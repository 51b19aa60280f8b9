"""Computations that must run in float32 even inside an autocast region."""
from torch import Tensor, autocast


def autocast_off(tensor: Tensor) -> autocast:
    """A context in which autocast is off on ``tensor``'s device.

    Under ``torch.autocast`` a matmul re-casts its inputs to the low-precision dtype (bf16 or
    fp16) whatever they are, so ``x.float() @ y.float()`` still multiplies in bf16. Inside this
    context every op runs in the dtype of its inputs: ``.float()`` inputs give float32
    arithmetic. The device type is the tensor's: switching autocast off for ``'cpu'`` leaves a
    CUDA autocast region active, and the other way round.

    Args:
        tensor (Tensor): a tensor of the computation (its device picks the autocast type).

    Returns:
        torch.autocast: the context manager (``with autocast_off(x): ...``).
    """
    return autocast(device_type=tensor.device.type, enabled=False)
