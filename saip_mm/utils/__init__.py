from .backbone_export import extract_backbone
from .checkpoint_compat import register_checkpoint_safe_globals
from .init_log import install_init_log_summary

__all__ = ['extract_backbone', 'install_init_log_summary', 'register_checkpoint_safe_globals']
