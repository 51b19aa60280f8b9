"""Evaluation metrics for downstream tasks, registered into mmpretrain's METRICS."""
from .attribute_metric import AttributeMetric, attribute_metrics
from .reid_metric import ReIDMetric, pairwise_distance, reid_metrics

__all__ = ['AttributeMetric', 'ReIDMetric', 'attribute_metrics', 'pairwise_distance',
           'reid_metrics']
