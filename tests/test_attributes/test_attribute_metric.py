import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from mmpretrain.structures import DataSample
from saip_mm.evaluation import AttributeMetric, attribute_metrics

# 4 samples x 3 attributes
GT = np.array([[1, 0, 1],
               [1, 1, 0],
               [0, 0, 0],
               [0, 1, 1]])
PRED = np.array([[1, 1, 1],
                 [0, 1, 0],
                 [0, 0, 1],
                 [0, 1, 1]])


def test_hand_computed():
    res = attribute_metrics(PRED, GT)
    # attribute 0: TPR 1/2, TNR 2/2 -> .75; attribute 1: TPR 2/2, TNR 1/2 -> .75;
    # attribute 2: TPR 2/2, TNR 1/2 -> .75
    assert res['mA'] == pytest.approx(75.0)
    # per sample |Y∩Ŷ|, |Y∪Ŷ|, |Ŷ|, |Y|: (2,3,3,2) (1,2,1,2) (0,1,1,0) (2,2,2,2)
    assert res['accuracy'] == pytest.approx(100 * (2 / 3 + 1 / 2 + 0 + 1) / 4)
    precision = (2 / 3 + 1 + 0 + 1) / 4
    recall = (1 + 1 / 2 + 0 + 1) / 4  # no true attribute in sample 3: recall 0
    assert res['precision'] == pytest.approx(100 * precision)
    assert res['recall'] == pytest.approx(100 * recall)
    assert res['f1'] == pytest.approx(100 * 2 * precision * recall / (precision + recall))


def test_attribute_without_positive_counts_zero_with_warning():
    gt = np.array([[1, 0], [0, 0]])
    pred = np.array([[1, 0], [0, 1]])
    with pytest.warns(UserWarning, match=r"\['hat'\]"):
        res = attribute_metrics(pred, gt, attribute_names=['male', 'hat'])
    # male: (1 + 1) / 2; hat: TPR undefined -> 0, TNR 1/2 -> (0 + .5) / 2
    assert res['mA'] == pytest.approx(100 * (1 + 0.25) / 2)


def test_metric_from_data_samples_both_label_formats():
    scores = np.where(PRED == 1, 0.9, 0.1)
    scores[0, 0] = 0.5  # the threshold itself counts as present
    samples = []
    for i, (score, gt) in enumerate(zip(scores, GT)):
        sample = DataSample().set_pred_score(torch.tensor(score, dtype=torch.float32))
        if i % 2:
            sample.set_gt_label(np.flatnonzero(gt).tolist())  # indices, mmpretrain multi-label
        else:
            sample.set_gt_score(torch.tensor(gt, dtype=torch.float32))
        samples.append(sample)
    evaluator = Evaluator(AttributeMetric())
    evaluator.process(samples)
    res = evaluator.evaluate(4)
    assert res['attribute/mA'] == pytest.approx(75.0)
    assert res['attribute/accuracy'] == pytest.approx(100 * (2 / 3 + 1 / 2 + 0 + 1) / 4)


def test_non_finite_scores_are_refused_not_counted_absent():
    """NaN >= thr is False: a NaN score would silently count as an absent attribute."""
    metric = AttributeMetric()
    scores = np.where(PRED == 1, 0.9, 0.1).astype(np.float32)
    scores[1, 2], scores[3, 0] = np.nan, np.inf
    metric.process(None, [DataSample().set_pred_score(torch.tensor(s))
                          .set_gt_score(torch.tensor(g, dtype=torch.float32)).to_dict()
                          for s, g in zip(scores, GT)])
    with pytest.raises(ValueError) as err:
        metric.compute_metrics(metric.results)
    msg = str(err.value)
    assert msg.startswith('AttributeMetric: 2 of 4 samples have non-finite scores')
    assert 'model.data_preprocessor.std' in msg and 'diverged model' in msg
