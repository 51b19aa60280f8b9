"""Binary cross-entropy weighted against attribute imbalance, for pedestrian attributes."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmpretrain.registry import MODELS


@MODELS.register_module()
class WeightedBCELoss(nn.Module):
    """Multi-label BCE whose terms are weighted by how rare the label value is.

    Pedestrian attributes are heavily imbalanced (few people wear a hat). With the positive
    ratio ``r_j`` of attribute ``j`` in the training set, a positive term is weighted
    ``exp(1 - r_j)`` and a negative one ``exp(r_j)`` (the exponential weighting of the
    pedestrian-attribute strong baseline, Jia et al. 2021, after DeepMAR, Li et al. 2015).
    The loss is summed over attributes and averaged over the batch.

    Args:
        weighting (str, optional): ``'exp'`` as above, or None for plain BCE. Defaults to 'exp'.
        loss_weight (float): weight of the loss. Defaults to 1.0.
    """

    def __init__(self, weighting: Optional[str] = 'exp', loss_weight: float = 1.0) -> None:
        super().__init__()
        if weighting not in ('exp', None):
            raise ValueError(f"weighting must be 'exp' or None, got {weighting!r}")
        self.weighting = weighting
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, target: Tensor, pos_ratio: Optional[Tensor] = None) -> Tensor:
        """Args: logits, target (Tensor): (B, A); pos_ratio (Tensor, optional): (A, )."""
        loss = F.binary_cross_entropy_with_logits(logits, target.float(), reduction='none')
        if self.weighting == 'exp':
            if pos_ratio is None or not torch.isfinite(pos_ratio).all():
                raise ValueError(
                    "WeightedBCELoss(weighting='exp') needs the training set's positive ratio "
                    'of every attribute: set AttributeHead(pos_ratio=...) or add '
                    "dict(type='AttributePosRatioHook') to custom_hooks.")
            ratio = pos_ratio.to(logits)[None]  # (1, A)
            loss = loss * torch.exp(target * (1 - ratio) + (1 - target) * ratio)
        return self.loss_weight * loss.sum(1).mean()
