"""ViT checkpoints of other layouts → ``mmpretrain.VisionTransformer`` backbone checkpoints,
and back to timm's layout (:func:`to_timm_state_dict`, :func:`timm_vit_args`).

Human-centric ViT backbones are published in several layouts. All of them use the same tensors
(a timm-style pre-norm ViT); only the names, the nesting and the prefixes differ:

=================  ===================================================================
layout             how it is recognised
=================  ===================================================================
``saip-mm``        MMEngine ``state_dict`` with ``teacher.backbone.*`` and ``backbone.ln_inter``
                   (a saip_mm pretraining run; teacher by default)
``saip-authors``   ``teacher`` / ``student`` dicts with ``backbone.inter_norm`` or the
                   ``csm_decoder`` / ``csr_decoder`` / ``css_decoder`` heads (SAIPv1's
                   ``main_pretrain.py``; the student is DDP-wrapped: ``module.backbone.``)
``dino``           ``teacher`` / ``student`` dicts (DINO, SOLIDER-style), ``backbone.`` or
                   ``module.backbone.`` prefix
``mmengine``       ``state_dict`` with mmpretrain names (``backbone.layers.N.ln1``)
``timm``           timm / DeiT / MAE / HAP names (``blocks.N.norm1``, ``attn.qkv``,
                   ``mlp.fc1``) under ``model``, ``state_dict`` or at the top, with any prefix
                   (``module.backbone_module.`` for PATH)
=================  ===================================================================

The prefix is found from where the first block's first norm lives (``<prefix>blocks.0.norm1``
or ``<prefix>layers.0.ln1``), so other wrappers work too. Every tensor of a transformer block
must map (an unknown one, e.g. relative position tables, is an error: the result would not be
the same network); tensors outside the backbone (heads, decoders, projectors, the
pretraining-only intermediate norm) are dropped and listed.
"""
import ast
import os.path as osp
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from .backbone_export import extract_backbone
from .pos_embed_grid import resolve_pos_embed_grid

# timm/DeiT/MAE/HAP/DINO/PATH/SAIPv1 names (and mmpretrain's own) → mmpretrain names. For
# each mmpretrain name, timm's name is listed first: the reverse mapping (mmpretrain → timm,
# ``TIMM_*_NAMES``, :func:`to_timm_state_dict`) takes the first other name listed.
TOP_LEVEL_NAMES = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'patch_embed.proj.weight': 'patch_embed.projection.weight',
    'patch_embed.proj.bias': 'patch_embed.projection.bias',
    'patch_embed.projection.weight': 'patch_embed.projection.weight',
    'patch_embed.projection.bias': 'patch_embed.projection.bias',
    'norm.weight': 'ln1.weight',
    'norm.bias': 'ln1.bias',
    'ln1.weight': 'ln1.weight',
    'ln1.bias': 'ln1.bias',
    'norm_pre.weight': 'pre_norm.weight',
    'norm_pre.bias': 'pre_norm.bias',
    'ln_pre.weight': 'pre_norm.weight',
    'ln_pre.bias': 'pre_norm.bias',
    'pre_norm.weight': 'pre_norm.weight',
    'pre_norm.bias': 'pre_norm.bias',
}
BLOCK_NAMES = {
    'norm1': 'ln1', 'ln1': 'ln1',
    'attn.qkv': 'attn.qkv',
    'attn.proj': 'attn.proj',
    'norm2': 'ln2', 'ln2': 'ln2',
    'mlp.fc1': 'ffn.layers.0.0', 'ffn.layers.0.0': 'ffn.layers.0.0',
    'mlp.fc2': 'ffn.layers.1', 'ffn.layers.1': 'ffn.layers.1',
}
# Layer scale (DeiT-3 style): timm's ``ls1.gamma`` is mmpretrain's ``attn.gamma1.weight``.
BLOCK_PARAMS = {
    'ls1.gamma': 'attn.gamma1.weight', 'attn.gamma1.weight': 'attn.gamma1.weight',
    'ls2.gamma': 'ffn.gamma2.weight', 'ffn.gamma2.weight': 'ffn.gamma2.weight',
}


def _first_other_names(table: Dict[str, str]) -> Dict[str, str]:
    """Invert a name table: each mmpretrain name → the first other name listed for it (timm's);
    a name timm shares (``cls_token``, ``attn.qkv``) maps to itself."""
    reverse: Dict[str, str] = {}
    for source, target in table.items():
        if source != target:
            reverse.setdefault(target, source)
    for target in table.values():
        reverse.setdefault(target, target)
    return reverse


# mmpretrain names → timm ``VisionTransformer`` names (the tables above, inverted).
TIMM_TOP_LEVEL_NAMES = _first_other_names(TOP_LEVEL_NAMES)
TIMM_BLOCK_NAMES = _first_other_names(BLOCK_NAMES)
TIMM_BLOCK_PARAMS = _first_other_names(BLOCK_PARAMS)
REQUIRED_BLOCK_KEYS = ('ln1.weight', 'ln1.bias', 'attn.qkv.weight', 'attn.proj.weight',
                       'attn.proj.bias', 'ln2.weight', 'ln2.bias', 'ffn.layers.0.0.weight',
                       'ffn.layers.0.0.bias', 'ffn.layers.1.weight', 'ffn.layers.1.bias')
_FIRST_NORM = re.compile(r'^((?:[\w-]+\.)*)(blocks|layers)\.0\.(norm1|ln1)\.weight$')
_BLOCK_KEY = re.compile(r'^(?:blocks|layers)\.(\d+)\.(.+)$')
SAIP_AUTHORS_MARKERS = ('inter_norm.', 'csm_decoder.', 'csr_decoder.', 'css_decoder.')
# Widths of the usual ViT sizes, to name an architecture in messages.
WIDTH_NAMES = {192: 'ViT-Tiny', 384: 'ViT-Small', 768: 'ViT-Base', 1024: 'ViT-Large',
               1280: 'ViT-Huge', 1408: 'ViT-g', 1536: 'ViT-g (DINOv2)'}
# Attention heads of the usual widths, for checkpoints that record none: heads of 64 channels
# (ViT-Ti/S/B/L, DINOv2-g), of 80 for ViT-H/14 (MAE, 16 heads) and of 88 for ViT-g/14 (EVA).
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16, 1536: 24}
ARCH_FIELDS = ('embed_dims', 'num_layers', 'feedforward_channels')


class ViTLayoutError(ValueError):
    """A checkpoint whose layout is not understood or cannot become an mmpretrain ViT."""


def _tensors_only(obj: Any) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def _find_prefixes(state_dict: Dict[str, torch.Tensor]) -> List[str]:
    """Prefixes of the ViTs in a state dict; decoders with blocks but no pos_embed left out."""
    found = sorted({m.group(1) for m in map(_FIRST_NORM.match, state_dict) if m})
    with_positions = [p for p in found if p + 'pos_embed' in state_dict]
    return with_positions or found


def select_state_dict(ckpt: Any, source: str = 'teacher',
                      path: str = 'checkpoint') -> Tuple[str, Dict[str, torch.Tensor], List[str]]:
    """Pick the state dict that holds the ViT, and name the layout.

    Args:
        ckpt (Any): the loaded checkpoint.
        source (str): ``'teacher'`` or ``'student'`` for checkpoints that hold both (DINO,
            SAIP). Defaults to 'teacher'.
        path (str): names the file in errors. Defaults to 'checkpoint'.

    Returns:
        tuple: layout name, the state dict, and the top-level entries not used (for the report).
    """
    if not isinstance(ckpt, dict):
        raise ViTLayoutError(f'{path} holds a {type(ckpt).__name__}, not a dict of tensors')
    if source not in ('teacher', 'student'):
        raise ViTLayoutError(f"source must be 'teacher' or 'student', got {source!r}")

    def others(used: str) -> List[str]:
        return sorted(str(k) for k in ckpt if k != used)

    if isinstance(ckpt.get('teacher'), dict) or isinstance(ckpt.get('student'), dict):
        if not _tensors_only(ckpt.get(source)):
            raise ViTLayoutError(
                f"{path} has teacher/student entries but no '{source}' state dict; choose "
                f"--source {'student' if source == 'teacher' else 'teacher'}")
        state_dict = ckpt[source]
        saip = any(marker in k for k in state_dict for marker in SAIP_AUTHORS_MARKERS)
        return ('saip-authors' if saip else 'dino'), state_dict, others(source)
    for container in ('state_dict', 'model', 'module'):
        if _tensors_only(ckpt.get(container)):
            state_dict = ckpt[container]
            if any(k.startswith('teacher.backbone.') for k in state_dict):
                return 'saip-mm', state_dict, others(container)
            return _name_layout(state_dict), state_dict, others(container)
    if _tensors_only(ckpt):
        return _name_layout(ckpt), ckpt, []
    raise ViTLayoutError(
        f'{path}: no state dict found (top-level entries: {", ".join(map(str, list(ckpt)[:8]))}); '
        f"expected tensors at the top or under 'state_dict', 'model', 'teacher' or 'student'")


def _name_layout(state_dict: Dict[str, torch.Tensor]) -> str:
    prefixes = _find_prefixes(state_dict)
    if prefixes and any(k.startswith(prefixes[0] + 'layers.0.ln1') for k in state_dict):
        return 'mmengine'
    return 'timm'


def _block_target(block: 're.Match', blocks: str, params: Dict[str, str],
                  modules: Dict[str, str]) -> Optional[str]:
    """The target name of one block tensor (``_BLOCK_KEY`` match: index, rest of the name)
    under ``<blocks>.<index>.``, from a table of whole parameter names and one of module
    names (their ``weight``/``bias``); None when neither table has it."""
    index, rest = block.groups()
    module, _, param = rest.rpartition('.')
    if rest in params:
        return f'{blocks}.{index}.{params[rest]}'
    if module in modules and param in ('weight', 'bias'):
        return f'{blocks}.{index}.{modules[module]}.{param}'
    return None


def map_vit_keys(state_dict: Dict[str, torch.Tensor], prefix: Optional[str] = None,
                 path: str = 'checkpoint') -> Tuple['OrderedDict[str, torch.Tensor]', dict]:
    """Rename a ViT's tensors to ``mmpretrain.VisionTransformer`` names.

    Args:
        state_dict (dict): tensors of one model (any of the layouts in the module docstring).
        prefix (str, optional): the backbone's key prefix; found automatically when None.
        path (str): names the file in errors. Defaults to 'checkpoint'.

    Returns:
        tuple: the renamed tensors (no prefix) and a report: ``prefix``, ``mapped``
        (source name → mmpretrain name), ``dropped`` (source names), ``missing`` (mmpretrain
        names a standard ViT has that the checkpoint lacks, with what to set instead).

    Raises:
        ViTLayoutError: no ViT found, an ambiguous prefix, a block tensor that has no
            mmpretrain equivalent, or an incomplete block.
    """
    if prefix is None:
        prefixes = _find_prefixes(state_dict)
        if not prefixes:
            sample = ', '.join(list(state_dict)[:6])
            raise ViTLayoutError(
                f'{path}: no ViT blocks found (looked for <prefix>blocks.0.norm1.weight or '
                f'<prefix>layers.0.ln1.weight; first keys: {sample})')
        if len(prefixes) > 1:
            raise ViTLayoutError(
                f'{path} holds several ViTs (prefixes {", ".join(repr(p) for p in prefixes)}); '
                f'choose one with --prefix')
        prefix = prefixes[0]
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    mapped, dropped, unmappable = {}, [], []
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            dropped.append(key)
            continue
        name = key[len(prefix):]
        target = TOP_LEVEL_NAMES.get(name)
        block = _BLOCK_KEY.match(name)
        if block:
            target = _block_target(block, 'layers', BLOCK_PARAMS, BLOCK_NAMES)
            if target is None:
                unmappable.append(key)
                continue
        if target is None:
            dropped.append(key)
            continue
        if target in out:
            raise ViTLayoutError(f'{path}: {key} and another tensor both map to {target}')
        if target == 'patch_embed.projection.weight' and value.dim() != 4:
            raise ViTLayoutError(f'{path}: {key} has shape {tuple(value.shape)}; a patch '
                                 f'embedding convolution weight is 4-D')
        out[target] = value.detach().cpu().clone()
        mapped[key] = target
    if unmappable:
        raise ViTLayoutError(
            f'{path}: {len(unmappable)} block tensors have no mmpretrain VisionTransformer '
            f'equivalent ({", ".join(unmappable[:6])}); this is not a plain ViT (relative '
            f'positions, windowed or split-bias attention?), so it cannot be converted exactly')
    if 'dist_token' in (k[len(prefix):] for k in dropped if k.startswith(prefix)):
        raise ViTLayoutError(f'{path} is a distilled DeiT (dist_token): load it into '
                             f"mmpretrain's DistilledVisionTransformer instead")
    depth = _depth(out)
    incomplete = [f'layers.{i}.{k}' for i in range(depth) for k in REQUIRED_BLOCK_KEYS
                  if f'layers.{i}.{k}' not in out]
    if depth == 0 or incomplete or 'pos_embed' not in out or (
            'patch_embed.projection.weight' not in out):
        lacking = incomplete + [k for k in ('pos_embed', 'patch_embed.projection.weight')
                                if k not in out]
        raise ViTLayoutError(f'{path}: incomplete ViT under prefix {prefix!r}: missing '
                             f'{", ".join(lacking[:8]) or "every block"}')
    blocks = {int(k.split('.')[1]) for k in out if k.startswith('layers.')}
    if blocks != set(range(depth)):
        raise ViTLayoutError(f'{path}: blocks {sorted(set(range(depth)) - blocks)} are missing')
    missing = []
    if 'cls_token' not in out:
        missing.append('cls_token (build the model with with_cls_token=False, '
                       "out_type='featmap' or 'avg_featmap')")
    if 'ln1.weight' not in out:
        missing.append('ln1 (no final norm: build the model with final_norm=False)')
    report = dict(prefix=prefix, mapped=mapped, dropped=sorted(dropped), missing=missing)
    return out, report


def _depth(state_dict: Dict[str, torch.Tensor]) -> int:
    blocks = {int(k.split('.')[1]) for k in state_dict if k.startswith('layers.')}
    return max(blocks) + 1 if blocks else 0


def vit_shape(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Width, depth, MLP width and patch size of a ViT in mmpretrain names."""
    proj = state_dict['patch_embed.projection.weight']  # (C, 3, p, p)
    return dict(embed_dims=int(proj.shape[0]), num_layers=_depth(state_dict),
                feedforward_channels=int(state_dict['layers.0.ffn.layers.0.0.weight'].shape[0]),
                patch_size=int(proj.shape[-1]))


def resolve_arch(arch: Union[str, dict]) -> dict:
    """``embed_dims``, ``num_layers``, ``feedforward_channels`` of an mmpretrain ViT ``arch``."""
    if isinstance(arch, dict):
        return dict(arch)
    from mmpretrain.models import VisionTransformer
    zoo = VisionTransformer.arch_zoo
    if arch.lower() not in zoo:
        raise ViTLayoutError(f'unknown --arch {arch!r}; mmpretrain VisionTransformer knows '
                             f'{", ".join(sorted(zoo))}')
    return dict(zoo[arch.lower()])


def matching_archs(shape: dict) -> List[Tuple[str, dict]]:
    """mmpretrain ``VisionTransformer`` archs with ``shape``'s width, depth and MLP width.

    Args:
        shape (dict): ``embed_dims``, ``num_layers``, ``feedforward_channels``
            (:func:`vit_shape`).

    Returns:
        list[tuple[str, dict]]: (name, arch settings), in the order of mmpretrain's
        ``arch_zoo``, each arch under its long name only (``deit-small``, not ``deit-s``).
    """
    from mmpretrain.models import VisionTransformer
    zoo = VisionTransformer.arch_zoo
    names = [name for name, spec in zoo.items()
             if all(int(spec[k]) == int(shape[k]) for k in ARCH_FIELDS)]
    # an alias is a name another name of the same settings starts with ('deit-s', 'deit-small')
    return [(name, dict(zoo[name])) for name in names
            if not any(other != name and other.startswith(name) and zoo[other] == zoo[name]
                       for other in names)]


def check_arch(state_dict: Dict[str, torch.Tensor], arch: Union[str, dict],
               path: str = 'checkpoint') -> None:
    """Refuse a checkpoint whose width, depth or MLP width differs from ``arch``.

    The number of heads is not stored in a checkpoint's tensors and cannot be checked. When
    the checkpoint's shape is that of another mmpretrain arch, the message names it (a timm
    ViT-S is ``deit-small``; mmpretrain's ``small`` is 768 wide).
    """
    want = resolve_arch(arch)
    have = vit_shape(state_dict)
    name = f'--arch {arch}' if isinstance(arch, str) else 'the given arch'

    def width(n: int) -> str:
        return f'{n} ({WIDTH_NAMES[n]})' if n in WIDTH_NAMES else str(n)

    for field, what in (('embed_dims', 'width'), ('num_layers', 'depth'),
                        ('feedforward_channels', 'MLP width')):
        if field in want and int(want[field]) != have[field]:
            shown = width if field == 'embed_dims' else str
            matches = [n for n, _ in matching_archs(have)]
            if matches:
                fix = (f"the checkpoint's width, depth and MLP width are those of --arch "
                       f'{matches[0]}' + (f' (or {", ".join(matches[1:])})'
                                          if len(matches) > 1 else ''))
            else:
                fix = ('pass the --arch of the checkpoint: ' + ','.join(
                    f'{k}={have[k]}' for k in ARCH_FIELDS) + ' (num_heads=N to record its '
                    'heads)')
            raise ViTLayoutError(
                f'{path}: the checkpoint has {what} {shown(have[field])} but {name} has '
                f'{shown(int(want[field]))}; {fix}')


def _cfg_literal(node: ast.AST) -> Any:
    """A config expression as Python data, without running it: literals and ``dict(...)``
    calls; anything else is ``None``."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args):
        return {kw.arg: _cfg_literal(kw.value) for kw in node.keywords if kw.arg}
    if isinstance(node, ast.Dict):
        keys = [_cfg_literal(k) if k is not None else None for k in node.keys]
        return {k: _cfg_literal(v) for k, v in zip(keys, node.values)
                if isinstance(k, (str, int))}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_cfg_literal(e) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def _heads_of_cfg_text(text: str, width: int) -> Optional[int]:
    """``model.backbone.arch``'s heads in an MMEngine checkpoint's ``meta['cfg']`` (the run's
    config as text, read with ``ast``, never executed), when its width is ``width``."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    model = next((_cfg_literal(node.value) for node in tree.body
                  if isinstance(node, ast.Assign) and any(
                      isinstance(t, ast.Name) and t.id == 'model' for t in node.targets)), None)
    backbone = model.get('backbone') if isinstance(model, dict) else None
    arch = backbone.get('arch') if isinstance(backbone, dict) else None
    if isinstance(arch, str):  # a name of its backbone class's arch_zoo
        from mmpretrain.registry import MODELS
        backbone_type = backbone.get('type', 'VisionTransformer')
        cls = MODELS.get(backbone_type) if isinstance(backbone_type, str) else None
        arch = (getattr(cls, 'arch_zoo', None) or {}).get(arch.lower())
    if (isinstance(arch, dict) and isinstance(arch.get('num_heads'), int)
            and arch.get('embed_dims') == width):
        return arch['num_heads']
    return None


def recorded_num_heads(ckpt: Any, meta: dict, width: int) -> Optional[Tuple[int, str]]:
    """The number of heads a checkpoint file records beside its tensors, and where.

    Looked for in ``meta['arch']['num_heads']`` (written by ``to_mmpretrain_vit.py``),
    ``meta['num_heads']``, the training script's options (``args.num_heads``), and an MMEngine
    run's config text (``meta['cfg']``: ``model.backbone.arch``, when as wide as the
    checkpoint).
    """
    arch = meta.get('arch')
    if isinstance(arch, dict) and isinstance(arch.get('num_heads'), int):
        return arch['num_heads'], "the checkpoint's meta['arch']"
    if isinstance(meta.get('num_heads'), int):
        return meta['num_heads'], "the checkpoint's meta['num_heads']"
    args = ckpt.get('args') if isinstance(ckpt, dict) else None
    heads = args.get('num_heads') if isinstance(args, dict) else getattr(args, 'num_heads', None)
    if isinstance(heads, int):
        return heads, "the checkpoint's args.num_heads"
    if isinstance(meta.get('cfg'), str):
        heads = _heads_of_cfg_text(meta['cfg'], width)
        if heads is not None:
            return heads, "the run's config in the checkpoint (model.backbone.arch)"
    return None


def resolve_num_heads(ckpt: Any, meta: dict, shape: dict, num_heads: Optional[int] = None,
                      path: str = 'checkpoint') -> Tuple[int, str]:
    """The attention heads of a checkpoint's ViT (not readable from its tensors), and whence.

    Order: ``num_heads`` when given; what the file records (:func:`recorded_num_heads`); the
    mmpretrain arch of the same width, depth and MLP width (:func:`matching_archs`); the usual
    heads of its width (``HEADS_BY_WIDTH``: 192/3, 384/6, 768/12, 1024/16, 1280/16 (ViT-H/14),
    1408/16 (ViT-g/14), 1536/24 (DINOv2-g)).

    Args:
        ckpt (Any): the loaded checkpoint.
        meta (dict): its ``meta`` (``{}`` for none).
        shape (dict): :func:`vit_shape` of its tensors.
        num_heads (int, optional): the heads, given by the user. Defaults to None.
        path (str): names the file in errors. Defaults to 'checkpoint'.

    Returns:
        tuple: the number of heads and where it came from.

    Raises:
        ViTLayoutError: nothing gives it (an unusual width), or it does not divide the width.
    """
    width = shape['embed_dims']
    if num_heads is not None:
        found = int(num_heads), 'num_heads as given'
    else:
        found = recorded_num_heads(ckpt, meta, width)
    if found is None:
        archs = matching_archs(shape)
        if archs:
            found = (int(archs[0][1]['num_heads']),
                     f'mmpretrain arch {archs[0][0]!r} (same width, depth and MLP width)')
        elif width in HEADS_BY_WIDTH:
            found = HEADS_BY_WIDTH[width], f'the usual heads of a {WIDTH_NAMES[width]}'
    if found is None:
        usual = ', '.join(f'{w}/{h}' for w, h in HEADS_BY_WIDTH.items())
        raise ViTLayoutError(
            f'{path}: the number of attention heads of this {width}-wide ViT is not recorded in '
            f'the file, and {width} is not a usual ViT width (width/heads: {usual}); pass '
            'num_heads explicitly')
    if found[0] <= 0 or width % found[0]:
        raise ViTLayoutError(f'{path}: {found[0]} heads (from {found[1]}) do not divide the '
                             f'width {width}')
    return found


def grid_hint(ckpt: Any, layout: str, num_patches: int,
              patch_size: int) -> Optional[Tuple[Tuple[int, int], str]]:
    """The source grid a layout implies: SAIPv1 saves its input size in ``args``."""
    if layout != 'saip-authors':
        return None
    args = ckpt.get('args') if isinstance(ckpt, dict) else None
    height, width = getattr(args, 'height', None), getattr(args, 'width', None)
    if height and width:
        grid = (int(height) // patch_size, int(width) // patch_size)
        if grid[0] * grid[1] == num_patches:
            return grid, f"the checkpoint's args (height={height}, width={width})"
    if num_patches == 128:
        return (16, 8), 'the SAIPv1 default 256x128 input'
    return None


def source_grid(num_patches: int, src_grid: Optional[Sequence[int]] = None,
                hint: Optional[Tuple[Tuple[int, int], str]] = None,
                path: str = 'checkpoint',
                meta: Optional[dict] = None) -> Tuple[Tuple[int, int], str]:
    """The (h, w) grid of a checkpoint's patch position embeddings, and where it came from.

    Order: the checkpoint's ``meta['pos_embed_grid']`` (what our converters write; checked
    against ``src_grid`` when both are given), ``src_grid`` (``--src-grid``), the layout's
    ``hint``, a square grid; the rules of
    :func:`saip_mm.utils.pos_embed_grid.resolve_pos_embed_grid`, which the loader uses too.
    """
    recorded = (meta or {}).get('pos_embed_grid') is not None
    if src_grid is None and hint is not None and not recorded:
        return hint
    try:
        grid, origin = resolve_pos_embed_grid(num_patches, src_grid, meta=meta, context=path)
    except ValueError as e:
        raise ViTLayoutError(f'{e}; pass --src-grid H W, the patch grid it was trained on '
                             f'(e.g. 16 8 for a 256x128 input with patch 16)') from None
    return grid, {'src_grid': '--src-grid', "the checkpoint's meta": "the checkpoint's meta"}.get(
        origin, 'a square grid')


def build_backbone_checkpoint(state_dict: Dict[str, torch.Tensor],
                              grid: Sequence[int],
                              img_size: Optional[Sequence[int]] = None,
                              meta: Optional[dict] = None) -> Tuple[dict, Optional[dict]]:
    """Make the file content: ``backbone.``-prefixed tensors and a meta with the grid.

    With ``img_size``, the patch position embeddings are resized in 2-D, once, to that input's
    grid with mmpretrain's ``resize_pos_embed`` (bicubic), exactly what
    :func:`saip_mm.models.utils.pretrained.load_pretrained_backbone` does at load time, so a
    stock ``init_cfg=dict(type='Pretrained', prefix='backbone.')`` of a model with that
    ``img_size`` needs no resizing at all.

    Args:
        state_dict (dict): backbone tensors in mmpretrain names (no prefix).
        grid (Sequence[int]): the patch grid (h, w) the position embeddings are on.
        img_size (Sequence[int], optional): downstream input (H, W). Defaults to None (keep).
        meta (dict, optional): extra meta entries. Defaults to None.

    Returns:
        tuple: the checkpoint dict and, when resized, ``dict(src_grid, dst_grid)``.
    """
    from mmpretrain.models.utils import resize_pos_embed

    from .checkpoint_io import patch_grid
    state = OrderedDict(state_dict)
    grid = tuple(int(v) for v in grid)
    extra = 1 if 'cls_token' in state else 0
    resized = None
    if img_size is not None:
        patch = int(state['patch_embed.projection.weight'].shape[-1])
        dst_grid = patch_grid(img_size, patch)
        if dst_grid != grid:
            state['pos_embed'] = resize_pos_embed(state['pos_embed'], grid, dst_grid,
                                                  mode='bicubic', num_extra_tokens=extra)
            resized = dict(src_grid=grid, dst_grid=dst_grid)
        grid = dst_grid
    full_meta = dict(meta or {})
    full_meta.update(pos_embed_grid=list(grid), with_cls_token=bool(extra),
                     arch={k: v for k, v in vit_shape(state).items()})
    if img_size is not None:
        full_meta['img_size'] = [int(v) for v in img_size]
    return dict(state_dict=OrderedDict(('backbone.' + k, v) for k, v in state.items()),
                meta=full_meta), resized


# timm model names of the usual ViTs at patch 16, MLP ratio 4: (width, depth, heads) → name.
TIMM_VIT_NAMES = {(192, 12, 3): 'vit_tiny_patch16_224', (384, 12, 6): 'vit_small_patch16_224',
                  (768, 12, 12): 'vit_base_patch16_224', (1024, 24, 16): 'vit_large_patch16_224'}


def to_timm_state_dict(state_dict: Dict[str, torch.Tensor],
                       path: str = 'checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """Rename ``mmpretrain.VisionTransformer`` tensors (no prefix) to timm's names.

    The inverse of :func:`map_vit_keys` for timm's layout, from the same name tables
    (``blocks.N.norm1``, ``attn.qkv``, ``mlp.fc1``, ``norm``, ``norm_pre``, ``ls1.gamma``).

    Args:
        state_dict (dict): backbone tensors in mmpretrain names.
        path (str): names the file in errors. Defaults to 'checkpoint'.

    Returns:
        OrderedDict: the same tensors under timm ``VisionTransformer`` names.

    Raises:
        ViTLayoutError: a tensor has no timm name (it is not a plain ViT's).
    """
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    unmappable = []
    for name, value in state_dict.items():
        target = TIMM_TOP_LEVEL_NAMES.get(name)
        block = _BLOCK_KEY.match(name) if name.startswith('layers.') else None
        if block:
            target = _block_target(block, 'blocks', TIMM_BLOCK_PARAMS, TIMM_BLOCK_NAMES)
        if target is None:
            unmappable.append(name)
        else:
            out[target] = value
    if unmappable:
        raise ViTLayoutError(f'{path}: {len(unmappable)} tensors have no timm VisionTransformer '
                             f'name ({", ".join(unmappable[:6])})')
    return out


def timm_vit_args(state_dict: Dict[str, torch.Tensor], num_heads: int,
                  grid: Sequence[int], path: str = 'checkpoint') -> Tuple[str, dict]:
    """The ``timm.create_model`` name and arguments of the ViT that ``state_dict`` fills.

    A usual shape gets its timm name (``vit_tiny_patch16_224`` for 192 wide, 12 blocks,
    3 heads); another one ``vit_tiny_patch16_224`` with ``embed_dim``, ``depth``,
    ``num_heads``, ``mlp_ratio`` and ``patch_size`` given. ``img_size`` is the grid's input,
    ``num_classes=0`` (features, no classifier); ``pre_norm`` and ``init_values`` (layer scale)
    when the tensors hold them.

    Args:
        state_dict (dict): backbone tensors in mmpretrain names.
        num_heads (int): attention heads (not readable from the tensors).
        grid (Sequence[int]): the patch grid (h, w) of the position embeddings.
        path (str): names the file in errors. Defaults to 'checkpoint'.

    Returns:
        tuple: the model name and the keyword arguments.

    Raises:
        ViTLayoutError: no final norm or no cls token (timm's ViT built so would differ).
    """
    for key, fix in (('ln1.weight', 'final_norm=False'), ('cls_token', 'with_cls_token=False')):
        if key not in state_dict:
            raise ViTLayoutError(f'{path}: no {key} ({fix}); the timm layout is written for a '
                                 f'ViT with a cls token and a final norm')
    shape = vit_shape(state_dict)
    patch = shape['patch_size']
    key = (shape['embed_dims'], shape['num_layers'], int(num_heads))
    name = TIMM_VIT_NAMES.get(key)
    kwargs: Dict[str, Any] = dict(img_size=(int(grid[0]) * patch, int(grid[1]) * patch))
    mlp_ratio = shape['feedforward_channels'] / shape['embed_dims']
    if name is None or patch != 16 or mlp_ratio != 4:
        name = 'vit_tiny_patch16_224'
        kwargs.update(patch_size=patch, embed_dim=key[0], depth=key[1], num_heads=key[2],
                      mlp_ratio=mlp_ratio)
    if 'pre_norm.weight' in state_dict:
        kwargs['pre_norm'] = True
    if 'layers.0.attn.gamma1.weight' in state_dict:
        kwargs['init_values'] = 1.0  # creates ls1/ls2; the loaded gammas replace the value
    kwargs['num_classes'] = 0
    return name, kwargs


def map_checkpoint_vit(ckpt: Any, source: str = 'teacher', prefix: Optional[str] = None,
                       path: str = 'checkpoint') -> Tuple[str, Dict[str, torch.Tensor], dict,
                                                          List[str]]:
    """The ViT tensors of a loaded checkpoint of any known layout, in mmpretrain names.

    Args:
        ckpt (Any): the loaded checkpoint.
        source (str): teacher or student, for checkpoints that hold both. Defaults to 'teacher'.
        prefix (str, optional): backbone key prefix; detected when None.
        path (str): names the file in messages. Defaults to 'checkpoint'.

    Returns:
        tuple: the layout, the tensors (no prefix), the mapping report (prefix, mapped,
        dropped, missing) and the top-level entries not used.
    """
    layout, state_dict, unused = select_state_dict(ckpt, source, path)
    if layout == 'saip-mm':
        try:
            backbone, dropped = extract_backbone(state_dict, source)
        except ValueError as e:
            raise ViTLayoutError(f'{path}: {e}') from None
        state_dict = OrderedDict((k, v) for k, v in backbone.items())
        state, report = map_vit_keys(state_dict, 'backbone.', path)
        report['dropped'] = sorted(dropped)
    else:
        state, report = map_vit_keys(state_dict, prefix, path)
    return layout, state, report, unused


def convert_vit(ckpt: Any,
                arch: Union[str, dict, None] = 'deit-tiny',
                source: str = 'teacher',
                prefix: Optional[str] = None,
                src_grid: Optional[Sequence[int]] = None,
                img_size: Optional[Sequence[int]] = None,
                path: str = 'checkpoint',
                fallback_grid: Optional[Sequence[int]] = None) -> Tuple[dict, dict]:
    """Turn a loaded ViT checkpoint of any known layout into an mmpretrain backbone checkpoint.

    Args:
        ckpt (Any): the loaded checkpoint (``read_checkpoint``).
        arch (str | dict | None): mmpretrain ``VisionTransformer`` arch the result is for;
            width, depth and MLP width must match. None skips the check. Its ``num_heads``
            (a name's, or a dict's when it has one) is written to ``meta['arch']``. Defaults
            to 'deit-tiny'.
        source (str): teacher or student, for checkpoints that hold both. Defaults to 'teacher'.
        prefix (str, optional): backbone key prefix; detected when None.
        src_grid (Sequence[int], optional): patch grid of the stored position embeddings;
            needed when it is not square and the layout does not say. Defaults to None.
        img_size (Sequence[int], optional): resize the position embeddings for this input.
        path (str): names the file in messages. Defaults to 'checkpoint'.
        fallback_grid (Sequence[int], optional): the grid of the model the result is for,
            taken when neither ``src_grid`` nor the layout gives one and the checkpoint has
            exactly that many positions (how stock loaders read a checkpoint of their own
            length). Defaults to None.

    Returns:
        tuple: the checkpoint dict to save and the report (layout, prefix, mapped, dropped,
        missing, grid and where it came from, resize).
    """
    layout, state, report, unused = map_checkpoint_vit(ckpt, source, prefix, path)
    if arch is not None:
        check_arch(state, arch, path)
    extra = 1 if 'cls_token' in state else 0
    num_patches = state['pos_embed'].shape[1] - extra
    patch = vit_shape(state)['patch_size']
    hint = grid_hint(ckpt, layout, num_patches, patch)
    if (hint is None and fallback_grid is not None
            and int(fallback_grid[0]) * int(fallback_grid[1]) == num_patches):
        hint = (tuple(int(v) for v in fallback_grid), "the model's own grid (as many positions)")
    ckpt_meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    grid, grid_from = source_grid(num_patches, src_grid, hint, path,
                                  ckpt_meta if isinstance(ckpt_meta, dict) else None)
    meta = dict(layout=layout, source=source if layout in ('dino', 'saip-authors', 'saip-mm')
                else None, converted_from=osp.basename(path))
    out, resized = build_backbone_checkpoint(state, grid, img_size, meta)
    heads = resolve_arch(arch).get('num_heads') if arch is not None else None
    if heads is not None:  # not in the tensors: recorded for teacher_config_from_checkpoint
        out['meta']['arch']['num_heads'] = int(heads)
    if grid_from == "the checkpoint's meta":  # the meta was read after all
        unused = [entry for entry in unused if entry != 'meta']
    report.update(layout=layout, unused_entries=unused, grid=grid, grid_from=grid_from,
                  resized=resized, kept=len(state))
    return out, report
