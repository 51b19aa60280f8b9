from .algorithms import SAIP
from .backbones import SAIPViT
from .batch_views_preprocessor import SAIPBatchViewsPreprocessor
from .data_preprocessor import SAIPDataPreprocessor
from .heads import AttributeHead, CSMHead, CSRHead, CSSHead, DistillHead, ReIDHead
from .losses import CSMLoss, CSRLoss, CSSLoss, DistillLoss, TripletLoss, WeightedBCELoss
from .necks import SimpleFeaturePyramid

__all__ = [
    'SAIP', 'SAIPViT', 'SAIPDataPreprocessor', 'AttributeHead', 'CSMHead', 'CSRHead', 'CSSHead',
    'DistillHead', 'ReIDHead', 'CSMLoss', 'CSRLoss', 'CSSLoss', 'DistillLoss', 'TripletLoss',
    'WeightedBCELoss',
    'SimpleFeaturePyramid', 'SAIPBatchViewsPreprocessor'
]
from .losses import SDMLoss  # noqa: E402
from .retrievers import TextPersonRetriever  # noqa: E402
from .text_encoders import HFTextEncoder, TransformerTextEncoder, WordTokenizer  # noqa: E402

__all__ += ['SDMLoss', 'TextPersonRetriever', 'HFTextEncoder', 'TransformerTextEncoder',
            'WordTokenizer']
from .baselines import RectMAEPretrainDecoder, RectMAEPretrainHead, RectMAEViT  # noqa: E402

__all__ += ['RectMAEViT', 'RectMAEPretrainDecoder', 'RectMAEPretrainHead']
