from .algorithms import SAIP
from .backbones import SAIPViT
from .batch_views_preprocessor import SAIPBatchViewsPreprocessor
from .data_preprocessor import SAIPDataPreprocessor
from .heads import AttributeHead, CSMHead, CSRHead, CSSHead, ReIDHead
from .losses import CSMLoss, CSRLoss, CSSLoss, TripletLoss, WeightedBCELoss
from .necks import SimpleFeaturePyramid

__all__ = [
    'SAIP', 'SAIPViT', 'SAIPDataPreprocessor', 'AttributeHead', 'CSMHead', 'CSRHead', 'CSSHead',
    'ReIDHead', 'CSMLoss', 'CSRLoss', 'CSSLoss', 'TripletLoss', 'WeightedBCELoss',
    'SimpleFeaturePyramid', 'SAIPBatchViewsPreprocessor'
]
