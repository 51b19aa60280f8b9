"""BNNeck ReID head: identity classification + batch-hard triplet loss, retrieval features."""
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


@MODELS.register_module()
class ReIDHead(BaseModule):
    """The BNNeck head of "Bag of Tricks" ReID (Luo et al., 2019), for a global feature.

    The backbone's global feature ``f`` (for a ViT, the cls token) feeds the triplet loss; a
    BatchNorm (``f_bn = BN(f)``, bias frozen at 0) feeds a bias-free linear identity classifier
    trained with (label-smoothed) cross-entropy. BN separates the two objectives: the triplet
    loss shapes a Euclidean space, the ID loss a cosine-separable one. ``predict`` returns the
    retrieval feature in the data sample field ``pred_feature``, read by
    :class:`saip_mm.evaluation.ReIDMetric`.

    Used inside mmpretrain's ``ImageClassifier`` (``backbone -> head``): ``gt_label`` is the
    contiguous training identity index the ReID datasets provide.

    Args:
        in_channels (int): feature width (192 for ViT-Tiny).
        num_classes (int): training identities (751 for Market-1501, 1041 for MSMT17).
        loss_id (dict): identity loss. Defaults to label smoothing 0.1 (BoT).
        loss_triplet (dict, optional): metric loss on ``f``. Defaults to
            ``TripletLoss(margin=0.3)`` (BoT); None disables it.
        test_feature (str): ``'bn'`` (``f_bn``, default, as in BoT with cosine distance) or
            ``'pre_bn'`` (``f``).
        init_cfg (dict | list, optional): defaults to BN weight 1 / bias 0 and the classifier
            from N(0, 0.001), as in BoT.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 loss_id: dict = dict(type='LabelSmoothLoss', label_smooth_val=0.1),
                 loss_triplet: Optional[dict] = dict(type='TripletLoss', margin=0.3),
                 test_feature: str = 'bn',
                 init_cfg: Optional[dict] = (
                     dict(type='Normal', layer='Linear', std=0.001),
                     dict(type='Constant', layer='BatchNorm1d', val=1.0, bias=0.0))) -> None:
        super().__init__(init_cfg=list(init_cfg) if isinstance(init_cfg, tuple) else init_cfg)
        if test_feature not in ('bn', 'pre_bn'):
            raise ValueError(f"test_feature must be 'bn' or 'pre_bn', got {test_feature!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.test_feature = test_feature
        self.bnneck = nn.BatchNorm1d(in_channels)
        self.bnneck.bias.requires_grad_(False)  # a shift would only move the cosine space
        self.classifier = nn.Linear(in_channels, num_classes, bias=False)
        self.loss_id = MODELS.build(loss_id)
        self.loss_triplet = MODELS.build(loss_triplet) if loss_triplet is not None else None

    def pre_logits(self, feats: Tuple[Tensor, ...]) -> Tensor:
        """The global feature ``f`` (B, C): the last backbone output."""
        feat = feats[-1]
        if feat.dim() != 2:
            raise ValueError(f'ReIDHead expects a (B, C) global feature, got {tuple(feat.shape)};'
                             f" use a backbone with out_type='cls_token' (or a pooling neck).")
        return feat

    def forward(self, feats: Tuple[Tensor, ...]) -> Tuple[Tensor, Tensor]:
        """Return ``f`` (B, C) and ``f_bn`` (B, C)."""
        feat = self.pre_logits(feats)
        return feat, self.bnneck(feat)

    def loss(self, feats: Tuple[Tensor, ...], data_samples: List[DataSample],
             **kwargs) -> Dict[str, Tensor]:
        """ID loss on the classified ``f_bn``, triplet loss on ``f``."""
        feat, feat_bn = self(feats)
        labels = torch.cat([s.gt_label for s in data_samples]).to(feat.device)
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise ValueError(f'identity label {int(labels.max())} >= num_classes='
                             f'{self.num_classes}: set the head to the number of training '
                             f'identities of the dataset.')
        logits = self.classifier(feat_bn)  # (B, num_classes)
        losses = dict(loss_id=self.loss_id(logits, labels))
        if self.loss_triplet is not None:
            losses['loss_triplet'] = self.loss_triplet(feat, labels)
        with torch.no_grad():
            losses['accuracy_id'] = (logits.argmax(1) == labels).float().mean() * 100
        return losses

    def predict(self, feats: Tuple[Tensor, ...],
                data_samples: Optional[List[DataSample]] = None) -> List[DataSample]:
        """Set ``pred_feature`` (C, ) on each data sample."""
        feat, feat_bn = self(feats)
        out = feat_bn if self.test_feature == 'bn' else feat
        if data_samples is None:
            data_samples = [DataSample() for _ in range(len(out))]
        for sample, vec in zip(data_samples, out):
            sample.set_field(vec, 'pred_feature')
        return data_samples
