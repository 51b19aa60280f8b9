"""CSS (cross-scale search) loss: binary cross-entropy between a search map and its mask."""
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor

from .utils import check_loss_weight


@MODELS.register_module()
class CSSLoss(BaseModule):
    """Binary cross-entropy with logits, averaged over positions and batch.

    Args:
        loss_weight (float): weight of the loss. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        check_loss_weight(self, 'loss_weight', loss_weight, 'model.css_head.loss.loss_weight')
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits (Tensor): search map logits (B, h, w).
            target (Tensor): binary target (B, h, w), the pasted person's box at map resolution.

        Returns:
            Tensor: scalar loss.
        """
        return self.loss_weight * F.binary_cross_entropy_with_logits(logits.float(),
                                                                     target.float())
