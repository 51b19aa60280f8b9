"""CSR (cross-scale reconstruction) loss: per-patch MSE on the removed patches only."""
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor

from .utils import check_loss_weight


@MODELS.register_module()
class CSRLoss(BaseModule):
    """Mean squared error per patch, averaged over the removed patches.

    Args:
        loss_weight (float): weight of the loss. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        check_loss_weight(self, 'loss_weight', loss_weight, 'model.csr_head.loss.loss_weight')
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): predicted patches (B, L, P).
            target (Tensor): target patches (B, L, P).
            mask (Tensor): (B, L), 1 on removed patches, 0 on visible ones.

        Returns:
            Tensor: scalar loss; visible patches do not contribute.
        """
        per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)  # (B, L)
        mask = mask.float()
        return self.loss_weight * (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
