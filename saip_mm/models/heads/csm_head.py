"""CSM head: the DINO-style projection of cls tokens to prototype logits."""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class CSMHead(BaseModule):
    """Projection MLP + L2 normalisation + weight-normalised prototypes, with the CSM loss.

    ``in → hidden → hidden → bottleneck`` (GELU between), L2-normalise, then a linear layer
    ``bottleneck → out`` without bias whose weight rows are normalised to unit length (weight
    normalisation with its norm ``g`` fixed to 1).

    Args:
        in_channels (int): backbone width. Defaults to 192 (ViT-Tiny).
        hidden_channels (int): MLP width. Defaults to 2048.
        bottleneck_channels (int): output of the MLP. Defaults to 256.
        out_channels (int): number of prototypes. Defaults to 65536.
        loss (dict): the :class:`CSMLoss` config. Defaults to ``dict(type='CSMLoss')``.
    """

    def __init__(self,
                 in_channels: int = 192,
                 hidden_channels: int = 2048,
                 bottleneck_channels: int = 256,
                 out_channels: int = 65536,
                 loss: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden_channels), nn.GELU(),
            nn.Linear(hidden_channels, hidden_channels), nn.GELU(),
            nn.Linear(hidden_channels, bottleneck_channels))
        # Direction of each prototype; its norm is fixed to 1 in forward().
        self.prototypes = nn.Parameter(torch.zeros(out_channels, bottleneck_channels))
        loss = dict(type='CSMLoss', out_dim=out_channels) if loss is None else dict(loss)
        loss.setdefault('out_dim', out_channels)
        if loss['out_dim'] != out_channels:
            raise ValueError(f'csm_head.loss.out_dim={loss["out_dim"]} differs from '
                             f'csm_head.out_channels={out_channels}')
        self.loss_module = MODELS.build(loss)

    def init_weights(self) -> None:
        super().init_weights()
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.prototypes, std=0.02)

    def forward(self, cls_tokens: Tensor) -> Tensor:
        """Map cls tokens (N, C) to prototype logits (N, out_channels).

        ``x · (w_k / |w_k|)`` is computed as ``(x · w_k) / |w_k|``: the 65536 row norms scale
        the (N, K) output instead of normalising the (K, 256) matrix on every call.
        """
        x = F.normalize(self.mlp(cls_tokens), dim=-1)
        inv_norm = self.prototypes.norm(dim=-1).clamp_min(1e-12).reciprocal()  # (K,)
        return F.linear(x, self.prototypes) * inv_norm

    def loss(self,
             student_logits: Union[Tensor, Sequence[Tensor]],
             teacher_logits: Sequence[Tensor],
             student_relations: Optional[Dict[str, Tensor]] = None,
             teacher_relations: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        """The CSM losses; also updates the centre with this step's teacher outputs.

        Args:
            student_logits (Tensor | list[Tensor]): (V·B, K) view-major, or (B, K) per
                student view; global views first.
            teacher_logits (list[Tensor]): (B, K) per teacher global view.
            student_relations, teacher_relations (dict, optional): last-block relations of the
                global views; when given (and the attention weight is not 0) adds
                ``loss_csm_attn``.

        Returns:
            dict: ``loss_csm`` and, when computed, ``loss_csm_attn``.
        """
        losses = dict(loss_csm=self.loss_module(student_logits, teacher_logits))
        if self.with_attention_loss and student_relations is not None:
            losses['loss_csm_attn'] = self.loss_module.attention_loss(
                student_relations, teacher_relations)
        self.loss_module.update_center(teacher_logits)
        return losses

    @property
    def with_attention_loss(self) -> bool:
        """Whether the attention-relation term is on (its weight is not 0)."""
        return self.loss_module.attn_loss_weight != 0
