"""bf16 autocast on CPU: MMEngine's ``AmpOptimWrapper`` without the accelerator it asserts.

MMEngine 0.10.7's ``AmpOptimWrapper`` refuses to start without a CUDA/NPU/MLU/MUSA device,
so a recipe config (``type='AmpOptimWrapper'``) stops on a CPU with an assertion and
``--amp`` had no CPU path. On CPUs with bf16 units (``avx512_bf16``, AMX, Arm ``bf16``)
``torch.autocast('cpu', dtype=torch.bfloat16)`` runs the SAIP step about 1.6× faster; elsewhere
it is emulated and slower than float32, but still correct.
"""
from contextlib import contextmanager
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

# CPU features that run bf16 matmuls in hardware (names of torch.cpu.get_capabilities(),
# which match /proc/cpuinfo's flags on x86; ``bf16``/``sve_bf16`` are Arm's).
BF16_FEATURES = ('amx_bf16', 'avx512_bf16', 'sve_bf16', 'bf16')


def cpu_bf16_feature() -> Optional[str]:
    """The CPU feature that runs bf16 matmuls natively, or None when bf16 would be emulated.

    Reads ``torch.cpu.get_capabilities()`` (cpuinfo, torch ≥ 2.8); on older torch, the flags
    of ``/proc/cpuinfo`` (Linux).

    Returns:
        str | None: ``'amx_bf16'``, ``'avx512_bf16'``, ``'sve_bf16'`` or ``'bf16'`` (the first
        the CPU has, in that order), or None.
    """
    get_capabilities = getattr(torch.cpu, 'get_capabilities', None)
    if get_capabilities is not None:
        caps = get_capabilities()
        return next((f for f in BF16_FEATURES if caps.get(f) is True), None)
    try:
        with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
            flags = set()
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() in ('flags', 'Features'):  # x86, Arm
                    flags.update(value.split())
    except OSError:
        return None
    return next((f for f in BF16_FEATURES if f in flags), None)


def native_amp_available(device: Optional[str] = None) -> bool:
    """Whether mixed precision runs natively on ``device``: any accelerator, or a CPU with bf16.

    Args:
        device (str, optional): ``'cpu'``, ``'cuda'`` …; by default MMEngine's
            ``get_device()``.
    """
    if device is None:
        from mmengine.device import get_device
        device = get_device()
    return device != 'cpu' or cpu_bf16_feature() is not None


def amp_on_cpu(optim_wrapper: dict) -> Tuple[dict, str]:
    """The CPU counterpart of an ``AmpOptimWrapper`` config, and one line saying what changed.

    ``type`` becomes ``'CPUAmpOptimWrapper'``; ``loss_scale`` is dropped (bf16 keeps float32's
    exponent range, so gradients need no scaling); a ``float16`` ``dtype`` becomes
    ``bfloat16``. Every other field (optimizer, constructor, ``accumulative_counts``,
    ``clip_grad``, ``paramwise_cfg`` …) is kept.

    Args:
        optim_wrapper (dict): an ``optim_wrapper`` config (not changed).

    Returns:
        tuple[dict, str]: the new config and the log line.
    """
    cfg = dict(optim_wrapper)
    dropped = [k for k in ('loss_scale', 'use_fsdp') if cfg.pop(k, None) is not None]
    dtype = cfg.pop('dtype', None)
    cfg['type'] = 'CPUAmpOptimWrapper'
    cfg['dtype'] = 'bfloat16'
    feature = cpu_bf16_feature()
    where = (f'this CPU runs bf16 natively ({feature})' if feature else
             'this CPU has no bf16 units (no avx512_bf16, amx_bf16 or Arm bf16), so '
             'bf16 is emulated and slower than float32; train without AMP for speed')
    note = (f'AMP on CPU: optim_wrapper {optim_wrapper.get("type", "OptimWrapper")} -> '
            f'CPUAmpOptimWrapper, torch.autocast(\'cpu\', torch.bfloat16), no loss scaler')
    if dropped:
        note += f' (dropped {", ".join(dropped)})'
    if dtype not in (None, 'bfloat16', torch.bfloat16):
        note += f' (dtype {dtype} -> bfloat16: float16 would need a loss scaler)'
    return cfg, f'{note}; {where}.'


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """Mixed precision on CPU: ``torch.autocast('cpu', dtype=torch.bfloat16)`` in the step.

    :meth:`optim_context` (the region where MMEngine's ``train_step`` runs the data
    preprocessor and the forward pass) enters bf16 autocast; backward, the optimiser step and
    the parameters stay float32. There is no loss scaler: bf16 has float32's exponent range,
    so small gradients do not underflow the way float16's do. Checkpoints hold the optimiser
    state only, like ``OptimWrapper``; a checkpoint written by ``AmpOptimWrapper`` (a GPU run)
    resumes here (its loss scaler state is dropped), and one written here resumes under
    ``AmpOptimWrapper`` (which then starts a fresh scaler).

    ``tools/train.py --amp`` picks this wrapper on a CPU, and turns a config's
    ``AmpOptimWrapper`` into it (:func:`amp_on_cpu`).

    Args:
        dtype (str | torch.dtype): the autocast dtype; only ``'bfloat16'``. Defaults to
            ``'bfloat16'``.
        **kwargs: ``OptimWrapper``'s arguments (``optimizer``, ``accumulative_counts``,
            ``clip_grad``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype is not torch.bfloat16:
            raise ValueError(f'optim_wrapper.dtype: CPUAmpOptimWrapper autocasts to bfloat16 '
                             f'only (float16 would need a loss scaler), got {dtype}')
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of ``OptimWrapper`` plus bf16 autocast on CPU."""
        with super().optim_context(model), \
                torch.autocast(device_type='cpu', dtype=self.cast_dtype):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        """Load the optimiser state; an ``AmpOptimWrapper``'s ``loss_scaler`` entry is ignored."""
        state_dict = {k: v for k, v in state_dict.items() if k != 'loss_scaler'}
        super().load_state_dict(state_dict)
