"""Turn a SAIP pretraining checkpoint into a backbone checkpoint for stock OpenMMLab configs."""
import re
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


# mmpretrain TinyViT names → timm TinyVit names. The tensors are the same; timm calls the stem's
# convolutions conv1/conv2, its ConvNorm parts conv/bn, puts each downsampling at the start of
# the next stage (mmpretrain at the end of the stage before), and its final norm is the head's.
TINYVIT_TIMM_RULES = (
    (re.compile(r'^patch_embed\.seq\.0\.'), 'patch_embed.conv1.'),
    (re.compile(r'^patch_embed\.seq\.2\.'), 'patch_embed.conv2.'),
    (re.compile(r'\.conv2d\.'), '.conv.'),
    (re.compile(r'\.bn2d\.'), '.bn.'),
    (re.compile(r'^stages\.(\d+)\.downsample\.'),
     lambda m: f'stages.{int(m.group(1)) + 1}.downsample.'),
    (re.compile(r'^norm3\.'), 'head.norm.'),
)
# Final width → (mmpretrain TinyViT arch, timm model name).
TINYVIT_ARCHS = {320: ('5m', 'tiny_vit_5m_224'), 448: ('11m', 'tiny_vit_11m_224'),
                 576: ('21m', 'tiny_vit_21m_224')}
_TIMM_TINYVIT_KEY = re.compile(r'^(patch_embed\.conv[12]\.|stages\.\d+\.|head\.norm\.)')


def tinyvit_to_timm_state_dict(state_dict: Dict[str, torch.Tensor], path: str = 'checkpoint'
                               ) -> Tuple['OrderedDict[str, torch.Tensor]', str, str]:
    """Rename ``mmpretrain.TinyViT`` tensors (no prefix) to timm's ``TinyVit`` names.

    Args:
        state_dict (dict): backbone tensors in mmpretrain names, final norm ``norm3``.
        path (str): names the file in errors. Defaults to 'checkpoint'.

    Returns:
        tuple: the renamed tensors, the mmpretrain arch ('5m', '11m', '21m') and the timm model
        name (``tiny_vit_5m_224`` …) of the checkpoint's width.

    Raises:
        ValueError: no ``norm3`` of a known width, or a tensor that has no timm name (another
            stage's output norm, e.g. ``norm2``).
    """
    width = state_dict['norm3.weight'].shape[0] if 'norm3.weight' in state_dict else None
    if width not in TINYVIT_ARCHS:
        raise ValueError(f'{path}: not a TinyViT-5M/11M/21M backbone (final norm norm3 of width '
                         f'{width}; timm has {", ".join(map(str, TINYVIT_ARCHS))})')
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    unmappable = []
    for name, value in state_dict.items():
        target = name
        for pattern, replacement in TINYVIT_TIMM_RULES:
            target = pattern.sub(replacement, target)
        if _TIMM_TINYVIT_KEY.match(target):
            out[target] = value
        else:
            unmappable.append(name)
    if unmappable:
        raise ValueError(f'{path}: {len(unmappable)} tensors have no timm TinyVit name '
                         f'({", ".join(unmappable[:6])}); timm keeps only the last stage\'s norm')
    arch, timm_name = TINYVIT_ARCHS[width]
    return out, arch, timm_name
