"""Multi-label pedestrian attribute head: linear + BatchNorm logits, imbalance-weighted BCE."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from mmpretrain.models.heads import MultiLabelClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample, label_to_onehot

from ..losses.weighted_bce_loss import WeightedBCELoss


@MODELS.register_module()
class AttributeHead(MultiLabelClsHead):
    """Pedestrian attribute head of the strong baseline (Jia et al., 2021) on a global feature.

    ``logits = BN(W·f)`` (the BatchNorm after the classifier lets each attribute learn its own
    bias/scale against heavy imbalance), one sigmoid per attribute, trained with
    :class:`WeightedBCELoss`. ``predict`` sets ``pred_score`` (per-attribute probabilities) and
    ``pred_label`` (indices of the attributes over ``thr``), as mmpretrain's multi-label heads
    do, so :class:`saip_mm.evaluation.AttributeMetric` and mmpretrain's ``MultiLabelMetric``
    both read it.

    The loss weighting needs each attribute's positive ratio in the training set: pass it as
    ``pos_ratio`` or let :class:`saip_mm.engine.hooks.AttributePosRatioHook` fill the ``pos_ratio``
    buffer from the training dataset before training (it is saved with the checkpoint).

    Args:
        in_channels (int): feature width (192 for ViT-Tiny).
        num_classes (int): attributes (26 for PA-100K, 35 for PETA).
        with_bn (bool): BatchNorm1d on the logits. Defaults to True.
        pos_ratio (Sequence[float], optional): training positive ratio per attribute.
            Defaults to None (unset, NaN).
        loss (dict): the loss. Defaults to ``WeightedBCELoss(weighting='exp')``.
        thr (float): score threshold of ``pred_label``. Defaults to 0.5.
        init_cfg (dict, optional): defaults to the classifier from N(0, 0.01).
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 with_bn: bool = True,
                 pos_ratio: Optional[Sequence[float]] = None,
                 loss: dict = dict(type='WeightedBCELoss', weighting='exp'),
                 thr: float = 0.5,
                 init_cfg: Optional[dict] = dict(type='Normal', layer='Linear', std=0.01)) -> None:
        super().__init__(loss=loss, thr=thr, init_cfg=init_cfg)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.fc = nn.Linear(in_channels, num_classes)
        self.bn = nn.BatchNorm1d(num_classes) if with_bn else nn.Identity()
        self.register_buffer('pos_ratio', torch.full((num_classes, ), float('nan')))
        if pos_ratio is not None:
            self.set_pos_ratio(pos_ratio)

    def set_pos_ratio(self, pos_ratio: Sequence[float]) -> None:
        """Set the per-attribute training positive ratio used by the loss weighting."""
        ratio = torch.as_tensor(pos_ratio, dtype=torch.float32).flatten()
        if ratio.numel() != self.num_classes:
            raise ValueError(f'pos_ratio has {ratio.numel()} entries for {self.num_classes} '
                             f'attributes')
        if not ((ratio >= 0) & (ratio <= 1)).all():
            raise ValueError(f'pos_ratio must lie in [0, 1], got {ratio.tolist()}')
        self.pos_ratio.copy_(ratio)

    def pre_logits(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """The global feature (B, C): the last backbone output."""
        feat = feats[-1]
        if feat.dim() != 2:
            raise ValueError(f'AttributeHead expects a (B, C) global feature, got '
                             f"{tuple(feat.shape)}; use a backbone with out_type='cls_token'.")
        return feat

    def forward(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """Logits (B, num_classes)."""
        return self.bn(self.fc(self.pre_logits(feats)))

    def _get_loss(self, cls_score: Tensor, data_samples: List[DataSample],
                  **kwargs) -> Dict[str, Tensor]:
        if 'gt_score' in data_samples[0]:
            target = torch.stack([s.gt_score.float() for s in data_samples])
        else:
            target = torch.stack(
                [label_to_onehot(s.gt_label, self.num_classes) for s in data_samples]).float()
        target = target.to(cls_score.device)
        if isinstance(self.loss_module, WeightedBCELoss):
            return dict(loss=self.loss_module(cls_score, target, pos_ratio=self.pos_ratio))
        # any other mmpretrain multi-label loss, called as MultiLabelClsHead does
        loss = self.loss_module(cls_score, target, avg_factor=cls_score.size(0), **kwargs)
        return dict(loss=loss)
