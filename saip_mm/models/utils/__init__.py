from .masking import anchor_consistent_mask

__all__ = ['anchor_consistent_mask']
