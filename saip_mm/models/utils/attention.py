"""Attention products that are fast in the precision a step runs in."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def cpu_low_precision(query: Tensor) -> bool:
    """Whether ``query`` is on the CPU inside a bf16/fp16 autocast region."""
    return (query.device.type == 'cpu' and torch.is_autocast_enabled('cpu')
            and torch.get_autocast_dtype('cpu') in (torch.bfloat16, torch.float16))


def scaled_dot_product_attention(query: Tensor,
                                 key: Tensor,
                                 value: Tensor,
                                 attn_mask: Optional[Tensor] = None,
                                 dropout_p: float = 0.,
                                 is_causal: bool = False,
                                 scale: Optional[float] = None) -> Tensor:
    """``F.scaled_dot_product_attention``, as explicit products under CPU bf16 autocast.

    Same arguments and result. PyTorch's fused CPU kernel (flash attention) is the fastest in
    float32, but under ``torch.autocast('cpu', torch.bfloat16)`` it is several times slower
    than the explicit form ``softmax(q·kᵀ·s + mask)·v``, whose two products are bf16 GEMMs
    (measured on this project's 2-core CPU, 129 tokens, 3 heads of 64, forward + backward:
    flash 33 ms, explicit 9 ms; float32: flash 20 ms, explicit 23 ms). Autocast runs the
    softmax in float32 either way. The explicit form keeps the (B, heads, N, N) attention
    weights for the backward pass, as the reference's timm blocks do.

    Args:
        query, key, value (Tensor): (B, heads, N, d), (B, heads, M, d), (B, heads, M, d_v).
        attn_mask (Tensor, optional): additive float mask broadcastable to (B, heads, N, M),
            or a boolean mask (True = attend).
        dropout_p (float): dropout on the attention weights. Defaults to 0.
        is_causal (bool): causal masking. Defaults to False.
        scale (float, optional): defaults to ``d ** -0.5``.

    Returns:
        Tensor: (B, heads, N, d_v).
    """
    if is_causal or not cpu_low_precision(query):
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                              dropout_p=dropout_p, is_causal=is_causal,
                                              scale=scale)
    scale = query.shape[-1]**-0.5 if scale is None else scale
    weights = (query * scale) @ key.transpose(-2, -1)  # (B, heads, N, M)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            weights = weights.masked_fill(~attn_mask, float('-inf'))
        else:
            weights = weights + attn_mask
    weights = weights.softmax(dim=-1)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p)
    return weights @ value


def use_fast_attention(model: nn.Module) -> int:
    """Point every mmpretrain ``MultiheadAttention`` of ``model`` at
    :func:`scaled_dot_product_attention`.

    mmpretrain's attention calls ``self.scaled_dot_product_attention`` (PyTorch's fused kernel);
    only modules that use that kernel are switched, so a module built with another
    implementation keeps it. Parameters and outputs are unchanged.

    Returns:
        int: the number of modules switched.
    """
    switched = 0
    for module in model.modules():
        if getattr(module, 'scaled_dot_product_attention', None) is \
                F.scaled_dot_product_attention:
            module.scaled_dot_product_attention = scaled_dot_product_attention
            switched += 1
    return switched
