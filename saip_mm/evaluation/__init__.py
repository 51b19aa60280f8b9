"""Evaluation metrics for downstream tasks, registered into mmpretrain's METRICS."""
from .attribute_metric import AttributeMetric, attribute_metrics
from .reid_metric import ReIDMetric, pairwise_distance, reid_metrics

__all__ = ['AttributeMetric', 'ReIDMetric', 'attribute_metrics', 'pairwise_distance',
           'reid_metrics']
from .text_retrieval_metric import (TextPersonRetrievalMetric,  # noqa: E402
                                    text_to_image_metrics)

__all__ += ['TextPersonRetrievalMetric', 'text_to_image_metrics']
