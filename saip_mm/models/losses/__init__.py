from .csm_loss import CSMLoss
from .csr_loss import CSRLoss
from .css_loss import CSSLoss
from .distill_loss import DistillLoss
from .triplet_loss import TripletLoss
from .weighted_bce_loss import WeightedBCELoss

__all__ = ['CSMLoss', 'CSRLoss', 'CSSLoss', 'DistillLoss', 'TripletLoss', 'WeightedBCELoss']
from .sdm_loss import SDMLoss, sdm_loss  # noqa: E402

__all__ += ['SDMLoss', 'sdm_loss']
