"""saip_mm: SAIP (Scale-Aware Image Pretraining) as an OpenMMLab plugin.

Importing the package registers every SAIP module into mmpretrain's registries and makes
MMEngine Runner checkpoints loadable under ``torch.load(weights_only=True)`` (torch >= 2.6).
It also shortens MMEngine's weight-initialisation log to one line per module group
(``saip_mm.utils.init_log``; ``log_level='DEBUG'`` keeps the per-tensor table).
"""
from .version import __version__
from .utils import install_init_log_summary, register_checkpoint_safe_globals

register_checkpoint_safe_globals()
install_init_log_summary()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registration side effects)

__all__ = ['__version__', 'register_checkpoint_safe_globals']
