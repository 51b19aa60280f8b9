"""Batch-hard triplet loss for person re-identification (Hermans et al., 2017)."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmpretrain.registry import MODELS


def euclidean_dist(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distances (N, M) between the rows of x (N, C) and y (M, C).

    Clamped before the square root: the gradient of sqrt at 0 (an anchor against itself)
    would be infinite.
    """
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1)[None] - 2 * x @ y.t()
    return d2.clamp(min=1e-12).sqrt()


@MODELS.register_module()
class TripletLoss(nn.Module):
    """Batch-hard triplet loss: each anchor against its farthest positive and nearest negative.

    ``loss = mean_a max(0, d(a, p*) - d(a, n*) + margin)`` over the anchors of the batch that
    have at least one other image of their identity and one image of another identity (the
    P×K identity sampler guarantees both); with ``margin=None`` the soft margin
    ``log(1 + exp(d(a, p*) - d(a, n*)))`` is used. A batch without such an anchor gives 0.

    Args:
        margin (float, optional): the margin; None for the soft margin. Defaults to 0.3
            (BoT, TransReID).
        normalize_feature (bool): L2-normalise the features first. Defaults to False.
        loss_weight (float): weight of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 margin: Optional[float] = 0.3,
                 normalize_feature: bool = False,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.margin = margin
        self.normalize_feature = normalize_feature
        self.loss_weight = loss_weight

    def forward(self, feats: Tensor, labels: Tensor) -> Tensor:
        """Args: feats (Tensor): (B, C) embeddings; labels (Tensor): (B, ) identities."""
        if self.normalize_feature:
            feats = F.normalize(feats, dim=1)
        dist = euclidean_dist(feats, feats)  # (B, B)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos_mask, neg_mask = same & ~eye, ~same
        valid = pos_mask.any(1) & neg_mask.any(1)
        if not valid.any():
            return feats.sum() * 0  # keeps the graph (DDP needs every output to get a gradient)
        hardest_pos = dist.masked_fill(~pos_mask, float('-inf')).max(1).values[valid]
        hardest_neg = dist.masked_fill(~neg_mask, float('inf')).min(1).values[valid]
        if self.margin is None:
            loss = F.softplus(hardest_pos - hardest_neg)
        else:
            loss = F.relu(hardest_pos - hardest_neg + self.margin)
        return self.loss_weight * loss.mean()
