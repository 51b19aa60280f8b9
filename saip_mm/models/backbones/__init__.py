from .saip_tinyvit import SAIPTinyViT
from .saip_vit import SAIPViT, last_block_relations

__all__ = ['SAIPViT', 'last_block_relations', 'SAIPTinyViT']
from .pretrained_vit import PretrainedVisionTransformer  # noqa: E402

__all__ += ['PretrainedVisionTransformer']
