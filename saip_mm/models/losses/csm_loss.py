"""CSM (cross-scale matching) loss: DINO-style self-distillation plus attention relations."""
from typing import Dict, Sequence, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.dist import is_distributed
from mmengine.logging import MessageHub
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor

from .utils import check_loss_weight


@MODELS.register_module()
class CSMLoss(BaseModule):
    """Cross-entropy between centred, sharpened teacher and student distributions.

    For every (teacher global view ``i``, student view ``v``) pair with ``v != i`` the loss is
    ``-sum(softmax((t_i - center) / τ_t) * log_softmax(s_v / τ_s))``, averaged over the batch and
    then over the pairs. Student views are ordered with the two global views first, so pair
    ``(i, v=i)`` is the same view and is skipped. The centre is a buffer: it lives in checkpoints
    and is restored on resume.

    Args:
        out_dim (int): prototype count. Defaults to 65536.
        student_temp (float): τ_s. Defaults to 0.1.
        teacher_temp (float): τ_t after the warm-up. Defaults to 0.04.
        warmup_teacher_temp (float): τ_t at epoch 0 of the warm-up. Defaults to 0.07.
        warmup_teacher_temp_epochs (int): epochs of linear τ_t warm-up; 0 disables it.
            Defaults to 0 (reference recipe).
        center_momentum (float): EMA momentum of the centre. Defaults to 0.9.
        loss_weight (float): weight of the representation term. Defaults to 1.0.
        attn_loss_weight (float): weight of the attention-relation KL term; 0 switches it off.
            Defaults to 1.0.
    """

    def __init__(self,
                 out_dim: int = 65536,
                 student_temp: float = 0.1,
                 teacher_temp: float = 0.04,
                 warmup_teacher_temp: float = 0.07,
                 warmup_teacher_temp_epochs: int = 0,
                 center_momentum: float = 0.9,
                 loss_weight: float = 1.0,
                 attn_loss_weight: float = 1.0) -> None:
        super().__init__()
        check_loss_weight(self, 'loss_weight', loss_weight, 'model.csm_head.loss.loss_weight')
        check_loss_weight(self, 'attn_loss_weight', attn_loss_weight,
                          'model.csm_head.loss.attn_loss_weight')
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.center_momentum = center_momentum
        self.loss_weight = loss_weight
        self.attn_loss_weight = attn_loss_weight
        self.register_buffer('center', torch.zeros(1, out_dim))

    def current_teacher_temp(self) -> float:
        """τ_t for the current epoch (read from MMEngine's message hub; no hub: epoch 0)."""
        if self.warmup_teacher_temp_epochs <= 0:
            return self.teacher_temp
        epoch = MessageHub.get_current_instance().get_info('epoch', 0)
        if epoch >= self.warmup_teacher_temp_epochs:
            return self.teacher_temp
        frac = epoch / self.warmup_teacher_temp_epochs
        return self.warmup_teacher_temp + frac * (self.teacher_temp - self.warmup_teacher_temp)

    def forward(self, student_logits: Union[Tensor, Sequence[Tensor]],
                teacher_logits: Sequence[Tensor]) -> Tensor:
        """Compute the representation term (weighted).

        With ``z_v = s_v / τ_s``, ``lse_v = logsumexp(z_v)`` and teacher probabilities ``t_i``
        (rows summing to 1), the cross-entropy of a pair is ``lse_v − t_i·z_v``, so the sum over
        the student views ``v ≠ i`` is ``Σ_v lse_v − lse_i − t_i·(Σ_v z_v − z_i)``: one
        log-sum-exp over all views and one dot product per teacher view, instead of a
        cross-entropy per pair. The gradient is that of the pairwise form.

        Args:
            student_logits (Tensor | list[Tensor]): (V·B, K) view-major, or one (B, K) tensor
                per student view; the first ``len(teacher_logits)`` views are the global views
                the teacher also saw, in the same order.
            teacher_logits (list[Tensor]): one (B, K) tensor per teacher global view.

        Returns:
            Tensor: scalar loss, the mean over pairs of the batch-mean cross-entropy.
        """
        if not isinstance(student_logits, Tensor):
            student_logits = torch.cat(list(student_logits))
        n_teacher, B = len(teacher_logits), teacher_logits[0].shape[0]
        if student_logits.shape[0] % B or student_logits.shape[0] // B <= n_teacher - 1:
            raise ValueError(f'CSMLoss: {student_logits.shape[0]} student rows are not a whole '
                             f'number (> {n_teacher - 1}) of views of batch {B}')
        n_views = student_logits.shape[0] // B
        z = student_logits.float() * (1.0 / self.student_temp)  # (V·B, K)
        lse = torch.logsumexp(z, dim=-1).view(n_views, B)  # (V, B)
        z = z.view(n_views, B, -1)
        z_sum, lse_sum = z.sum(dim=0), lse.sum(dim=0)  # (B, K), (B,)
        inv_temp = 1.0 / self.current_teacher_temp()
        total = 0.
        for i, t in enumerate(teacher_logits):
            t_prob = F.softmax((t.float() - self.center) * inv_temp, dim=-1).detach()
            cross = (t_prob * (z_sum - z[i])).sum(dim=-1)  # (B,)
            total = total + (lse_sum - lse[i] - cross).mean()
        # pairs (i, v) with v != i: the same view carries no cross-scale information
        return self.loss_weight * total / (n_teacher * (n_views - 1))

    def attention_loss(self, student_rel: Dict[str, Tensor],
                       teacher_rel: Dict[str, Tensor]) -> Tensor:
        """KL(teacher ‖ student) of the last-block relations of the same global view (weighted).

        Args:
            student_rel (dict): ``qk`` and ``vv`` maps, (n_views*B, heads, N, N), view-major.
            teacher_rel (dict): the same from the teacher, same views in the same order.

        Returns:
            Tensor: KL summed over the last axis, averaged over batch, heads and queries, then
            over the views, for ``qk`` plus ``vv``.
        """
        loss = 0.
        for key in ('qk', 'vv'):
            s, t = student_rel[key].float(), teacher_rel[key].float().detach()
            # Views have equal sizes, so the mean over (views*B, heads, queries) is the mean over
            # views of the per-view means.
            kl = (t * (t.clamp_min(1e-12).log() - s.clamp_min(1e-12).log())).sum(-1)
            loss = loss + kl.mean()
        return self.attn_loss_weight * loss

    @torch.no_grad()
    def update_center(self, teacher_logits: Sequence[Tensor]) -> None:
        """EMA update of the centre with the teacher batch mean, over all processes.

        A non-finite batch mean leaves the centre as it was (without a host sync): that step's
        loss is non-finite too and ``SAIP.parse_losses`` stops the run, so the centre in
        memory stays the last good one.
        """
        batch_sum = sum(t.float().sum(dim=0, keepdim=True) for t in teacher_logits)
        count = torch.tensor(float(sum(t.shape[0] for t in teacher_logits)),
                             device=batch_sum.device)
        if is_distributed():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        mean = batch_sum / count
        updated = self.center * self.center_momentum + mean * (1 - self.center_momentum)
        self.center.copy_(torch.where(torch.isfinite(mean).all(), updated, self.center))
