"""The SAIP backbone: an ``mmpretrain.VisionTransformer`` with the outputs SAIP needs."""
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import build_norm_layer, resize_pos_embed
from mmpretrain.registry import MODELS
from torch import Tensor

from saip_mm.models.utils.partial_block import encoder_layer_rows, finish_block
from saip_mm.models.utils.precision import autocast_off


def last_block_relations(layer: torch.nn.Module, x: Tensor,
                         cls_only: bool = False) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Run one mmpretrain ``TransformerEncoderLayer`` with explicit attention maps.

    Args:
        layer (TransformerEncoderLayer): the block to run.
        x (Tensor): tokens, shape (B, N, C).
        cls_only (bool): compute the block's output for the cls token only (the maps still
            cover every token). Defaults to False.

    Returns:
        tuple: the block's output (B, N, C), or (B, 1, C) with ``cls_only``, and
        ``dict(qk=..., vv=...)``: per head ``softmax(q·kᵀ·s)`` and ``softmax(v·vᵀ·s)`` with
        ``s = head_dim ** -0.5``, each (B, heads, N, N), rows summing to 1.
    """
    attn = layer.attn
    B, N, _ = x.shape
    qkv = attn.qkv(layer.ln1(x)).reshape(B, N, 3, attn.num_heads, attn.head_dims)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
    scale = attn.head_dims**-0.5
    # Products and softmax in float32: the maps feed a KL term, which is fragile under fp16
    # (autocast off: it would run the matmuls of the .float() inputs in bf16/fp16 anyway).
    with autocast_off(q):
        rel_qk = (q.float() @ k.float().transpose(-2, -1) * scale).softmax(dim=-1)
        rel_vv = (v.float() @ v.float().transpose(-2, -1) * scale).softmax(dim=-1)
    if cls_only:
        x, rel_rows = x[:, :1], rel_qk[:, :, :1]
    else:
        rel_rows = rel_qk
    out = (rel_rows.to(v.dtype) @ v).transpose(1, 2).reshape(B, x.shape[1], attn.embed_dims)
    x = finish_block(layer, x, out)
    return x, dict(qk=rel_qk, vv=rel_vv)


def check_backbone_outputs(owner: str, outputs: Collection[str]) -> None:
    """Refuse output names other than a non-empty subset of ``('inter', 'last')``."""
    if set(outputs) - {'inter', 'last'} or not outputs:
        raise ValueError(f'{owner}.modules_unused_by: outputs must be a non-empty subset of '
                         f"('inter', 'last'), got {sorted(outputs)}")


@MODELS.register_module()
class SAIPViT(VisionTransformer):
    """Vision Transformer backbone for SAIP pretraining.

    Parameter names are those of :class:`mmpretrain.models.VisionTransformer`, so its weights load
    into stock configs with ``prefix='backbone.'``; the only extra parameter, the LayerNorm of the
    intermediate output (``ln_inter``), is dropped by ``tools/model_converters/saip_to_backbone.py``.

    Defaults equal the SAIP reference recipe: ViT-Tiny/16, anchor input 256×128 (16×8 grid),
    LayerNorm eps 1e-6, qkv bias, cls token, intermediate output after block 7.

    Args:
        arch (str | dict): ``'tiny'`` (192 wide, 12 blocks, 3 heads), ``'small'`` (384, 12, 6) or
            ``'base'`` (768, 12, 12), or a dict as in ``VisionTransformer``. Defaults to 'tiny'.
        img_size (int | tuple): the anchor input size (H, W) for which position embeddings are
            learned. Other sizes get them resized in 2-D (bicubic). Defaults to (256, 128).
        inter_index (int): 0-based index of the block whose tokens give the ``inter`` output.
            Defaults to 6 (block 7).
        **kwargs: other arguments of ``VisionTransformer``; ``out_type`` is fixed to 'raw'.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny', 'deit-tiny'], {
            'embed_dims': 192, 'num_layers': 12, 'num_heads': 3, 'feedforward_channels': 192 * 4}),
        **dict.fromkeys(['s', 'small', 'deit-small'], {
            'embed_dims': 384, 'num_layers': 12, 'num_heads': 6, 'feedforward_channels': 384 * 4}),
        **dict.fromkeys(['b', 'base', 'deit-base'], {
            'embed_dims': 768, 'num_layers': 12, 'num_heads': 12, 'feedforward_channels': 3072}),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Union[int, Sequence[int]] = (256, 128),
                 patch_size: int = 16,
                 inter_index: int = 6,
                 **kwargs) -> None:
        if kwargs.get('out_type', 'raw') != 'raw':
            raise ValueError('SAIPViT always returns raw tokens; remove `out_type` from the '
                             'backbone config (downstream configs use mmpretrain.VisionTransformer).')
        kwargs['out_type'] = 'raw'
        kwargs.setdefault('norm_cfg', dict(type='LN', eps=1e-6))
        super().__init__(arch=arch, img_size=img_size, patch_size=patch_size, **kwargs)
        if not 0 <= inter_index < self.num_layers:
            raise ValueError(f'inter_index={inter_index} must be in [0, {self.num_layers - 1}]')
        self.inter_index = inter_index
        self.ln_inter = build_norm_layer(kwargs['norm_cfg'], self.embed_dims)

    def modules_unused_by(self, outputs: Collection[str]) -> List[str]:
        """The sub-modules that compute none of ``outputs``; SAIP freezes them.

        ``inter`` comes from the patch embedding, blocks ``0..inter_index`` and ``ln_inter``;
        ``last`` (and the last block's ``relations``) from every block and the final norm
        ``ln1``, not from ``ln_inter``. A training step whose losses read only some outputs
        leaves the other modules without a gradient (DDP waits for one and fails at step 2).

        Args:
            outputs (Collection[str]): the outputs the losses read, ``'inter'`` and/or
                ``'last'``.

        Returns:
            list[str]: module names relative to the backbone, in forward order (empty when
            both outputs are read).
        """
        check_backbone_outputs(type(self).__name__, outputs)
        unused = []
        if 'last' not in outputs:
            unused += [f'layers.{i}' for i in range(self.inter_index + 1, len(self.layers))]
            if self.final_norm:
                unused.append('ln1')
        if 'inter' not in outputs:
            unused.append('ln_inter')
        return unused

    def patch_embed_tokens(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        """``self.patch_embed`` for inputs on the patch grid, as one matrix product.

        A convolution whose stride equals its kernel is a linear map of non-overlapping
        patches; on CPU the patchify + GEMM form is faster than the convolution (forward and
        weight gradient). Same parameters (``patch_embed.projection.weight``/``bias``), same
        result up to float rounding. Other patch embeddings run as they are.
        """
        proj = self.patch_embed.projection
        if (type(proj) is not torch.nn.Conv2d or proj.stride != proj.kernel_size
                or proj.padding != (0, 0) or proj.dilation != (1, 1) or proj.groups != 1):
            x, grid = self.patch_embed(x)
            return x, tuple(grid)
        B, C, H, W = x.shape
        ph, pw = proj.kernel_size
        h, w = H // ph, W // pw
        patches = x.reshape(B, C, h, ph, w, pw).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, -1)
        x = F.linear(patches, proj.weight.reshape(proj.out_channels, -1), proj.bias)
        if self.patch_embed.norm is not None:
            x = self.patch_embed.norm(x)
        return x, (h, w)

    def embed(self, x: Tensor, ids_keep: Optional[Tensor] = None) -> Tuple[Tensor, Tuple[int, int]]:
        """Patch-embed an image, add (resized) position embeddings, prepend the cls token.

        Args:
            x (Tensor): images (B, 3, H, W); H and W multiples of the patch size.
            ids_keep (Tensor, optional): (B, n_keep) indices of the patch tokens to keep, in
                grid order (masked branch). Defaults to None (keep all).

        Returns:
            tuple: tokens (B, 1 + n, C) and the patch grid (h, w).
        """
        B, _, H, W = x.shape
        p = self.patch_embed.projection.stride
        if H % p[0] or W % p[1]:
            # mmcv's PatchEmbed would zero-pad a half patch; SAIP crops to the grid first.
            raise ValueError(f'SAIPViT: input {H}x{W} is not on the {p[0]}x{p[1]} patch grid; '
                             f'crop it to a multiple of the patch (saip_mm rescale() does)')
        x, grid = self.patch_embed_tokens(x)  # (B, h*w, C)
        pos_embed = resize_pos_embed(self.pos_embed, self.patch_resolution, grid,
                                     mode=self.interpolate_mode,
                                     num_extra_tokens=self.num_extra_tokens)
        x = x + pos_embed[:, self.num_extra_tokens:]
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls_token = self.cls_token.expand(B, -1, -1) + pos_embed[:, :self.num_extra_tokens]
        x = torch.cat((cls_token, x), dim=1)
        return self.pre_norm(self.drop_after_pos(x)), grid

    def forward(self,
                x: Tensor,
                ids_keep: Optional[Tensor] = None,
                return_relations: bool = False,
                stop_at_inter: bool = False,
                cls_only: bool = False) -> Dict[str, Any]:
        """Run the backbone and return the named outputs SAIP uses.

        Args:
            x (Tensor): images (B, 3, H, W), any size on the patch grid.
            ids_keep (Tensor, optional): visible patch indices for the masked branch.
            return_relations (bool): also return the last block's attention relations.
            stop_at_inter (bool): stop after block ``inter_index + 1`` (masked CSR branch,
                CSS reference); the output then holds ``inter`` only.
            cls_only (bool): the last block computes the cls token's output only (every token
                is still a key and a value), so ``last`` is (B, 1, C): what the CSM head reads,
                at a quarter of the last block's cost. Defaults to False.

        Returns:
            dict: ``grid`` (h, w); ``inter`` (B, 1 + n, C) tokens after block 7 and ``ln_inter``; unless stopped
            early, ``last`` (B, 1 + n, C) after the last block and final norm; with
            ``return_relations``, ``relations`` = dict(qk, vv), each (B, heads, 1 + n, 1 + n).
        """
        x, grid = self.embed(x, ids_keep)
        outs: Dict[str, Any] = dict(grid=grid)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == last and return_relations:
                x, outs['relations'] = last_block_relations(layer, x, cls_only)
            elif i == last and cls_only:
                x = encoder_layer_rows(layer, x, 1)
            else:
                x = layer(x)  # fused attention (F.scaled_dot_product_attention)
            if i == self.inter_index:
                outs['inter'] = self.ln_inter(x)
                if stop_at_inter:
                    return outs
        outs['last'] = self.ln1(x) if self.final_norm else x
        return outs
