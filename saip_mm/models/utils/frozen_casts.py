"""Run a frozen module under autocast with its matmul weights cast once, not at every call.

Under ``torch.autocast`` every ``nn.Linear``/``nn.Conv*`` call casts its float32 weight and
bias to the autocast dtype. Autocast caches those casts for the rest of the autocast region,
but only for leaf tensors that require a gradient: the parameters of a frozen module (SAIP's
EMA teacher, ``requires_grad=False``) are cast again at every call, in every step, although
they change only once per step (the EMA update).
"""
from typing import Any, Dict, Tuple

import torch
import torch.nn as nn
from torch import Tensor

# Modules whose weight and bias autocast casts to the low-precision dtype (linear, conv).
MATMUL_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class FrozenWeightCasts:
    """Autocast-dtype copies of a frozen module's linear/conv weights, made once per change.

    ``casts(module, *args, **kwargs)`` is ``module(*args, **kwargs)``. Inside an autocast
    region it runs the module (``torch.func.functional_call``) with bf16/fp16 copies of the
    weights and biases of its ``nn.Linear``/``nn.Conv*`` layers, made the first time and again
    only when one of them has changed (in-place update: the EMA, a checkpoint load; or a move
    to another device) or the autocast dtype differs. The outputs are those of the plain call
    bit for bit (the cast is the one autocast does: round to nearest even); the module's own
    float32 parameters (what the EMA updates, checkpoints save and exports read) are untouched.
    Other parameters (norms, position embeddings, tokens, raw ``nn.Parameter`` matrices) are
    used as they are, as autocast would. Outside autocast the module runs as it is.

    The copies are held here, not in the module: they are not parameters, buffers nor
    state-dict entries. One instance serves several modules (keyed by the module);
    :meth:`release` drops the copies (a caller that knows the weights are about to change frees
    their memory at once).
    """

    def __init__(self) -> None:
        self._cache: Dict[int, Tuple[tuple, Dict[str, Tensor]]] = {}

    @staticmethod
    def matmul_parameters(module: nn.Module) -> Dict[str, Tensor]:
        """The weights and biases of the linear/conv layers in ``module``, by name."""
        params = {}
        for prefix, layer in module.named_modules():
            if isinstance(layer, MATMUL_MODULES):
                for name, p in layer.named_parameters(recurse=False):
                    params[f'{prefix}.{name}' if prefix else name] = p
        return params

    def weights(self, module: nn.Module, dtype: torch.dtype) -> Dict[str, Tensor]:
        """The ``dtype`` copies of :meth:`matmul_parameters`, remade when one has changed."""
        params = self.matmul_parameters(module)
        # A parameter changes in place (version counter) or is replaced (storage).
        key = (dtype, tuple((name, p.data_ptr(), p._version) for name, p in params.items()))
        cached = self._cache.get(id(module))
        if cached is None or cached[0] != key:
            self._cache.pop(id(module), None)  # the stale copies go before the new ones come
            with torch.no_grad():
                cached = (key, {name: p.detach().to(dtype) for name, p in params.items()})
            self._cache[id(module)] = cached
        return cached[1]

    def release(self) -> None:
        """Drop every copy (they are remade at the next call under autocast)."""
        self._cache.clear()

    def __call__(self, module: nn.Module, *args, **kwargs) -> Any:
        param = next(module.parameters(), None)
        device_type = param.device.type if param is not None else 'cpu'
        if param is None or not torch.is_autocast_enabled(device_type) or \
                param.requires_grad:  # a trainable module: autocast's own cache applies
            return module(*args, **kwargs)
        weights = self.weights(module, torch.get_autocast_dtype(device_type))
        return torch.func.functional_call(module, weights, args, kwargs)
