"""A transformer MLP that keeps less for the backward pass.

Autograd keeps two (tokens × hidden) tensors per MLP for the backward pass: the GELU input
(for GELU's derivative) and the GELU output (for the second linear layer's weight gradient).
:class:`LeanFFN` keeps only the GELU input and recomputes the output during the backward pass:
the values and gradients are those of mmcv's ``FFN``; what changes is peak memory (one hidden
tensor less per block: with SAIP's reference step about a tenth of the activation memory) at
the cost of one more GELU per MLP in the backward pass.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import FFN
from torch import Tensor


class _GeluLinear(torch.autograd.Function):
    """``linear(gelu(h), weight, bias)`` saving ``h`` (not ``gelu(h)``) for the backward."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        # The second linear runs in the dtype of h: under autocast that is the autocast dtype,
        # as for a plain nn.Linear; the backward (outside autocast) casts the same way.
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        if torch.is_autocast_enabled(h.device.type):
            # Autocast casts the weight: once per autocast region for a trainable weight (its
            # cache), not at every call of this MLP, as an explicit .to() would.
            return F.linear(F.gelu(h), weight, bias)
        w = weight.to(h.dtype)
        b = None if bias is None else bias.to(h.dtype)
        return F.linear(F.gelu(h), w, b)

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, weight = ctx.saved_tensors
        grad = grad.to(h.dtype)
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            a = F.gelu(h)  # recomputed, not stored
            grad_w = (grad.reshape(-1, grad.shape[-1]).t()
                      @ a.reshape(-1, a.shape[-1])).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.reshape(-1, grad.shape[-1]).sum(0).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            grad_h = torch.ops.aten.gelu_backward(grad @ weight.to(h.dtype), h)
        return grad_h, grad_w, grad_b


class LeanFFN(FFN):
    """mmcv's ``FFN`` (two linear layers, exact GELU, no dropout) with :class:`_GeluLinear`.

    Same parameters and state-dict keys as ``FFN``; made by :func:`use_lean_ffn`, which swaps
    the class of eligible ``FFN`` instances in place.
    """

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        fc1, fc2 = self.layers[0][0], self.layers[1]
        h = fc1(x)  # under autocast: already in the autocast dtype
        out = _GeluLinear.apply(h, fc2.weight, fc2.bias)
        out = self.gamma2(out)
        if not self.add_identity:
            return self.dropout_layer(out)
        return (x if identity is None else identity) + self.dropout_layer(out)


def _eligible(m: nn.Module) -> bool:
    if type(m) is not FFN or len(m.layers) != 3:  # num_fcs == 2: [fc1, act, drop], fc2, drop
        return False
    first = m.layers[0]
    act_ok = isinstance(first[1], nn.GELU) and first[1].approximate == 'none'
    drops = (first[2], m.layers[2])
    return act_ok and all(isinstance(d, nn.Dropout) and d.p == 0 for d in drops)


def use_lean_ffn(module: nn.Module) -> int:
    """Turn every eligible mmcv ``FFN`` inside ``module`` into a :class:`LeanFFN`.

    Eligible: exactly ``FFN`` with two linear layers, exact GELU and zero dropout (the SAIP
    backbone and heads); others are left as they are.

    Returns:
        int: how many MLPs were changed.
    """
    count = 0
    for m in module.modules():
        if _eligible(m):
            m.__class__ = LeanFFN
            count += 1
    return count
