import math

import pytest
import torch

import saip_mm.models.heads.reid_head  # noqa: F401  (registers ReIDHead)
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from saip_mm.models.losses.triplet_loss import TripletLoss

# 1-D embeddings: identity 0 at 0 and 1, identity 1 at 3 and 5, identity 2 alone at 9.
FEATS = torch.tensor([[0.], [1.], [3.], [5.], [9.]])
LABELS = torch.tensor([0, 0, 1, 1, 2])


def test_batch_hard_triplet_by_hand():
    # hardest positive / negative per anchor: (1, 3) (1, 2) (2, 2) (2, 4); the lone identity 2
    # has no positive and is left out
    loss = TripletLoss(margin=0.3)(FEATS, LABELS)
    assert loss.item() == pytest.approx((0 + 0 + 0.3 + 0) / 4, abs=1e-5)
    soft = TripletLoss(margin=None)(FEATS, LABELS)
    expected = sum(math.log1p(math.exp(d)) for d in (1 - 3, 1 - 2, 2 - 2, 2 - 4)) / 4
    assert soft.item() == pytest.approx(expected, abs=1e-5)


def test_triplet_gradient_is_finite_and_no_valid_anchor_gives_zero():
    feats = FEATS.clone().requires_grad_()
    TripletLoss(margin=0.3, loss_weight=2.0)(feats, LABELS).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    lone = torch.randn(3, 4, requires_grad=True)
    loss = TripletLoss()(lone, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0 and lone.grad is not None


def samples(labels):
    return [DataSample().set_gt_label(int(label)) for label in labels]


def test_reid_head_losses_and_retrieval_feature():
    head = MODELS.build(dict(type='ReIDHead', in_channels=4, num_classes=3))
    head.init_weights()
    assert not head.bnneck.bias.requires_grad
    assert head.classifier.bias is None
    assert head.classifier.weight.std().item() == pytest.approx(0.001, rel=0.5)
    feats = (torch.randn(6, 4, requires_grad=True), )
    losses = head.loss(feats, samples([0, 0, 1, 1, 2, 2]))
    assert set(losses) == {'loss_id', 'loss_triplet', 'accuracy_id'}
    # label smoothing 0.1 on 3 classes around near-zero logits: close to log(3)
    assert losses['loss_id'].item() == pytest.approx(math.log(3), abs=0.05)
    (losses['loss_id'] + losses['loss_triplet']).backward()
    assert feats[0].grad is not None

    head.eval()
    with torch.no_grad():
        out = head.predict(feats, samples([0] * 6))
        expected = head.bnneck(feats[0])
    assert out[0].pred_feature.shape == (4, )
    torch.testing.assert_close(torch.stack([s.pred_feature for s in out]), expected)
    pre = MODELS.build(dict(type='ReIDHead', in_channels=4, num_classes=3, test_feature='pre_bn'))
    pre.eval()
    torch.testing.assert_close(pre.predict(feats)[2].pred_feature, feats[0][2].detach())

    with pytest.raises(ValueError, match='num_classes=3'):
        head.train()
        head.loss(feats, samples([0, 0, 1, 1, 2, 5]))
    with pytest.raises(ValueError, match="out_type='cls_token'"):
        head.predict((torch.randn(2, 5, 4), ))
