"""mmpretrain's MAE on a rectangular input (the 256×128 person anchor, a 16×8 patch grid).

Stock ``MAEViT`` and ``MAEPretrainDecoder`` build their fixed 2-D sin-cos position embeddings
for a square grid of ``int(sqrt(num_patches))`` sides, and ``MAEPretrainHead.patchify``
asserts a square image; a 256×128 input fails in all three. These subclasses change only
that: the embeddings are built on the real (h, w) grid and the target is patchified in grid
order. Everything else (masking, encoder, decoder, normalised-pixel L2 loss) is mmpretrain's.
"""
from typing import Sequence, Tuple

import torch
from mmengine.model import BaseModule

from mmpretrain.models import VisionTransformer
from mmpretrain.models.heads import MAEPretrainHead
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.models.selfsup import MAEViT
from mmpretrain.registry import MODELS
from ..heads import patchify


def rect_sincos_position_embedding(grid: Sequence[int], embed_dims: int,
                                   temperature: float = 10000.,
                                   cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings of an (h, w) patch grid, in row-major order.

    As in the MAE reference code: for the patch at row ``r`` and column ``c`` the vector is
    ``[sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)]`` with ``ω_k = 1 / temperature^(k / (D/4))``,
    ``k = 0 … D/4 − 1``; the cls token (first row, when asked) is all zeros.

    Args:
        grid (Sequence[int]): patch grid (h, w), e.g. (16, 8) for 256×128 at patch 16.
        embed_dims (int): embedding width D, a multiple of 4.
        temperature (float): frequency base. Defaults to 10000.
        cls_token (bool): prepend a zero row for the cls token. Defaults to True.

    Returns:
        torch.Tensor: (1, [1 +] h*w, D) float32.
    """
    if embed_dims % 4:
        raise ValueError(f'embed_dims must be a multiple of 4 for 2-D sin-cos, got {embed_dims}')
    h, w = (int(v) for v in grid)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                torch.arange(w, dtype=torch.float32), indexing='ij')  # (h, w)
    quarter = embed_dims // 4
    omega = 1. / temperature**(torch.arange(quarter, dtype=torch.float32) / quarter)  # (D/4, )
    out_c = cols.flatten()[:, None] * omega[None]  # (h*w, D/4)
    out_r = rows.flatten()[:, None] * omega[None]
    emb = torch.cat([out_c.sin(), out_c.cos(), out_r.sin(), out_r.cos()], dim=1)[None]
    if cls_token:
        emb = torch.cat([torch.zeros(1, 1, embed_dims), emb], dim=1)
    return emb  # (1, [1 +] h*w, D)


@MODELS.register_module()
class RectMAEViT(MAEViT):
    """``MAEViT`` whose fixed sin-cos position embeddings follow its real (h, w) patch grid.

    Same arguments as ``mmpretrain.models.MAEViT`` (e.g. ``arch='deit-tiny'``,
    ``img_size=(256, 128)``, ``patch_size=16``, ``mask_ratio=0.75``). Parameter names are
    ``VisionTransformer``'s, so the trained backbone loads into a stock ViT.
    """

    def init_weights(self) -> None:
        """MAE's init (xavier patch projection, cls token N(0, 0.02)) with a rectangular grid."""
        # MAEViT.init_weights would build a square int(sqrt(h*w))² grid and fail to copy it
        VisionTransformer.init_weights(self)
        self.pos_embed.data.copy_(
            rect_sincos_position_embedding(self.patch_resolution, self.pos_embed.shape[-1]))
        w = self.patch_embed.projection.weight.data
        torch.nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        torch.nn.init.normal_(self.cls_token, std=.02)


@MODELS.register_module()
class RectMAEPretrainDecoder(MAEPretrainDecoder):
    """``MAEPretrainDecoder`` with fixed sin-cos position embeddings of an (h, w) grid.

    Args:
        grid (Sequence[int]): the encoder's patch grid (h, w). Defaults to (16, 8), the
            256×128 anchor at patch 16; ``num_patches`` must equal h*w.
        **kwargs: ``mmpretrain.models.necks.MAEPretrainDecoder`` arguments.
    """

    def __init__(self, grid: Sequence[int] = (16, 8), **kwargs) -> None:
        super().__init__(**kwargs)
        self.grid: Tuple[int, int] = (int(grid[0]), int(grid[1]))
        if self.grid[0] * self.grid[1] != self.num_patches:
            raise ValueError(f'RectMAEPretrainDecoder: grid {self.grid} holds '
                             f'{self.grid[0] * self.grid[1]} patches, num_patches is '
                             f'{self.num_patches}')

    def init_weights(self) -> None:
        """MAE's decoder init (mask token N(0, 0.02)) with a rectangular sin-cos grid."""
        BaseModule.init_weights(self)  # MAEPretrainDecoder's own would build a square grid
        self.decoder_pos_embed.data.copy_(
            rect_sincos_position_embedding(self.grid, self.decoder_pos_embed.shape[-1]))
        torch.nn.init.normal_(self.mask_token, std=.02)


@MODELS.register_module()
class RectMAEPretrainHead(MAEPretrainHead):
    """``MAEPretrainHead`` whose target patchify accepts any (H, W) divisible by the patch.

    Same arguments as ``mmpretrain.models.heads.MAEPretrainHead``.
    """

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, h*w, patch_size² · C) in row-major grid order."""
        return patchify(imgs, self.patch_size)
