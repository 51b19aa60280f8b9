"""Load a SAIP backbone checkpoint into a stock ``mmpretrain.VisionTransformer``, strictly.

Why this exists:

- ``init_cfg=dict(type='Pretrained')`` loads with ``strict=False``: a wrong file (a full pretraining
  checkpoint, a ViT-Small checkpoint for a ViT-Tiny model) only logs warnings and training goes on
  from random weights.
- ``VisionTransformer._prepare_pos_embed`` reads the checkpoint's patch grid as
  ``sqrt(L - 1)``, i.e. it assumes a square grid. SAIP learns its position embeddings on the 16×8
  grid of a 256×128 anchor, so stock code cannot resize them to, say, 256×192 (16×12).

:func:`load_pretrained_backbone` resolves the source grid explicitly (argument, or the
checkpoint's ``meta['pos_embed_grid']``), resizes in 2-D with mmpretrain's own
``resize_pos_embed`` and loads with ``strict=True`` after checks whose errors say what is wrong.
:func:`guard_vit_pos_embed_hook` makes the stock path (``init_cfg=Pretrained``) fail with such a
message too, instead of an assertion about ``img_size``.
"""
import math
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from saip_mm.utils.checkpoint_io import CheckpointReadError, read_checkpoint
# Defined in saip_mm.utils (the converters use them too); public here as before.
from saip_mm.utils.pos_embed_grid import PretrainedCheckpointError, resolve_pos_embed_grid

__all__ = ['PretrainedCheckpointError', 'resolve_pos_embed_grid', 'load_pretrained_backbone',
           'load_backbone_state_dict', 'guard_vit_pos_embed_hook']

# Width of the standard ViT sizes, to name an architecture mismatch in errors.
VIT_WIDTHS = {192: 'ViT-Tiny', 384: 'ViT-Small', 768: 'ViT-Base', 1024: 'ViT-Large'}
# Top-level key groups of a full SAIP pretraining checkpoint (``saip_mm.models.SAIP``).
SAIP_PRETRAIN_GROUPS = ('teacher.', 'csm_head.', 'csr_head.', 'css_head.')
SAIP_PRETRAIN_ONLY_BACKBONE_KEYS = ('ln_inter.',)
CONVERTER = 'tools/model_converters/saip_to_backbone.py'


def _shape(t: torch.Tensor) -> Tuple[int, ...]:
    return tuple(t.shape)


def _width_name(width: int) -> str:
    name = VIT_WIDTHS.get(width)
    return f'{width} ({name})' if name else str(width)


def _split_checkpoint(path: str, map_location: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Read a checkpoint file: its state dict and meta."""
    if '://' in path:
        ckpt = CheckpointLoader.load_checkpoint(path, map_location=map_location)
    elif not osp.isfile(path):
        raise FileNotFoundError(f'pretrained checkpoint not found: {path}')
    else:
        try:  # torch's own errors for a damaged file name neither the file nor the cause
            ckpt = read_checkpoint(path, map_location=map_location)
        except CheckpointReadError as e:
            raise PretrainedCheckpointError(f'pretrained checkpoint {e}') from None
    if not isinstance(ckpt, dict):
        raise PretrainedCheckpointError(f'{path} holds a {type(ckpt).__name__}, not a state dict')
    state_dict = ckpt.get('state_dict', ckpt)
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise PretrainedCheckpointError(f'{path} holds no state dict of tensors')
    return state_dict, meta


def _select_prefixed(state_dict: Dict[str, torch.Tensor], prefix: str,
                     path: str) -> 'OrderedDict[str, torch.Tensor]':
    """Keys under ``prefix`` with the prefix removed; clear errors for the usual wrong files."""
    pretrain_groups = sorted({g for g in SAIP_PRETRAIN_GROUPS
                              for k in state_dict if k.startswith(g)})
    inter = [k for k in state_dict if k.startswith(prefix + SAIP_PRETRAIN_ONLY_BACKBONE_KEYS[0])]
    if pretrain_groups or inter:
        groups = pretrain_groups + ([prefix + 'ln_inter.'] if inter else [])
        found = ', '.join(f'{g}*' for g in groups)
        raise PretrainedCheckpointError(
            f'{path} is a full SAIP pretraining checkpoint (it holds {found}), not a backbone '
            f'checkpoint. Convert it first: python {CONVERTER} {path} <out.pth>')
    if not prefix:
        return OrderedDict(state_dict)
    selected = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                           if k.startswith(prefix))
    if not selected:
        sample = ', '.join(list(state_dict)[:4])
        raise PretrainedCheckpointError(
            f"{path} has no keys starting with '{prefix}' (first keys: {sample}). "
            f'A backbone checkpoint from {CONVERTER} names them {prefix}<parameter>.')
    return selected


def _check_architecture(src: Dict[str, torch.Tensor], dst: Dict[str, torch.Tensor],
                        path: str, module_name: str) -> None:
    """Name a width or depth mismatch before listing tensors."""
    src_pos, dst_pos = src.get('pos_embed'), dst.get('pos_embed')
    if src_pos is not None and dst_pos is not None and src_pos.shape[-1] != dst_pos.shape[-1]:
        raise PretrainedCheckpointError(
            f'{path} is for a ViT of width {_width_name(src_pos.shape[-1])} but {module_name} has '
            f'width {_width_name(dst_pos.shape[-1])}: the checkpoint and the config\'s `arch` '
            f'differ')

    def depth(keys) -> int:
        blocks = {int(k.split('.')[1]) for k in keys if k.startswith('layers.')}
        return max(blocks) + 1 if blocks else 0

    if depth(src) != depth(dst):
        raise PretrainedCheckpointError(
            f'{path} has {depth(src)} transformer blocks but {module_name} has {depth(dst)}: '
            f"the checkpoint and the config's `arch` differ")


def _fit_pos_embed(src: 'OrderedDict[str, torch.Tensor]', module: nn.Module, meta: dict,
                   src_grid: Optional[Sequence[int]], path: str, report: dict) -> None:
    """Drop an unused cls position and resize the patch positions to the module's grid."""
    dst_pos = module.state_dict()['pos_embed']
    pos = src['pos_embed']  # (1, extra + h*w, C)
    extra = getattr(module, 'num_extra_tokens', 1)  # 0 when built with_cls_token=False
    if 'cls_token' not in src and getattr(module, 'cls_token', None) is not None:
        raise PretrainedCheckpointError(
            f'{path} has no cls_token but the model uses one (with_cls_token=True); '
            f'is it a backbone checkpoint of a ViT without cls token?')
    if 'cls_token' in src and getattr(module, 'cls_token', None) is None:
        # A model built with ``with_cls_token=False`` (ViTPose style) has neither the cls token
        # nor its position; both are in the checkpoint and are dropped on purpose.
        del src['cls_token']
        pos = pos[:, 1:]
        report['dropped'] += ['cls_token', 'pos_embed[:, 0] (cls position)']
    src_patches = pos.shape[1] - extra
    dst_grid = tuple(module.patch_resolution)
    if meta.get('pos_embed_grid') is None and src_grid is None and (
            src_patches == dst_grid[0] * dst_grid[1]):
        grid = dst_grid  # same length and nothing says otherwise: load as is (stock convention)
    else:
        grid, origin = resolve_pos_embed_grid(src_patches, src_grid, meta, context=path)
    if grid == dst_grid:
        src['pos_embed'] = pos
        return
    from mmpretrain.models.utils import resize_pos_embed
    mode = getattr(module, 'interpolate_mode', 'bicubic')
    src['pos_embed'] = resize_pos_embed(pos, grid, dst_grid, mode=mode, num_extra_tokens=extra)
    assert src['pos_embed'].shape == dst_pos.shape  # both derived from the module's grid
    report['resized']['pos_embed'] = dict(
        src_shape=_shape(pos), dst_shape=_shape(dst_pos), src_grid=grid, dst_grid=dst_grid,
        mode=mode, grid_from=origin)


def load_pretrained_backbone(module: nn.Module,
                             checkpoint: str,
                             prefix: str = 'backbone.',
                             src_grid: Optional[Sequence[int]] = None,
                             map_location: str = 'cpu',
                             module_name: str = 'model.backbone',
                             keep_init: Sequence[str] = ()) -> dict:
    """Load a backbone checkpoint into a ViT, all keys or an error.

    Every parameter and persistent buffer of ``module`` must come from the checkpoint, with the
    same shape, except the position embeddings, which are resized in 2-D (bicubic by default,
    the module's ``interpolate_mode``) from the checkpoint's grid to ``module.patch_resolution``.

    Args:
        module (nn.Module): the backbone, typically ``mmpretrain.VisionTransformer``.
        checkpoint (str): path or URL of a backbone checkpoint, such as the output of
            ``tools/model_converters/saip_to_backbone.py``.
        prefix (str): key prefix of the backbone in the checkpoint. Defaults to 'backbone.'.
        src_grid (Sequence[int], optional): (h, w) patch grid of the checkpoint's position
            embeddings, when its ``meta['pos_embed_grid']`` does not say. Defaults to None.
        map_location (str): where to load tensors. Defaults to 'cpu'.
        module_name (str): names the module in messages. Defaults to 'model.backbone'.
        keep_init (Sequence[str]): key prefixes of module tensors that no pretrained checkpoint
            holds by design and that keep the module's own initialisation (e.g. the norms a
            multi-stage ``TinyViT`` adds for its extra outputs: ``('norm0.', 'norm1.')``);
            listed in the report and the log. Defaults to () (every tensor from the file).

    Returns:
        dict: ``checkpoint``; ``loaded`` (sorted parameter names); ``resized`` (per key: shapes,
        grids, mode, where the source grid came from); ``dropped`` (checkpoint entries the
        module has no place for by design, e.g. the cls token of a ``with_cls_token=False`` ViT);
        ``kept_init`` (module tensors left as initialised, from ``keep_init``).

    Raises:
        FileNotFoundError: no such file.
        PretrainedCheckpointError: the file is not a backbone checkpoint for this module.
    """
    state_dict, meta = _split_checkpoint(checkpoint, map_location)
    return load_backbone_state_dict(module, state_dict, meta, checkpoint, prefix, src_grid,
                                    module_name, keep_init)


def load_backbone_state_dict(module: nn.Module,
                             state_dict: Dict[str, torch.Tensor],
                             meta: dict,
                             checkpoint: str,
                             prefix: str = 'backbone.',
                             src_grid: Optional[Sequence[int]] = None,
                             module_name: str = 'model.backbone',
                             keep_init: Sequence[str] = ()) -> dict:
    """:func:`load_pretrained_backbone` on a checkpoint already in memory.

    Args:
        state_dict (dict): the checkpoint's tensors; ``meta`` its meta (``pos_embed_grid``);
            ``checkpoint`` names it in messages. The other arguments are those of
            :func:`load_pretrained_backbone`.

    Returns:
        dict: the report of :func:`load_pretrained_backbone`.
    """
    src = _select_prefixed(state_dict, prefix, checkpoint)
    dst = module.state_dict()
    report = dict(checkpoint=checkpoint, loaded=[], resized={}, dropped=[], kept_init=[])
    _check_architecture(src, dst, checkpoint, module_name)
    if 'pos_embed' in src and 'pos_embed' in dst:
        _fit_pos_embed(src, module, meta, src_grid, checkpoint, report)
    report['kept_init'] = sorted(k for k in dst if k not in src and k.startswith(tuple(keep_init)))
    src.update((k, dst[k]) for k in report['kept_init'])  # loads them onto themselves

    missing = sorted(set(dst) - set(src))
    unexpected = sorted(set(src) - set(dst))
    mismatched = [f'{k}: checkpoint {_shape(src[k])} vs model {_shape(dst[k])}'
                  for k in dst if k in src and src[k].shape != dst[k].shape]
    problems: List[str] = []
    if missing:
        problems.append(f'{len(missing)} missing in the checkpoint: {", ".join(missing[:8])}')
    if unexpected:
        problems.append(f'{len(unexpected)} not in {module_name}: {", ".join(unexpected[:8])}')
    if mismatched:
        problems.append(f'{len(mismatched)} of another shape: {"; ".join(mismatched[:8])}')
    if problems:
        raise PretrainedCheckpointError(
            f'{checkpoint} does not fit {module_name} ({type(module).__name__}): '
            + ' | '.join(problems))

    module.load_state_dict(src, strict=True)
    report['loaded'] = sorted(set(src) - set(report['kept_init']))
    resized = ''.join(
        f'; resized {k} {v["src_shape"]} -> {v["dst_shape"]} (grid {v["src_grid"]} -> '
        f'{v["dst_grid"]}, {v["mode"]}, source grid from {v["grid_from"]})'
        for k, v in report['resized'].items())
    dropped = f'; dropped by design: {", ".join(report["dropped"])}' if report['dropped'] else ''
    kept = (f'; kept their own init (not pretrained by design): {", ".join(report["kept_init"])}'
            if report['kept_init'] else '')
    print_log(f'loaded all {len(report["loaded"])} tensors of {module_name} from {checkpoint}'
              f'{resized}{dropped}{kept}', logger='current')
    return report


def guard_vit_pos_embed_hook() -> None:
    """Make stock ``VisionTransformer`` loads fail clearly on a non-square source grid.

    The stock load-state-dict pre-hook reads the source grid as ``sqrt(L - extra)`` and, for a
    SAIP checkpoint (16×8), dies in an assertion about ``img_size``. This wrapper keeps the stock
    behaviour for every square source and raises :class:`PretrainedCheckpointError` naming both
    shapes otherwise. :func:`load_pretrained_backbone` resizes before loading, so it never gets
    here. Idempotent; affects modules built after the call (the hook is bound at construction).
    """
    from mmpretrain.models.backbones import VisionTransformer
    stock = VisionTransformer._prepare_pos_embed
    if getattr(stock, '_saip_guarded', False):
        return

    def _prepare_pos_embed(self, state_dict, prefix, *args, **kwargs):
        name = prefix + 'pos_embed'
        pos = state_dict.get(name)
        if pos is not None and self.pos_embed is not None and pos.shape != self.pos_embed.shape:
            extra = self.num_extra_tokens
            if not self.with_cls_token and pos.shape[1] == self.pos_embed.shape[1] + 1:
                extra = 0  # the stock hook strips the cls position first
                n = pos.shape[1] - 1
            else:
                n = pos.shape[1] - extra
            if pos.shape[-1] == self.pos_embed.shape[-1] and math.isqrt(n) ** 2 != n:
                raise PretrainedCheckpointError(
                    f'cannot resize {name} from {_shape(pos)} to {_shape(self.pos_embed)}: its {n} '
                    f'patch positions are not a square grid, which is all the stock '
                    f'VisionTransformer loader understands. Load SAIP checkpoints with '
                    f"saip_mm's SAIPPretrainedHook (configs) or "
                    f'saip_mm.models.utils.pretrained.load_pretrained_backbone, which take the '
                    f'grid from the checkpoint meta or src_grid; or write the checkpoint for '
                    f'this input size ({CONVERTER} SRC DST --img-size H W), which stock '
                    f'loaders take as is.')
        return stock(self, state_dict, prefix, *args, **kwargs)

    _prepare_pos_embed._saip_guarded = True
    _prepare_pos_embed.__doc__ = stock.__doc__
    VisionTransformer._prepare_pos_embed = _prepare_pos_embed


guard_vit_pos_embed_hook()
