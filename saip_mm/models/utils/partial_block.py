"""Run a transformer block for some output tokens only.

In a network's last block (and a head's last block) every token is a key and a value, but
often only a few outputs are read: the cls token of a backbone whose ``last`` output feeds the
CSM head, the cls token of the CSS query path, the removed patches of the CSR decoder. The other
rows of the attention output, the projection and the MLP are work whose result is thrown away;
skipping them gives the same outputs for the rows that are kept (same formulas, the GEMMs differ
only in their number of rows).
"""
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

Rows = Union[int, Tensor]


def take_rows(x: Tensor, rows: Rows) -> Tensor:
    """``x[:, :rows]`` for an int, a per-sample gather for a (B, M) index tensor."""
    if isinstance(rows, int):
        return x[:, :rows]
    return torch.gather(x, 1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def finish_block(layer: torch.nn.Module, x: Tensor, attn_out: Tensor) -> Tensor:
    """The rest of an mmpretrain ``TransformerEncoderLayer`` after its attention products.

    Args:
        layer (TransformerEncoderLayer): the block.
        x (Tensor): the block's input rows (B, M, C) (the residual).
        attn_out (Tensor): attention output of those rows, heads merged, (B, M, C).

    Returns:
        Tensor: the block's output rows: projection, residual, then the MLP with its residual.
    """
    attn = layer.attn
    x = x + attn.out_drop(attn.gamma1(attn.proj_drop(attn.proj(attn_out))))
    return layer.ffn(layer.ln2(x), identity=x)


def encoder_layer_rows(layer: torch.nn.Module, x: Tensor, rows: Rows) -> Tensor:
    """Output rows ``rows`` of an mmpretrain ``TransformerEncoderLayer`` on tokens ``x``.

    Equals ``take_rows(layer(x), rows)`` (same weights, same formulas): queries, attention output,
    projection and MLP for the kept rows; keys and values for every token.

    Args:
        layer (TransformerEncoderLayer): a block with ``ln1``, ``attn`` (mmpretrain's
            ``MultiheadAttention``: fused ``qkv`` weight laid out q, k, v), ``ln2`` and ``ffn``.
        x (Tensor): tokens (B, N, C).
        rows (int | Tensor): the first ``rows`` tokens, or per-sample indices (B, M).

    Returns:
        Tensor: (B, M, C).
    """
    attn = layer.attn
    if getattr(attn, 'v_shortcut', False):
        raise NotImplementedError('encoder_layer_rows: v_shortcut attention is not supported')
    B, N, _ = x.shape
    D, heads, head_dims = attn.embed_dims, attn.num_heads, attn.head_dims
    h = layer.ln1(x)
    x_rows, h_rows = take_rows(x, rows), take_rows(h, rows)
    M = x_rows.shape[1]
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(h_rows, weight[:D], None if bias is None else bias[:D])
    kv = F.linear(h, weight[D:], None if bias is None else bias[D:])
    q = q.reshape(B, M, heads, head_dims).transpose(1, 2)
    k, v = kv.reshape(B, N, 2, heads, head_dims).permute(2, 0, 3, 1, 4)
    attn_drop = attn.attn_drop if attn.training else 0.
    out = attn.scaled_dot_product_attention(q, k, v, dropout_p=attn_drop)
    return finish_block(layer, x_rows, out.transpose(1, 2).reshape(B, M, D))
