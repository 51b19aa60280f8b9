from .backbone_export import extract_backbone
from .checkpoint_compat import register_checkpoint_safe_globals

__all__ = ['extract_backbone', 'register_checkpoint_safe_globals']
