"""The hierarchical SAIP backbone: mmpretrain's ``TinyViT`` with the outputs SAIP needs."""
from typing import Any, Collection, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones import TinyViT
from mmpretrain.models.utils import build_norm_layer
from mmpretrain.registry import MODELS
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..utils.attention import scaled_dot_product_attention
from .saip_vit import check_backbone_outputs

Grid = Tuple[int, int]


def window_attention(attn: nn.Module, x: Tensor) -> Tensor:
    """TinyViT's LeViT attention (``mmpretrain.models.utils.LeAttention``) on windows, fused.

    Same arithmetic as ``LeAttention.forward``; two differences, both about *when* the
    relative-position bias is read: it is always read from ``attention_biases`` (the stock
    module caches it when switched to eval mode, so an EMA teacher, which is always in eval
    mode and updated in place, would keep the bias of its last ``eval()`` call), and the
    softmax runs in ``F.scaled_dot_product_attention`` with the bias as additive mask.

    Args:
        attn (LeAttention): the attention module of a ``TinyViTBlock``.
        x (Tensor): window tokens (B', N, C), ``N = window_size ** 2``.

    Returns:
        Tensor: (B', N, C).
    """
    B, N, _ = x.shape
    q, k, v = attn.qkv(attn.norm(x)).view(B, N, attn.num_heads, -1).split(
        [attn.key_dim, attn.key_dim, attn.d], dim=3)
    bias = attn.attention_biases[:, attn.attention_bias_idxs]  # (heads, N, N)
    out = scaled_dot_product_attention(  # explicit products under CPU bf16 autocast
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias.to(q.dtype),
        scale=attn.scale)  # (B', heads, N, d)
    return attn.proj(out.transpose(1, 2).reshape(B, N, attn.dh))


def tinyvit_block(block: nn.Module, x: Tensor, grid: Grid) -> Tensor:
    """One ``TinyViTBlock`` on tokens of any (h, w) grid.

    The stock block reads its grid from ``block.img_size``, fixed when the model is built; here
    the grid comes with the input. Windows are padded at the bottom/right as TinyViT does.

    Args:
        block (TinyViTBlock): the block.
        x (Tensor): tokens (B, h*w, C) in row-major grid order.
        grid (tuple): (h, w).

    Returns:
        Tensor: (B, h*w, C).
    """
    H, W = grid
    B, L, C = x.shape
    ws = block.window_size
    pad_b, pad_r = -H % ws, -W % ws
    nH, nW = (H + pad_b) // ws, (W + pad_r) // ws
    windows = F.pad(x.view(B, H, W, C), (0, 0, 0, pad_r, 0, pad_b))
    windows = windows.view(B, nH, ws, nW, ws, C).transpose(2, 3).reshape(B * nH * nW, ws * ws, C)
    out = window_attention(block.attn, windows)
    out = out.view(B, nH, nW, ws, ws, C).transpose(2, 3).reshape(B, nH * ws, nW * ws, C)
    x = x + block.drop_path(out[:, :H, :W].reshape(B, L, C))
    x = block.local_conv(x.transpose(1, 2).reshape(B, C, H, W)).flatten(2).transpose(1, 2)
    return x + block.drop_path(block.mlp(x))


def patch_merging(merging: nn.Module, x: Tensor, grid: Grid) -> Tuple[Tensor, Grid]:
    """TinyViT's ``PatchMerging`` on any grid: tokens (B, h*w, C) or a map (B, C, h, w) →
    tokens (B, h'*w', C') on the halved grid (stride-2 conv, padding 1: odd sides round up)."""
    if x.dim() == 3:
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)
    x = merging.act(merging.conv1(x))
    x = merging.act(merging.conv2(x))
    x = merging.conv3(x)  # (B, C', ceil(h/2), ceil(w/2))
    return x.flatten(2).transpose(1, 2), (x.shape[-2], x.shape[-1])


@MODELS.register_module()
class SAIPTinyViT(TinyViT):
    """TinyViT backbone for SAIP pretraining (the method's hierarchical TinyViT-5M variant).

    Parameter names are those of :class:`mmpretrain.models.TinyViT` built with its default
    ``out_indices=-1`` (``patch_embed.*``, ``stages.*``, ``norm3.*``), so the exported backbone
    loads strictly into a stock ``TinyViT`` with ``prefix='backbone.'``; the only extra
    parameter, the LayerNorm of the intermediate output (``ln_inter``), is dropped by
    ``tools/model_converters/saip_to_backbone.py``.

    Named outputs, as :class:`SAIPViT` gives them (stage indices are 0-based, mmpretrain's):

    - ``inter``: the tokens after the blocks of stage ``inter_stage`` (default 2: 160 wide for
      5m, stride 16, before that stage's patch merging), through ``ln_inter``, with their mean
      (through ``ln_inter`` too) prepended as the "cls" token: (B, 1 + h*w, C_inter). CSS
      queries keep that pooled token; the CSS reference uses the h×w map (14×14 at 224×224).
    - ``last``: the tokens after the last stage through ``norm3``, with the pooled feature first:
      (B, 1 + n, C_last). ``last[:, 0]`` is ``norm3(mean of the tokens)``, exactly stock
      ``TinyViT``'s output, and is what CSM projects.

    What the method's ViT parts become here:

    - Positions: TinyViT has no absolute position embeddings (its convolutions and the windows'
      relative-position biases carry position), so any input size runs without resizing
      anything. The stock blocks are built for one ``img_size``; this forward passes the grid of
      each input instead, so ``img_size`` only fixes the stock bookkeeping.
    - ``input_stride`` (16 by default): the stride of the ``inter`` grid. SAIP floors the
      rescaled views to it, so the query grid is exact. The total stride is 32, but TinyViT's
      stride-2 convolutions pad odd grids, and flooring to 32 would collapse the rescale
      factors of 128×64 (0.75 and 0.875 → 96×32, 1 and 1.125 → 128×64).
    - CSM's attention term needs the last block's full attention relations; TinyViT's last
      stage attends within 7×7 windows, so they are not defined. ``return_relations=True``
      raises, and the config sets ``csm_head.loss.attn_loss_weight=0`` (METHOD §6: CSM + CSS).
    - CSR (the masked branch, ``ids_keep``) is not part of this variant (METHOD §6); dropping
      tokens is undefined for convolutions and windows, so ``ids_keep`` raises.

    Args:
        arch (str | dict): TinyViT architecture. Defaults to '5m' (widths 64/128/160/320,
            depths 2/2/6/2).
        img_size (tuple): the anchor input size (H, W), for the stock per-stage resolutions only.
            Defaults to (256, 128).
        inter_stage (int): 0-based stage whose block outputs give ``inter``; an attention stage
            (1 to ``num_stages - 1``). Defaults to 2 (the third stage, 160 wide for 5m).
        drop_path_rate (float): stochastic depth. Defaults to 0.0 (as the ViT recipe).
        init_cfg (dict | list, optional): defaults to the original TinyViT initialisation
            (truncated normal std 0.02 for linear layers, LayerNorm weight 1 / bias 0).
        **kwargs: other arguments of ``TinyViT``; ``out_indices`` must stay -1 and
            ``gap_before_final_norm`` True (the stock classification layout).
    """

    def __init__(self,
                 arch: Any = '5m',
                 img_size: Tuple[int, int] = (256, 128),
                 inter_stage: int = 2,
                 drop_path_rate: float = 0.0,
                 init_cfg: Optional[Any] = None,
                 **kwargs) -> None:
        if kwargs.get('out_indices', -1) not in (-1, [-1], (-1,)) or \
                not kwargs.get('gap_before_final_norm', True):
            raise ValueError('SAIPTinyViT keeps the stock TinyViT layout (out_indices=-1, '
                             'gap_before_final_norm=True) so its weights load into stock '
                             'configs; remove these keys from the backbone config')
        if init_cfg is None:
            init_cfg = [dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.0),
                        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)]
        super().__init__(arch=arch, img_size=img_size, drop_path_rate=drop_path_rate,
                         init_cfg=init_cfg, **kwargs)
        if not 1 <= inter_stage < self.num_stages:
            raise ValueError(f'inter_stage={inter_stage} must be an attention stage, in '
                             f'[1, {self.num_stages - 1}]')
        self.inter_stage = inter_stage
        # patch_embed has stride 4; every stage before inter_stage halves the grid
        self.input_stride = 4 * 2**inter_stage
        self.ln_inter = build_norm_layer(kwargs.get('norm_cfg', dict(type='LN')),
                                         self.channels[inter_stage])

    def modules_unused_by(self, outputs: Collection[str]) -> List[str]:
        """The sub-modules that compute none of ``outputs``; SAIP freezes them.

        ``inter`` comes from the patch embedding, the stages up to ``inter_stage`` (without
        that stage's patch merging, which runs after ``inter`` is taken) and ``ln_inter``;
        ``last`` from every stage and the final norm (``norm3`` for 4 stages), not from
        ``ln_inter``. Arguments and result as :meth:`SAIPViT.modules_unused_by`.
        """
        check_backbone_outputs(type(self).__name__, outputs)
        unused = []
        if 'last' not in outputs:
            if self.stages[self.inter_stage].downsample is not None:
                unused.append(f'stages.{self.inter_stage}.downsample')
            unused += [f'stages.{i}' for i in range(self.inter_stage + 1, self.num_stages)]
            unused.append(f'norm{self.num_stages - 1}')
        if 'inter' not in outputs:
            unused.append('ln_inter')
        return unused

    @staticmethod
    def _pooled_first(tokens: Tensor, norm: nn.Module) -> Tensor:
        """``[norm(mean of tokens), norm(tokens)]``: (B, L, C) → (B, 1 + L, C)."""
        pooled = tokens.mean(dim=1, keepdim=True)
        return norm(torch.cat((pooled, tokens), dim=1))

    def _run(self, stage: nn.Module, fn, *args) -> Tensor:
        """``fn(*args)``, through activation checkpointing when the stage asks for it."""
        if stage.use_checkpoint and self.training:
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def forward(self,
                x: Tensor,
                ids_keep: Optional[Tensor] = None,
                return_relations: bool = False,
                stop_at_inter: bool = False,
                cls_only: bool = False) -> Dict[str, Any]:
        """Run the backbone and return the named outputs SAIP uses.

        Args:
            x (Tensor): images (B, 3, H, W), any size (SAIP feeds multiples of
                ``input_stride``).
            ids_keep (Tensor, optional): not supported (no masked branch); must be None.
            return_relations (bool): not supported (windowed attention); must be False.
            stop_at_inter (bool): stop after stage ``inter_stage`` (CSS reference); the output
                then holds ``grid`` and ``inter`` only.
            cls_only (bool): accepted for :class:`SAIPViT` parity and ignored: the "cls" token
                is the pool of every final token, so no token's computation can be skipped.

        Returns:
            dict: ``grid`` (h, w) of the ``inter`` tokens; ``inter`` (B, 1 + h*w, C_inter);
            unless stopped early, ``last`` (B, 1 + n, C_last).
        """
        if ids_keep is not None:
            raise ValueError('SAIPTinyViT has no masked branch (ids_keep): CSR is not part of '
                             'the TinyViT variant; set csr_head=None')
        if return_relations:
            raise ValueError('SAIPTinyViT has windowed attention, so the last-block attention '
                             'relations of the CSM attention term are undefined; set '
                             'csm_head.loss.attn_loss_weight=0')
        x = self.patch_embed(x)  # (B, C0, H/4, W/4)
        grid: Grid = (x.shape[-2], x.shape[-1])
        outs: Dict[str, Any] = {}
        for i, stage in enumerate(self.stages):
            for block in stage.blocks:
                if i == 0:  # convolution stage on the (B, C, h, w) map
                    x = self._run(stage, block, x)
                else:
                    x = self._run(stage, tinyvit_block, block, x, grid)
            if i == self.inter_stage:
                outs.update(grid=grid, inter=self._pooled_first(x, self.ln_inter))
                if stop_at_inter:
                    return outs
            if stage.downsample is not None:
                x, grid = patch_merging(stage.downsample, x, grid)
        # the stock classification output: norm of the pooled tokens (out_indices=-1)
        outs['last'] = self._pooled_first(x, getattr(self, f'norm{self.num_stages - 1}'))
        return outs
