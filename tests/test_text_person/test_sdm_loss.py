"""SDM loss against the formula evaluated by hand."""
import math

import pytest
import torch

from saip_mm.models import SDMLoss


def kl(p, q, eps=1e-8):
    return sum(pi * (math.log(pi) - math.log(qi + eps)) for pi, qi in zip(p, q))


def softmax(xs):
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def test_sdm_matches_hand_computation():
    """Images e0 (identity 0), e1 (identity 1); texts e0 (identity 0) and (e0 + e1)/sqrt 2
    (identity 1). Cosines, texts x images: [[1, 0], [r, r]] with r = 1/sqrt 2."""
    r = 1 / math.sqrt(2)
    images = torch.tensor([[2., 0.], [0., 3.]])  # scale does not matter (cosine)
    texts = torch.tensor([[1., 0.], [1., 1.]])
    pids = torch.tensor([0, 1])
    tau = 0.5
    t2i = kl(softmax([1 / tau, 0]), [1, 0]) + kl(softmax([r / tau, r / tau]), [0, 1])
    i2t = kl(softmax([1 / tau, r / tau]), [1, 0]) + kl(softmax([0, r / tau]), [0, 1])
    expected = t2i / 2 + i2t / 2
    loss = SDMLoss(temperature=tau, loss_weight=2.0)(images, texts, pids)
    assert loss.item() == pytest.approx(2 * expected, rel=1e-5)


def test_same_identity_pairs_share_the_target():
    """Two pairs of one identity: the target rows are [1/2, 1/2], so identical features give
    the uniform softmax and a zero loss (up to eps)."""
    feats = torch.tensor([[1., 0.], [1., 0.]])
    loss = SDMLoss()(feats, feats, torch.tensor([7, 7]))
    assert loss.item() == pytest.approx(0, abs=1e-6)


def test_unmatched_item_is_an_error():
    with pytest.raises(ValueError, match='same-identity partner'):
        SDMLoss()(torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0, 1]), torch.tensor([0, 2]))
