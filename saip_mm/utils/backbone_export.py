"""Turn a SAIP pretraining checkpoint into a backbone checkpoint for stock OpenMMLab configs."""
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

# Backbone parameters that exist only for pretraining; mmpretrain.VisionTransformer has none.
PRETRAIN_ONLY_BACKBONE_KEYS = ('ln_inter.',)
REQUIRED_BACKBONE_KEYS = ('patch_embed.projection.weight', 'pos_embed', 'cls_token')
# The same check for SAIPTinyViT (mmpretrain.TinyViT names: conv stem, final norm).
REQUIRED_TINYVIT_BACKBONE_KEYS = ('patch_embed.seq.0.conv2d.weight', 'norm3.weight')


def extract_backbone(state_dict: Dict[str, torch.Tensor],
                     source: str = 'teacher') -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Pick the teacher's (or student's) backbone out of a SAIP model state dict.

    Args:
        state_dict (dict): the ``state_dict`` of a checkpoint written while training
            :class:`saip_mm.models.SAIP`.
        source (str): ``'teacher'`` (the EMA weights, default, as in the method) or ``'student'``.

    Returns:
        tuple: the backbone weights keyed ``backbone.<name>`` (``<name>`` as in
        ``mmpretrain.VisionTransformer``), and the sorted list of dropped keys.

    Raises:
        ValueError: the state dict holds no SAIP backbone for ``source``.
    """
    prefixes = {'teacher': 'teacher.backbone.', 'student': 'backbone.'}
    if source not in prefixes:
        raise ValueError(f"source must be 'teacher' or 'student', got {source!r}")
    prefix = prefixes[source]
    backbone, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name is None or name.startswith(PRETRAIN_ONLY_BACKBONE_KEYS):
            dropped.append(key)
        else:
            backbone['backbone.' + name] = value.detach().cpu().clone()
    missing = [k for k in REQUIRED_BACKBONE_KEYS if 'backbone.' + k not in backbone]
    if all('backbone.' + k in backbone for k in REQUIRED_TINYVIT_BACKBONE_KEYS):
        missing = []
    if missing:
        sample = ', '.join(list(state_dict)[:5])
        raise ValueError(
            f'no SAIP {source} backbone in this state dict: keys {prefix}{{{", ".join(missing)}}} '
            f'are missing (first keys found: {sample}). Is this a SAIP pretraining checkpoint?')
    return backbone, sorted(dropped)
