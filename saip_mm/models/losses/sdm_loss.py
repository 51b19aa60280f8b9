"""Similarity-distribution matching (SDM) loss for image-text retrieval (IRRA, Jiang & Ye 2023)."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmpretrain.registry import MODELS


def sdm_loss(image_feats: torch.Tensor,
             text_feats: torch.Tensor,
             image_pids: torch.Tensor,
             text_pids: Optional[torch.Tensor] = None,
             temperature: float = 0.02,
             eps: float = 1e-8) -> torch.Tensor:
    """SDM: KL divergence from the matching distribution to the similarity softmax, both ways.

    With cosine similarities ``S`` (texts × images) scaled by ``1 / temperature``, the
    text → image term is, for each text ``t``,
    ``KL(p_t ‖ q_t) = Σ_i p_ti (log p_ti − log(q_ti + eps))`` where ``p_t = softmax(S_t / τ)``
    and ``q_t`` is the normalised identity-match row: ``q_ti = y_ti / Σ_j y_tj`` with
    ``y_ti = 1`` when text ``t`` and image ``i`` show the same identity. The image → text term
    is the same on ``Sᵀ``. The loss is the mean over texts of the first plus the mean over
    images of the second. Every image and every text needs at least one match on the other
    side (its own pair, in a batch of image-caption pairs).

    Args:
        image_feats (Tensor): (N_i, C) image embeddings (need not be normalised).
        text_feats (Tensor): (N_t, C) text embeddings.
        image_pids (Tensor): (N_i, ) identities of the images.
        text_pids (Tensor, optional): (N_t, ) identities of the texts; defaults to
            ``image_pids`` (paired batches).
        temperature (float): τ of the softmax. Defaults to 0.02 (IRRA).
        eps (float): added to the matching distribution inside the log. Defaults to 1e-8
            (IRRA).

    Returns:
        Tensor: the scalar loss.
    """
    text_pids = image_pids if text_pids is None else text_pids
    if image_feats.size(0) != image_pids.numel() or text_feats.size(0) != text_pids.numel():
        raise ValueError(f'SDM: {image_feats.size(0)} image features for {image_pids.numel()} '
                         f'identities, {text_feats.size(0)} text features for '
                         f'{text_pids.numel()} identities')
    sim = F.normalize(text_feats, dim=1) @ F.normalize(image_feats, dim=1).t()  # (N_t, N_i)
    match = (text_pids.view(-1, 1) == image_pids.view(1, -1)).to(sim.dtype)
    if not (match.sum(1) > 0).all() or not (match.sum(0) > 0).all():
        raise ValueError('SDM: every text and every image needs a same-identity partner in the '
                         'batch (pair each image with its caption)')

    def kl_to_matches(logits: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
        target = matches / matches.sum(dim=1, keepdim=True)
        log_p = F.log_softmax(logits, dim=1)
        return (log_p.exp() * (log_p - torch.log(target + eps))).sum(dim=1).mean()

    return kl_to_matches(sim / temperature, match) + kl_to_matches(sim.t() / temperature,
                                                                  match.t())


@MODELS.register_module()
class SDMLoss(nn.Module):
    """Similarity-distribution matching loss (IRRA); see :func:`sdm_loss`.

    Args:
        temperature (float): softmax temperature τ. Defaults to 0.02 (IRRA).
        eps (float): stabiliser inside the log. Defaults to 1e-8.
        loss_weight (float): weight of the loss. Defaults to 1.0.
    """

    def __init__(self, temperature: float = 0.02, eps: float = 1e-8,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.eps = eps
        self.loss_weight = loss_weight

    def forward(self, image_feats: torch.Tensor, text_feats: torch.Tensor,
                image_pids: torch.Tensor,
                text_pids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Weighted SDM loss of image and text embeddings with their identities."""
        return self.loss_weight * sdm_loss(image_feats, text_feats, image_pids, text_pids,
                                           self.temperature, self.eps)
