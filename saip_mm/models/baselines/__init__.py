"""Baseline pretraining methods trained on the same person images as SAIP (for comparisons)."""
from .rect_mae import (RectMAEPretrainDecoder, RectMAEPretrainHead, RectMAEViT,
                       rect_sincos_position_embedding)

__all__ = ['RectMAEViT', 'RectMAEPretrainDecoder', 'RectMAEPretrainHead',
           'rect_sincos_position_embedding']
