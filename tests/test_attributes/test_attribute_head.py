import math

import pytest
import torch
import torch.nn.functional as F

import saip_mm.models.heads.attribute_head  # noqa: F401  (registers AttributeHead)
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from saip_mm.models.losses.weighted_bce_loss import WeightedBCELoss


def test_weighted_bce_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    target = torch.tensor([[1.0, 0.0]])
    ratio = torch.tensor([0.2, 0.5])
    loss = WeightedBCELoss()(logits, target, pos_ratio=ratio)
    # attribute 0 positive: exp(1 - .2) * log(2); attribute 1 negative: exp(.5) * log(1 + e^2)
    expected = math.exp(0.8) * math.log(2) + math.exp(0.5) * math.log1p(math.exp(2))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    plain = WeightedBCELoss(weighting=None)(logits, target)
    assert plain.item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, target, reduction='sum').item(), rel=1e-5)
    with pytest.raises(ValueError, match='AttributePosRatioHook'):
        WeightedBCELoss()(logits, target, pos_ratio=torch.full((2, ), float('nan')))


def test_attribute_head_loss_and_predict():
    head = MODELS.build(dict(type='AttributeHead', in_channels=8, num_classes=3))
    head.init_weights()
    feats = (torch.randn(4, 8), )
    samples = [DataSample().set_gt_label(lbl) for lbl in ([0], [1, 2], [], [0, 2])]
    with pytest.raises(ValueError, match='positive ratio'):
        head.loss(feats, samples)
    head.set_pos_ratio([0.5, 0.25, 0.5])
    assert 'pos_ratio' in head.state_dict()  # saved with the checkpoint
    loss = head.loss(feats, samples)['loss']
    logits = head(feats)
    target = torch.tensor([[1., 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1]])
    weights = torch.exp(target * (1 - head.pos_ratio) + (1 - target) * head.pos_ratio)
    expected = (F.binary_cross_entropy_with_logits(logits, target, reduction='none')
                * weights).sum(1).mean()
    torch.testing.assert_close(loss, expected)

    head.eval()
    out = head.predict(feats)
    scores = torch.sigmoid(head(feats))
    torch.testing.assert_close(out[1].pred_score, scores[1])
    assert out[1].pred_label.tolist() == torch.where(scores[1] >= 0.5)[0].tolist()
    with pytest.raises(ValueError, match='3 attributes'):
        head.set_pos_ratio([0.5, 0.5])
