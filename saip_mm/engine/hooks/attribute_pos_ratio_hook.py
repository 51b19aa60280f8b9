"""Give the attribute head its loss weights: each attribute's positive ratio in the train set."""
from operator import attrgetter

import numpy as np
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS


def dataset_pos_ratio(dataset, num_classes: int) -> np.ndarray:
    """Fraction of samples in which each attribute is present.

    Args:
        dataset: a dataset whose ``get_data_info(i)`` holds ``gt_label`` (indices of the
            positive attributes, mmpretrain's multi-label format) or ``gt_score`` (binary).
        num_classes (int): number of attributes.

    Returns:
        ndarray: (num_classes, ) ratios in [0, 1].
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if 'gt_score' in info:
            counts += np.asarray(info['gt_score'], dtype=np.float64) > 0.5
        else:
            counts[np.asarray(info['gt_label'], dtype=np.int64)] += 1
    return counts / max(len(dataset), 1)


@HOOKS.register_module()
class AttributePosRatioHook(Hook):
    """Before training, set the attribute head's ``pos_ratio`` from the training dataset.

    Only an unset (NaN) ratio is filled: a ratio given in the config, or restored by
    ``--resume`` / ``load_from`` (it is a buffer, saved with the model), is kept.

    Args:
        head (str): attribute path of the head in the model. Defaults to 'head'.
    """
    priority = 'NORMAL'

    def __init__(self, head: str = 'head') -> None:
        self.head = head

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        head = attrgetter(self.head)(model)
        if not hasattr(head, 'set_pos_ratio'):
            raise TypeError(f'AttributePosRatioHook: model.{self.head} is a '
                            f'{type(head).__name__}, not an AttributeHead')
        if bool(head.pos_ratio.isfinite().all()):
            runner.logger.info('AttributePosRatioHook: the head already has its pos_ratio')
            return
        ratio = dataset_pos_ratio(runner.train_dataloader.dataset, head.num_classes)
        head.set_pos_ratio(ratio)
        runner.logger.info('attribute positive ratios in the training set: '
                           + ', '.join(f'{r:.3f}' for r in ratio))
