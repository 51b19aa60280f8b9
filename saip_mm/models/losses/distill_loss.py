"""Cross-scale distillation losses: global, patch and relation alignment with a frozen teacher."""
from typing import Dict, Optional

import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor

from ..utils.precision import autocast_off
from .utils import check_loss_weight


def global_alignment(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean cosine distance ``1 - cos(s, t)`` between rows: 0 when aligned, 1 orthogonal.

    Args:
        student (Tensor): (B, C) projected student features.
        teacher (Tensor): (B, C) teacher features.
    """
    with autocast_off(student):  # float32 even inside an autocast region
        return (1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()


def patch_alignment(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared error to the teacher tokens whitened by a parameter-free LayerNorm.

    Whitening puts every teacher (any width, any activation scale) on one scale, so one
    ``patch_weight`` fits all; a student equal to the whitened teacher plus ``d`` everywhere
    gives ``d ** 2``.

    Args:
        student (Tensor): (B, N, C) projected student tokens.
        teacher (Tensor): (B, N, C) teacher tokens at the same positions.
    """
    with autocast_off(student):
        target = F.layer_norm(teacher.float(), teacher.shape[-1:], eps=1e-6)
        return (student.float() - target).pow(2).mean()


def token_relations(tokens: Tensor, temperature: float) -> Tensor:
    """Row-wise log-softmax of the token-to-token cosine similarities / temperature, (B, N, N).

    In float32 even inside an autocast region (the matmul would otherwise run in bf16/fp16:
    cosines near 1 lose their differences, which the low temperature then amplifies).
    """
    with autocast_off(tokens):
        x = F.normalize(tokens.float(), dim=-1)
        return (x @ x.transpose(1, 2) / temperature).log_softmax(dim=-1)


def relation_alignment(student: Tensor, teacher: Tensor, temperature: float = 0.1) -> Tensor:
    """``KL(teacher || student)`` of the token-to-token similarity distributions, per row.

    Each token's similarities to all tokens of its image (its own included) form a
    distribution; the loss is the KL divergence of the student's from the teacher's, averaged
    over tokens and images. It compares structures, not features, so the widths may differ.

    Args:
        student (Tensor): (B, N, Cs) student tokens.
        teacher (Tensor): (B, N, Ct) teacher tokens at the same positions.
        temperature (float): softmax temperature of the cosine similarities. Defaults to 0.1.
    """
    log_t = token_relations(teacher, temperature)
    log_s = token_relations(student, temperature)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


@MODELS.register_module()
class DistillLoss(BaseModule):
    """The three alignment levels of :class:`DistillHead`, each weighted.

    - global (``global_weight``): 1 − cos(projected student cls, teacher cls), the image-level
      alignment of DPAL (Dynamic Pattern Alignment Learning).
    - patch (``patch_weight``): MSE between projected student patch tokens and the teacher's
      whitened patch tokens at the same image positions, the feature-map target of Feature
      Distillation (Wei et al., 2022) used as DPAL's pixel level.
    - relation (``relation_weight``): KL between teacher and student token-to-token similarity
      distributions, the relation transfer of MiniLM (Wang et al., 2020) used as DPAL's
      relation level.

    A level with weight 0 is not computed and not logged.

    Args:
        global_weight (float): weight of the global level. Defaults to 1.0.
        patch_weight (float): weight of the patch level. Defaults to 1.0.
        relation_weight (float): weight of the relation level. Defaults to 1.0.
        relation_temperature (float): softmax temperature of the relations. Defaults to 0.1.
    """

    def __init__(self,
                 global_weight: float = 1.0,
                 patch_weight: float = 1.0,
                 relation_weight: float = 1.0,
                 relation_temperature: float = 0.1) -> None:
        super().__init__()
        for name, value in (('global_weight', global_weight), ('patch_weight', patch_weight),
                            ('relation_weight', relation_weight),
                            ('relation_temperature', relation_temperature)):
            check_loss_weight(self, name, value, f'model.distill_head.loss.{name}')
            if value < 0:
                raise ValueError(f'model.distill_head.loss.{name} must be >= 0, got {value}')
        if global_weight == patch_weight == relation_weight == 0:
            raise ValueError('model.distill_head.loss: all three weights (global_weight, '
                             'patch_weight, relation_weight) are 0; set one above 0 or set '
                             'model.distill_head=None')
        if relation_temperature == 0:
            raise ValueError('model.distill_head.loss.relation_temperature must be > 0')
        self.global_weight = global_weight
        self.patch_weight = patch_weight
        self.relation_weight = relation_weight
        self.relation_temperature = relation_temperature

    def forward(self,
                s_cls: Optional[Tensor] = None,
                t_cls: Optional[Tensor] = None,
                s_patch_proj: Optional[Tensor] = None,
                s_patch: Optional[Tensor] = None,
                t_patch: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Compute the levels whose weight is above 0.

        Args:
            s_cls (Tensor): (B, Ct) projected student cls; ``t_cls`` (B, Ct) the teacher's.
            s_patch_proj (Tensor): (B, N, Ct) projected student patch tokens.
            s_patch (Tensor): (B, N, Cs) student patch tokens (relation level).
            t_patch (Tensor): (B, N, Ct) teacher patch tokens at the student's positions.

        Returns:
            dict: ``loss_kd_global``, ``loss_kd_patch``, ``loss_kd_relation`` (weighted).
        """
        losses: Dict[str, Tensor] = {}
        if self.global_weight > 0:
            losses['loss_kd_global'] = self.global_weight * global_alignment(s_cls, t_cls)
        if self.patch_weight > 0:
            losses['loss_kd_patch'] = self.patch_weight * patch_alignment(s_patch_proj, t_patch)
        if self.relation_weight > 0:
            losses['loss_kd_relation'] = self.relation_weight * relation_alignment(
                s_patch, t_patch, self.relation_temperature)
        return losses


__all__ = ['DistillLoss', 'global_alignment', 'patch_alignment', 'relation_alignment',
           'token_relations']