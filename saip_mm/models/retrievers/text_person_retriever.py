"""A dual-encoder model for text-based person retrieval: image tower, text tower, shared space."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


@MODELS.register_module()
class TextPersonRetriever(BaseModel):
    """Dual encoder for text → person-image retrieval, trained with SDM + identity losses.

    - image tower: ``backbone`` (a ViT with ``out_type='cls_token'``, e.g. the SAIP ViT-Tiny
      loaded by ``SAIPPretrainedHook``) → its cls token → linear ``image_proj`` to
      ``embed_dims``;
    - text tower: ``text_encoder`` (:class:`~saip_mm.models.TransformerTextEncoder` trained from
      scratch, or :class:`~saip_mm.models.HFTextEncoder` for a local Hugging Face model) →
      linear ``text_proj`` to ``embed_dims``.

    Losses (training samples are image-caption pairs carrying ``caption``, ``pid`` and
    ``gt_label``):

    - ``loss_sdm``: similarity-distribution matching (IRRA): KL divergence between the softmax
      of the scaled cosine similarities of the batch (image → text and text → image) and the
      normalised same-identity distribution (:class:`~saip_mm.models.SDMLoss`);
    - ``loss_id``: identity classification (IRRA's ID loss): one linear classifier over the
      ``num_classes`` training identities, shared by both modalities, cross-entropy on the image
      embeddings and on the text embeddings, averaged. ``num_classes=None`` or
      ``loss_id=None`` switches it off.

    ``predict`` sets, per sample, ``image_feature`` (embed_dims, ) and ``text_features``
    (n_captions, embed_dims) from its ``captions``, both L2-normalised, for
    :class:`~saip_mm.evaluation.TextPersonRetrievalMetric`.

    Args:
        backbone (dict): image tower config; its forward returns a tuple whose last item is
            (B, C) (``mmpretrain.VisionTransformer`` with ``out_type='cls_token'``).
        text_encoder (dict): text tower config; it maps a list of captions to (B, width) and
            has a ``width`` attribute.
        embed_dims (int): width of the shared space. Defaults to 256.
        num_classes (int, optional): training identities, for the identity loss. Defaults to
            None (no identity loss).
        loss_sdm (dict): SDM loss config. Defaults to ``SDMLoss`` with τ = 0.02 (IRRA).
        loss_id (dict, optional): identity loss config. Defaults to ``CrossEntropyLoss``,
            weight 1.
        data_preprocessor (dict, optional): image preprocessor; its type defaults to
            mmpretrain's ``ClsDataPreprocessor``.
        init_cfg (dict, optional): MMEngine initialisation config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 text_encoder: dict,
                 embed_dims: int = 256,
                 num_classes: Optional[int] = None,
                 loss_sdm: dict = dict(type='SDMLoss', temperature=0.02, loss_weight=1.0),
                 loss_id: Optional[dict] = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'mmpretrain.ClsDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.text_encoder = MODELS.build(text_encoder)
        image_width = getattr(self.backbone, 'embed_dims', None)
        if image_width is None:
            raise ValueError(f'TextPersonRetriever: the backbone {type(self.backbone).__name__} '
                             f'has no `embed_dims` (its output width)')
        self.image_proj = nn.Linear(image_width, embed_dims)
        self.text_proj = nn.Linear(self.text_encoder.width, embed_dims)
        self.loss_sdm = MODELS.build(loss_sdm)
        self.with_id_loss = num_classes is not None and loss_id is not None
        if self.with_id_loss:
            self.classifier = nn.Linear(embed_dims, num_classes)
            self.loss_id = MODELS.build(loss_id)

    def extract_image_feat(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) → embeddings (B, embed_dims), not normalised."""
        cls_token = self.backbone(images)[-1]  # (B, C)
        return self.image_proj(cls_token)

    def extract_text_feat(self, captions: Sequence[str]) -> torch.Tensor:
        """Captions → embeddings (B, embed_dims), not normalised."""
        return self.text_proj(self.text_encoder(list(captions)))

    @staticmethod
    def _field(samples: Sequence[DataSample], key: str, mode: str) -> list:
        values = []
        for sample in samples:
            if key not in sample:
                raise KeyError(
                    f'TextPersonRetriever ({mode}): a data sample has no `{key}` (it has '
                    f'{sorted(sample.all_keys())}). Training samples need `caption` and `pid` '
                    f'(the training split of a text-person dataset), evaluation samples '
                    f'`captions` and `pid`; list them in PackInputs(meta_keys=...).')
            values.append(sample.get(key))
        return values

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """SDM and identity losses of a batch of image-caption pairs."""
        captions = self._field(data_samples, 'caption', 'loss')
        pids = torch.as_tensor(self._field(data_samples, 'pid', 'loss'), device=inputs.device)
        image_feats = self.extract_image_feat(inputs)  # (B, E)
        text_feats = self.extract_text_feat(captions)  # (B, E)
        losses = dict(loss_sdm=self.loss_sdm(image_feats, text_feats, pids))
        if self.with_id_loss:
            labels = torch.cat([s.gt_label for s in data_samples]).to(inputs.device)
            losses['loss_id'] = 0.5 * (self.loss_id(self.classifier(image_feats), labels) +
                                       self.loss_id(self.classifier(text_feats), labels))
        return losses

    def predict(self, inputs: torch.Tensor,
                data_samples: List[DataSample]) -> List[DataSample]:
        """Normalised image embedding and the embeddings of each sample's captions."""
        captions = self._field(data_samples, 'captions', 'predict')
        image_feats = F.normalize(self.extract_image_feat(inputs), dim=1)
        flat = [c for caps in captions for c in caps]
        text_feats = F.normalize(self.extract_text_feat(flat), dim=1)
        start = 0
        for sample, image_feat, caps in zip(data_samples, image_feats, captions):
            sample.image_feature = image_feat
            sample.text_features = text_feats[start:start + len(caps)]
            start += len(caps)
        return data_samples

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor') -> Union[Dict[str, torch.Tensor], List[DataSample],
                                               Tuple[torch.Tensor, torch.Tensor]]:
        """``'loss'``: losses; ``'predict'``: samples with features; ``'tensor'``: the image
        embeddings and, when the samples carry captions, the caption embeddings."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            image_feats = self.extract_image_feat(inputs)
            if not data_samples:
                return image_feats
            return image_feats, self.extract_text_feat(
                self._field(data_samples, 'caption', 'tensor'))
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
