from .saip import SAIP, cosine_momentum, rescale

__all__ = ['SAIP', 'cosine_momentum', 'rescale']
