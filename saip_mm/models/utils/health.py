"""Label-free health metrics of a self-supervised run (collapse indicators).

Each function takes what a SAIP step already computes (cls features, CSM logits) and returns a
Python float; none needs labels. A collapsed run maps every image to (almost) the same feature:
RankMe falls towards 1, the mean cosine between different images rises towards 1, the CSM
teacher's output entropy goes to 0 (one prototype) or to its maximum (uniform), and the student
trivially agrees with the teacher.

A health check never stops a run: non-finite inputs (a step whose loss turns NaN, images
made infinite by a zero std) give NaN, and so does an SVD that does not converge; the NaN stop
of ``SAIP.parse_losses`` then names the loss terms. Every function computes in float32, with
autocast off on the inputs' device (under autocast a matmul would otherwise run in bf16/fp16
whatever its inputs).
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .precision import autocast_off


def _finite(*tensors: Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def rankme(features: Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al., 2023): the effective rank of a batch of embeddings.

    ``exp(-sum_k p_k log p_k)`` with ``p_k = s_k / sum(s) + eps`` over the singular values
    ``s`` of the (N, C) feature matrix (not centred, as in the paper). It lies in
    ``[1, min(N, C)]``: 1 when every row is a multiple of one vector (or all are zero), the
    maximum when the singular values are equal.

    Args:
        features (Tensor): (N, C) embeddings, one row per image.
        eps (float): added to each normalised singular value. Defaults to 1e-7.

    Returns:
        float: the effective rank; NaN when a feature is not finite or the SVD fails.
    """
    features = features.detach()
    with autocast_off(features):
        features = features.float()
        if not _finite(features):  # the SVD of NaN/inf raises
            return math.nan
        try:
            s = torch.linalg.svdvals(features)
        except torch.linalg.LinAlgError:  # no convergence (ill-conditioned, huge values)
            return math.nan
        p = s / s.sum().clamp_min(1e-12) + eps
        return math.exp(float(-(p * p.log()).sum()))


def mean_offdiag_cosine(features: Tensor) -> float:
    """Mean cosine similarity between the embeddings of *different* images.

    Args:
        features (Tensor): (N, C) embeddings, N >= 2.

    Returns:
        float: the mean of the N·(N−1) off-diagonal cosines (1 when all rows point the same
        way; 0 for zero rows); NaN when a feature is not finite.
    """
    n = features.shape[0]
    if n < 2:
        raise ValueError(f'mean_offdiag_cosine needs at least 2 rows, got {n}')
    features = features.detach()
    with autocast_off(features):
        features = features.float()
        if not _finite(features):
            return math.nan
        z = F.normalize(features, dim=-1)
        sim = z @ z.t()  # (N, N)
        return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def entropy_ratio(teacher_logits: Tensor, center: Tensor, temperature: float) -> float:
    """Mean entropy of ``softmax((t − center) / τ)`` divided by its maximum ``log K``.

    The CSM teacher's targets: 0 when every image goes to one prototype (a one-hot collapse),
    1 when the targets are uniform (a flat collapse).

    Args:
        teacher_logits (Tensor): (N, K) teacher CSM outputs.
        center (Tensor): (1, K) the CSM centre the loss uses.
        temperature (float): the teacher temperature τ_t.

    Returns:
        float: mean entropy / log K, in [0, 1]; NaN when a logit or the centre is not finite.
    """
    teacher_logits = teacher_logits.detach()
    with autocast_off(teacher_logits):
        logits, center = teacher_logits.float(), center.detach().float()
        if not _finite(logits, center):
            return math.nan
        logp = F.log_softmax((logits - center) / temperature, dim=-1)
        entropy = -(logp.exp() * logp).sum(dim=-1).mean()
        return float(entropy / math.log(teacher_logits.shape[-1]))


def prototype_agreement(student_logits: Tensor, teacher_logits: Tensor) -> float:
    """Fraction of rows whose student and teacher outputs pick the same prototype (argmax).

    Args:
        student_logits (Tensor): (N, K).
        teacher_logits (Tensor): (N, K), row i the teacher's target for student row i.

    Returns:
        float: in [0, 1]; NaN when a logit is not finite (its argmax means nothing).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f'prototype_agreement: shapes differ, {tuple(student_logits.shape)} '
                         f'and {tuple(teacher_logits.shape)}')
    student_logits, teacher_logits = student_logits.detach(), teacher_logits.detach()
    if not _finite(student_logits, teacher_logits):
        return math.nan
    same = student_logits.argmax(dim=-1) == teacher_logits.argmax(dim=-1)
    return float(same.float().mean())
