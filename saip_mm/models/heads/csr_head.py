"""CSR head: an MAE-style decoder that reconstructs a masked view at another scale."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer
from mmpretrain.models.utils import build_norm_layer, resize_pos_embed
from mmpretrain.registry import MODELS
from torch import Tensor

from saip_mm.models.utils.partial_block import encoder_layer_rows, take_rows


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """(B, 3, H, W) images → (B, h*w, patch_size**2 * 3) patches in grid order."""
    B, C, H, W = images.shape
    h, w = H // patch_size, W // patch_size
    x = images.reshape(B, C, h, patch_size, w, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, h * w, patch_size**2 * C)


def unpatchify(patches: Tensor, grid: Tuple[int, int], patch_size: int) -> Tensor:
    """Inverse of :func:`patchify`: (B, h*w, p*p*3) → (B, 3, h*p, w*p)."""
    B = patches.shape[0]
    h, w = grid
    x = patches.reshape(B, h, w, patch_size, patch_size, -1)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, -1, h * patch_size, w * patch_size)


@MODELS.register_module()
class CSRHead(BaseModule):
    """Decoder over ``[cls_masked, cls_anchor, visible + mask tokens]`` and the CSR target.

    Position embeddings: the masked view's cls takes the decoder's cls embedding, the anchor
    view's cls an embedding of its own, and the patch tokens the decoder's patch embeddings
    (learned for the anchor grid) resized in 2-D to the masked view's grid.

    Args:
        in_channels (int): backbone width. Defaults to 192.
        embed_dims (int): decoder width. Defaults to 512.
        depth (int): decoder blocks. Defaults to 8.
        num_heads (int): decoder heads. Defaults to 16.
        mlp_ratio (float): decoder MLP ratio. Defaults to 4.
        patch_size (int): backbone patch size. Defaults to 16.
        anchor_grid (tuple): patch grid of the anchor input. Defaults to (16, 8) (256×128).
        norm_pix (bool): normalise each target patch by its mean and variance. Defaults to True.
        loss (dict): the :class:`CSRLoss` config. Defaults to ``dict(type='CSRLoss')``.
    """

    def __init__(self,
                 in_channels: int = 192,
                 embed_dims: int = 512,
                 depth: int = 8,
                 num_heads: int = 16,
                 mlp_ratio: float = 4.,
                 patch_size: int = 16,
                 anchor_grid: Tuple[int, int] = (16, 8),
                 norm_pix: bool = True,
                 loss: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.patch_size = patch_size
        self.anchor_grid = tuple(anchor_grid)
        self.norm_pix = norm_pix
        self.embed = nn.Linear(in_channels, embed_dims)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        # cls + anchor-grid patch embeddings, resized to the masked view's grid in forward().
        self.pos_embed = nn.Parameter(
            torch.zeros(1, 1 + self.anchor_grid[0] * self.anchor_grid[1], embed_dims))
        self.anchor_cls_pos_embed = nn.Parameter(torch.zeros(1, 1, embed_dims))
        norm_cfg = dict(type='LN', eps=1e-6)
        self.blocks = ModuleList([
            TransformerEncoderLayer(embed_dims, num_heads, int(embed_dims * mlp_ratio),
                                    qkv_bias=True, norm_cfg=norm_cfg) for _ in range(depth)
        ])
        self.norm = build_norm_layer(norm_cfg, embed_dims)
        self.pred = nn.Linear(embed_dims, patch_size**2 * 3)
        self.loss_module = MODELS.build(loss or dict(type='CSRLoss'))

    def init_weights(self) -> None:
        super().init_weights()
        for p in (self.mask_token, self.pos_embed, self.anchor_cls_pos_embed):
            trunc_normal_(p, std=0.02)
        for m in (self.embed, self.pred):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, masked_tokens: Tensor, anchor_cls: Tensor, ids_keep: Tensor,
                grid: Tuple[int, int], ids_pred: Optional[Tensor] = None) -> Tensor:
        """Predict the patches of the masked view: all of them, or those in ``ids_pred``.

        Args:
            masked_tokens (Tensor): ``inter`` tokens of the masked view, cls first,
                (B, 1 + n_keep, C).
            anchor_cls (Tensor): ``inter`` cls token of the anchor-scale view, (B, C).
            ids_keep (Tensor): grid indices of the visible tokens, (B, n_keep).
            grid (tuple): the masked view's patch grid (h, w).
            ids_pred (Tensor, optional): grid indices of the patches to predict, (B, M); the
                last decoder block then computes those rows only (every token still attends
                as key and value), which gives the same predictions for them. Defaults to None
                (every patch).

        Returns:
            Tensor: predicted pixels per patch, (B, h*w, patch_size**2 * 3), or (B, M, ...)
            in the order of ``ids_pred``.
        """
        B = masked_tokens.shape[0]
        L = grid[0] * grid[1]
        x = self.embed(masked_tokens)  # (B, 1 + n_keep, D)
        cls_masked, visible = x[:, :1], x[:, 1:]
        cls_anchor = self.embed(anchor_cls).unsqueeze(1)  # (B, 1, D)
        # Scatter visible tokens into a full grid of mask tokens.
        patches = self.mask_token.to(x.dtype).expand(B, L, -1).clone()
        patches.scatter_(1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), visible)
        pos = resize_pos_embed(self.pos_embed, self.anchor_grid, grid, mode='bicubic',
                               num_extra_tokens=1)
        x = torch.cat([cls_masked + pos[:, :1], cls_anchor + self.anchor_cls_pos_embed,
                       patches + pos[:, 1:]], dim=1)  # (B, 2 + L, D)
        if ids_pred is None or not len(self.blocks):
            for block in self.blocks:
                x = block(x)
            x = self.pred(self.norm(x))[:, 2:]  # drop the two cls outputs
            return x if ids_pred is None else take_rows(x, ids_pred)
        for block in self.blocks[:-1]:
            x = block(x)
        x = encoder_layer_rows(self.blocks[-1], x, ids_pred + 2)  # rows after the two cls
        return self.pred(self.norm(x))

    def construct_target(self, images: Tensor) -> Tensor:
        """Patchify the masked view's images; normalise each patch when ``norm_pix``.

        As in MAE, ``var`` is the unbiased variance of the patch's 768 values.
        """
        target = patchify(images.float(), self.patch_size)
        if self.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6)**.5
        return target

    def loss(self, masked_tokens: Tensor, anchor_cls: Tensor, ids_keep: Tensor, mask: Tensor,
             images: Tensor) -> Dict[str, Tensor]:
        """Decode and compute ``loss_csr`` against the masked view's own pixels.

        Args:
            masked_tokens, anchor_cls, ids_keep: as in :meth:`forward`.
            mask (Tensor): (B, h*w), 1 on removed patches.
            images (Tensor): the masked view itself, (B, 3, H, W).
        """
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        # Only removed patches enter the loss: decode those (the same count in every sample,
        # L - n_keep), and score them against the same patches of the target.
        L = mask.shape[1]
        removed = mask.bool()
        n_removed = L - ids_keep.shape[1]
        counts_ok = (removed.sum(dim=1) == n_removed).all()
        message = f'CSRHead.loss: every sample must remove L - n_keep = {n_removed} patches'
        if mask.device.type == 'cuda':
            torch._assert_async(counts_ok, message)  # no host sync in the training step
        elif not bool(counts_ok):
            raise ValueError(f'{message}, got {removed.sum(dim=1).tolist()}')
        # The removed patches in ascending grid order, without nonzero()'s host sync: a stable
        # sort puts the zeros of ~removed first, each in index order.
        ids_pred = (~removed).to(torch.uint8).argsort(dim=1, stable=True)[:, :n_removed]
        pred = self(masked_tokens, anchor_cls, ids_keep, grid, ids_pred=ids_pred)
        target = take_rows(self.construct_target(images), ids_pred)
        return dict(loss_csr=self.loss_module(pred, target, torch.ones_like(ids_pred)))
