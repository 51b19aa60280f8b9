from .algorithms import SAIP
from .backbones import SAIPViT
from .data_preprocessor import SAIPDataPreprocessor
from .heads import CSMHead, CSRHead, CSSHead
from .losses import CSMLoss, CSRLoss, CSSLoss

__all__ = [
    'SAIP', 'SAIPViT', 'SAIPDataPreprocessor', 'CSMHead', 'CSRHead', 'CSSHead', 'CSMLoss',
    'CSRLoss', 'CSSLoss'
]
