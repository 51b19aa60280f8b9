from .csm_loss import CSMLoss
from .csr_loss import CSRLoss
from .css_loss import CSSLoss

__all__ = ['CSMLoss', 'CSRLoss', 'CSSLoss']
