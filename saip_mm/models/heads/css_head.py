"""CSS head: search a person, seen at one scale, in a multi-person reference at another."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer
from mmpretrain.registry import MODELS
from torch import Tensor

from saip_mm.models.utils.partial_block import encoder_layer_rows


class CrossAttentionBlock(BaseModule):
    """Pre-norm cross-attention of query tokens on key/value tokens, then a pre-norm MLP.

    Keys/values arrive already normalised (the head's reference path ends in a LayerNorm), so
    only the query is normalised here.
    """

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(embed_dims, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dims, feedforward_channels), nn.GELU(),
            nn.Linear(feedforward_channels, embed_dims))

    def forward(self, query: Tensor, kv: Tensor) -> Tensor:
        """query (B, Nq, D), kv (B, Nk, D) → (B, Nq, D)."""
        query = query + self.attn(self.norm_q(query), kv, kv, need_weights=False)[0]
        return query + self.mlp(self.norm_mlp(query))


@MODELS.register_module()
class CSSHead(BaseModule):
    """Query → dynamic kernel, reference → mask features, logits = kernel · features.

    Args:
        in_channels (int): backbone width. Defaults to 192.
        embed_dims (int): decoder width. Defaults to 512.
        num_query_blocks (int): self-attention blocks on the query path. Defaults to 2.
        num_heads (int): attention heads. Defaults to 16.
        mlp_ratio (float): MLP ratio of the blocks. Defaults to 4.
        num_mask_convs (int): 3×3 conv layers of the mask-feature branch. Defaults to 3.
        loss (dict): the :class:`CSSLoss` config. Defaults to ``dict(type='CSSLoss')``.
    """

    def __init__(self,
                 in_channels: int = 192,
                 embed_dims: int = 512,
                 num_query_blocks: int = 2,
                 num_heads: int = 16,
                 mlp_ratio: float = 4.,
                 num_mask_convs: int = 3,
                 loss: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        ffn = int(embed_dims * mlp_ratio)
        self.query_embed = nn.Linear(in_channels, embed_dims)
        self.query_blocks = ModuleList([
            TransformerEncoderLayer(embed_dims, num_heads, ffn, qkv_bias=True,
                                    norm_cfg=dict(type='LN', eps=1e-6))
            for _ in range(num_query_blocks)
        ])
        self.ref_embed = nn.Linear(in_channels, embed_dims)
        self.ref_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.cross_block = CrossAttentionBlock(embed_dims, num_heads, ffn)
        self.kernel_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.kernel_proj = nn.Linear(embed_dims, embed_dims)
        convs = [nn.Conv2d(in_channels, embed_dims, 1), nn.GELU()]
        for _ in range(num_mask_convs):
            convs += [nn.Conv2d(embed_dims, embed_dims, 3, padding=1), nn.GELU()]
        self.mask_convs = nn.Sequential(*convs)
        self.loss_module = MODELS.build(loss or dict(type='CSSLoss'))

    def init_weights(self) -> None:
        super().init_weights()
        for m in (self.query_embed, self.ref_embed, self.kernel_proj):
            trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def encode_reference(self, ref_tokens: Tensor,
                         grid: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        """Reference patch tokens (B, h*w, C) → keys/values (B, h*w, D) and mask features
        (B, D, h, w).

        Both depend on the reference alone: compute them once per step and share them between
        the instance and the ROI query.
        """
        B, _, C = ref_tokens.shape
        kv = self.ref_norm(self.ref_embed(ref_tokens))
        mask_feats = self.mask_convs(ref_tokens.transpose(1, 2).reshape(B, C, *grid))
        return kv, mask_feats

    def forward(self, query_tokens: Tensor, ref_kv: Tensor, mask_feats: Tensor) -> Tensor:
        """Search map logits.

        Args:
            query_tokens (Tensor): ``inter`` tokens of the query view, cls first, (B, 1 + n, C).
            ref_kv, mask_feats (Tensor): :meth:`encode_reference` of the reference.

        Returns:
            Tensor: logits (B, h, w).
        """
        q = self.query_embed(query_tokens)
        for block in self.query_blocks[:-1]:
            q = block(q)
        # Only the cls output goes on: the last block computes that row alone, (B, 1, D).
        q = encoder_layer_rows(self.query_blocks[-1], q, 1) if len(self.query_blocks) else q[:, :1]
        q = self.cross_block(q, ref_kv)
        kernel = self.kernel_proj(self.kernel_norm(q))  # (B, 1, D)
        return torch.einsum('bqd,bdhw->bqhw', kernel, mask_feats.to(kernel.dtype))[:, 0]

    def loss(self, instance_query: Tensor, roi_query: Tensor, ref_tokens: Tensor,
             grid: Tuple[int, int], instance_mask: Tensor,
             roi_mask: Tensor) -> Dict[str, Tensor]:
        """``loss_css_inst`` and ``loss_css_roi``; the reference is encoded once for both.

        Args:
            instance_query (Tensor): ``inter`` tokens of the anchor view ``g1`` (B, 1 + n, C).
            roi_query (Tensor): ``inter`` tokens of the rescaled last local crop.
            ref_tokens (Tensor): teacher ``inter`` patch tokens of the reference (B, h*w, C).
            grid (tuple): the reference patch grid (h, w), 14×14 for 224×224.
            instance_mask, roi_mask (Tensor): (B, H, W) binary masks at image resolution;
                resized (nearest) to the grid here.
        """
        ref_kv, mask_feats = self.encode_reference(ref_tokens, grid)
        losses = {}
        for name, query, mask in (('loss_css_inst', instance_query, instance_mask),
                                  ('loss_css_roi', roi_query, roi_mask)):
            logits = self(query, ref_kv, mask_feats)
            target = F.interpolate(mask[:, None].float(), size=grid, mode='nearest')[:, 0]
            losses[name] = self.loss_module(logits, target)
        return losses
