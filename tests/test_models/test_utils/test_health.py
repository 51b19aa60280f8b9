"""Label-free health metrics on inputs whose values are known by hand."""
import math

import numpy as np
import pytest
import torch

from saip_mm.models.utils.health import (entropy_ratio, mean_offdiag_cosine,
                                         prototype_agreement, rankme)


def _with_spectrum(singular_values, n=8, c=6, seed=0):
    """An (n, c) matrix U·diag(s)·Vᵀ with exactly the given singular values."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(c, c, generator=g, dtype=torch.float64))
    s = torch.zeros(n, c, dtype=torch.float64)
    for i, value in enumerate(singular_values):
        s[i, i] = value
    return u @ s @ v.t()


def test_rankme_on_a_known_spectrum():
    # p = (4, 2, 1, 1) / 8 = (1/2, 1/4, 1/8, 1/8): entropy = 1.75 ln 2, RankMe = 2 ** 1.75
    feats = _with_spectrum([4.0, 2.0, 1.0, 1.0])
    assert rankme(feats) == pytest.approx(2 ** 1.75, rel=1e-5)
    # an independent computation: NumPy's SVD and the entropy written out
    sv = np.linalg.svd(feats.numpy(), compute_uv=False)
    p = sv / sv.sum() + 1e-7
    assert rankme(feats) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-6)


def test_rankme_bounds():
    # equal singular values: full rank; one direction (or nothing): 1
    assert rankme(_with_spectrum([3.0] * 6)) == pytest.approx(6, rel=1e-5)
    same = torch.randn(1, 16).repeat(10, 1)
    assert rankme(same) == pytest.approx(1, abs=1e-4)
    assert rankme(torch.zeros(10, 16)) == pytest.approx(1, abs=1e-4)


def test_mean_offdiag_cosine():
    e = torch.eye(3)
    assert mean_offdiag_cosine(e) == pytest.approx(0.0)
    assert mean_offdiag_cosine(torch.tensor([[1.0, 0.0], [2.0, 0.0]])) == pytest.approx(1.0)
    # pairs: (a, b) = 0.6, (a, c) = 0, (b, c) = 0.8; mean over 3 pairs
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert mean_offdiag_cosine(feats) == pytest.approx((0.6 + 0.0 + 0.8) / 3)
    with pytest.raises(ValueError, match='at least 2 rows'):
        mean_offdiag_cosine(torch.ones(1, 4))


def test_entropy_ratio():
    k = 16
    center = torch.zeros(1, k)
    assert entropy_ratio(torch.zeros(4, k), center, 0.04) == pytest.approx(1.0)
    peaked = torch.zeros(4, k)
    peaked[:, 3] = 10.0
    assert entropy_ratio(peaked, center, 0.04) < 1e-6
    # the centre is subtracted before the temperature: a centre equal to the logits is flat
    assert entropy_ratio(peaked, peaked[:1], 0.04) == pytest.approx(1.0)
    # two equal modes: entropy ln 2 of a maximum ln k
    two = torch.full((2, k), -1e4)
    two[:, :2] = 0.0
    assert entropy_ratio(two, center, 1.0) == pytest.approx(math.log(2) / math.log(k), rel=1e-5)


def test_prototype_agreement():
    t = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    s = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert prototype_agreement(s, t) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='shapes differ'):
        prototype_agreement(s, t[:2])


@pytest.mark.parametrize('bad', [math.inf, -math.inf, math.nan])
def test_non_finite_features_give_nan_and_never_raise(bad):
    """A health check at a step whose features are NaN/inf must not stop the run itself (the
    SVD of such a matrix raises torch's LinAlgError): NaN values, and the NaN stop of the loss
    names the terms."""
    feats = torch.randn(6, 8)
    feats[2, 3] = bad
    assert math.isnan(rankme(feats))
    assert math.isnan(mean_offdiag_cosine(feats))
    assert math.isnan(entropy_ratio(feats, torch.zeros(1, 8), 0.04))
    assert math.isnan(entropy_ratio(torch.randn(6, 8), torch.full((1, 8), bad), 0.04))
    assert math.isnan(prototype_agreement(feats, torch.randn(6, 8)))
    assert math.isnan(prototype_agreement(torch.randn(6, 8), feats))
    if math.isnan(bad):  # what rankme met without its check (inf gives NaN values on CPU)
        with pytest.raises(torch.linalg.LinAlgError, match='non-finite'):
            torch.linalg.svdvals(feats)


def test_rankme_is_nan_when_the_svd_fails(monkeypatch):
    def no_convergence(x):
        raise torch.linalg.LinAlgError('linalg.svd: The algorithm failed to converge')
    monkeypatch.setattr(torch.linalg, 'svdvals', no_convergence)
    assert math.isnan(rankme(torch.randn(6, 8)))
