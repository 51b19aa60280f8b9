from .masking import anchor_consistent_mask
from .pretrained import (PretrainedCheckpointError, load_pretrained_backbone,
                         resolve_pos_embed_grid)

__all__ = [
    'anchor_consistent_mask', 'PretrainedCheckpointError', 'load_pretrained_backbone',
    'resolve_pos_embed_grid'
]
