from .saip_vit import SAIPViT, last_block_relations

__all__ = ['SAIPViT', 'last_block_relations']
from .pretrained_vit import PretrainedVisionTransformer  # noqa: E402

__all__ += ['PretrainedVisionTransformer']
