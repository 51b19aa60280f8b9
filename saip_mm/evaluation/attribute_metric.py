"""Pedestrian attribute recognition metrics: label-based mA and instance-based accuracy/P/R/F1."""
import warnings
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from mmpretrain.registry import METRICS
from .finite import non_finite_error

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]


def attribute_metrics(pred: ArrayLike,
                      gt: ArrayLike,
                      attribute_names: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """The standard pedestrian-attribute metrics of binary predictions, in percent.

    Label-based (per attribute ``j``, over samples): ``TPR_j = TP_j / P_j`` and
    ``TNR_j = TN_j / N_j``; ``mA = mean_j (TPR_j + TNR_j) / 2``.
    Instance-based (per sample ``i``, predicted set ``Ŷ_i``, true set ``Y_i``), averaged over
    samples: accuracy ``|Y∩Ŷ| / |Y∪Ŷ|``, precision ``|Y∩Ŷ| / |Ŷ|``, recall ``|Y∩Ŷ| / |Y|``;
    ``F1 = 2·P·R / (P + R)`` of the averaged precision and recall.

    As in the reference evaluation code of the PETA / PA-100K literature (Li et al. 2015;
    Jia et al. 2021), a ratio whose denominator is 0 counts as 0: an attribute without positive
    (negative) test samples contributes TPR (TNR) 0, with a warning that names it; a sample
    with no predicted (true) attribute has precision (recall) 0.

    Args:
        pred (Tensor | ndarray): (N, A) binary predictions.
        gt (Tensor | ndarray): (N, A) binary ground truth.
        attribute_names (Sequence[str], optional): names used in warnings. Defaults to None.

    Returns:
        dict: ``mA``, ``accuracy``, ``precision``, ``recall``, ``f1``.
    """
    pred = np.asarray(pred.cpu() if isinstance(pred, torch.Tensor) else pred).astype(bool)
    gt = np.asarray(gt.cpu() if isinstance(gt, torch.Tensor) else gt).astype(bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f'pred and gt must both be (N, A), got {pred.shape} and {gt.shape}')
    if len(gt) == 0:
        raise ValueError('attribute_metrics: no samples')

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(den > 0, num / np.maximum(den, 1), 0.0)

    # label-based
    num_pos, num_neg = gt.sum(0), (~gt).sum(0)
    tpr = ratio((pred & gt).sum(0), num_pos)
    tnr = ratio((~pred & ~gt).sum(0), num_neg)
    undefined = np.flatnonzero((num_pos == 0) | (num_neg == 0))
    if len(undefined):
        names = [attribute_names[j] if attribute_names is not None else str(j) for j in undefined]
        warnings.warn(f'attribute_metrics: attribute(s) {names} have no positive or no negative '
                      f'ground truth; their missing rate counts as 0 in mA.')
    mean_acc = ((tpr + tnr) / 2).mean()

    # instance-based
    inter, union = (pred & gt).sum(1), (pred | gt).sum(1)
    accuracy = ratio(inter, union).mean()
    precision = ratio(inter, pred.sum(1)).mean()
    recall = ratio(inter, gt.sum(1)).mean()
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return dict(mA=mean_acc * 100, accuracy=accuracy * 100, precision=precision * 100,
                recall=recall * 100, f1=f1 * 100)


@METRICS.register_module()
class AttributeMetric(BaseMetric):
    """Pedestrian attribute metrics (see :func:`attribute_metrics`) of a multi-label model.

    Reads from each data sample ``pred_score`` (A, ) (per-attribute probabilities, e.g. from
    :class:`saip_mm.models.AttributeHead`) and the ground truth, either ``gt_score`` (A, )
    binary or ``gt_label`` (indices of the positive attributes, mmpretrain's multi-label
    format). An attribute is predicted present when its score is ``>= thr``. A non-finite
    score (NaN/inf: a zero std in the data preprocessor, a diverged model) makes
    ``compute_metrics`` raise a ValueError counting the samples, rather than score it as
    absent.

    Args:
        thr (float): decision threshold on ``pred_score``. Defaults to 0.5.
        collect_device (str): 'cpu' or 'gpu' for collecting results across processes.
            Defaults to 'cpu'.
        prefix (str, optional): prefix of the metric names. Defaults to 'attribute'.
    """
    default_prefix: Optional[str] = 'attribute'

    def __init__(self, thr: float = 0.5, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thr = thr

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each sample's binary prediction and ground truth."""
        for sample in data_samples:
            if 'pred_score' not in sample:
                raise KeyError(f'AttributeMetric: data sample lacks `pred_score` '
                               f'(has {sorted(sample)})')
            score = torch.as_tensor(sample['pred_score']).detach().cpu().flatten()
            if 'gt_score' in sample:
                gt = torch.as_tensor(sample['gt_score']).cpu().flatten() > 0.5
            elif 'gt_label' in sample:
                gt = torch.zeros(len(score), dtype=torch.bool)
                gt[torch.as_tensor(sample['gt_label']).cpu().long()] = True
            else:
                raise KeyError(f'AttributeMetric: data sample has neither `gt_score` nor '
                               f'`gt_label` (has {sorted(sample)})')
            self.results.append(dict(pred=(score >= self.thr).numpy(), gt=gt.numpy(),
                                     finite=bool(torch.isfinite(score).all())))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Stack all samples and compute mA and the instance-based metrics."""
        bad = sum(not r.get('finite', True) for r in results)
        if bad:  # NaN >= thr is False: they would silently count as absent attributes
            raise non_finite_error(f'AttributeMetric: {bad} of {len(results)} samples have '
                                   f'non-finite scores (NaN or inf)')
        names = (self.dataset_meta or {}).get('classes')
        return attribute_metrics(np.stack([r['pred'] for r in results]),
                                 np.stack([r['gt'] for r in results]), names)
