"""Cross-scale distillation from a frozen, pretrained teacher ViT (SAIP's optional 4th objective)."""
import argparse
import os.path as osp
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple
from mmpretrain.registry import MODELS
from torch import Tensor

from saip_mm.utils.checkpoint_io import read_checkpoint
from saip_mm.utils.vit_checkpoint import (ViTLayoutError, convert_vit, map_checkpoint_vit,
                                          resolve_num_heads, source_grid, vit_shape)
from ..utils.attention import use_fast_attention
from ..utils.masking import anchor_consistent_mask
from ..utils.pretrained import PretrainedCheckpointError, load_backbone_state_dict

TEACHER_DTYPES = {'auto': None, 'float32': torch.float32, 'float16': torch.float16,
                  'bfloat16': torch.bfloat16}


def teacher_positions(grid: Tuple[int, int], patch_size: int, factor: float,
                      image_size: Tuple[int, int], device=None) -> Tensor:
    """Where the student's patch centres fall on the original image, for ``F.grid_sample``.

    The student view is the image scaled by ``factor`` and cropped to whole patches at the
    top-left (:func:`saip_mm.models.algorithms.saip.rescale`), so student patch ``(i, j)`` has
    its centre at ``((i + 0.5) p / f, (j + 0.5) p / f)`` pixels of the original. The result is in
    ``grid_sample``'s ``align_corners=False`` coordinates, where ``-1`` and ``1`` are the outer
    edges of the image, which the teacher's token map covers uniformly (its input is a whole
    number of patches: :meth:`DistillHead.fit_teacher_input`).

    Returns:
        Tensor: (1, h, w, 2) sampling grid, (x, y) order.
    """
    h, w = grid
    H, W = image_size
    ys = ((torch.arange(h, device=device) + 0.5) * patch_size / factor) / H * 2 - 1
    xs = ((torch.arange(w, device=device) + 0.5) * patch_size / factor) / W * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([gx, gy], dim=-1).unsqueeze(0)


def read_checkpoint_meta(path: str) -> Tuple[Any, dict]:
    """A teacher checkpoint (argparse options allowed, as DINO/MAE-style scripts save them)
    and its ``meta`` dict (``{}`` when it has none)."""
    ckpt = read_checkpoint(path, allowed_globals=(argparse.Namespace, ))
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    return ckpt, meta if isinstance(meta, dict) else {}


def teacher_config_from_checkpoint(path: str, source: str = 'teacher',
                                   img_size: Optional[Sequence[int]] = None,
                                   num_heads: Optional[int] = None) -> dict:
    """A ``VisionTransformer`` config that fits a teacher checkpoint of any converter layout.

    Width, depth, MLP width and patch size come from the tensors. The number of heads is not
    in the tensors: it is ``num_heads``, or what the file records (the converter's
    ``meta['arch']``, ``args.num_heads``, an MMEngine run's config), or that of the mmpretrain
    arch of the same width, depth and MLP width, or the usual heads of the width (ViT-H/14:
    1280 wide, 16 heads of 80); otherwise it is refused, asking for ``num_heads``
    (:func:`saip_mm.utils.vit_checkpoint.resolve_num_heads`). The input size is ``img_size``,
    or the checkpoint meta's ``img_size``, or its position grid (meta ``pos_embed_grid``, or a
    square grid) times the patch.

    Args:
        path (str): the checkpoint.
        source (str): teacher or student, for checkpoints holding both. Defaults to 'teacher'.
        img_size (Sequence[int], optional): the teacher's input (H, W). Defaults to None.
        num_heads (int, optional): the teacher's attention heads. Defaults to None (read or
            inferred as above).

    Returns:
        dict: ``dict(type='VisionTransformer', arch=dict(...), patch_size=..., img_size=...)``.
    """
    ckpt, meta = read_checkpoint_meta(path)
    _, state, _, _ = map_checkpoint_vit(ckpt, source, path=path)
    shape = vit_shape(state)
    patch = shape['patch_size']
    if img_size is None and meta.get('img_size'):
        img_size = meta['img_size']
    if img_size is None:
        num_patches = state['pos_embed'].shape[1] - (1 if 'cls_token' in state else 0)
        try:
            grid, _ = source_grid(num_patches, meta.get('pos_embed_grid'), path=path)
        except ViTLayoutError as e:
            raise ViTLayoutError(str(e).replace(
                'pass --src-grid H W', 'write the grid into the file with tools/'
                'model_converters/to_mmpretrain_vit.py SRC DST --arch ... --src-grid H W')
            ) from None
        img_size = (grid[0] * patch, grid[1] * patch)
    heads, heads_from = resolve_num_heads(ckpt, meta, shape, num_heads, path)
    print_log(f'teacher {path}: {shape["embed_dims"]} wide, {shape["num_layers"]} blocks, '
              f'{heads} heads (from {heads_from}), patch {patch}', logger='current')
    arch = dict(embed_dims=shape['embed_dims'], num_layers=shape['num_layers'],
                num_heads=heads, feedforward_channels=shape['feedforward_channels'])
    return dict(type='VisionTransformer', arch=arch, patch_size=patch,
                img_size=tuple(int(v) for v in img_size))


@MODELS.register_module()
class DistillHead(BaseModule):
    """Align the student with a frozen pretrained teacher ViT across scales.

    The teacher (any ``mmpretrain.VisionTransformer``: width, depth, patch 14 or 16, its own
    ``img_size``) sees the original global view ``g1`` resized to its input size; the student
    sees ``g1`` rescaled by a factor drawn from ``scales`` (optionally masked). Three levels,
    weighted in ``loss`` (:class:`DistillLoss`):

    - global: student cls through a learned linear projector ↔ teacher cls (DPAL image level);
    - patch: student patch tokens through a learned linear projector ↔ teacher patch tokens
      resampled (bilinear) at the image positions of the student's patches (Feature
      Distillation / DPAL pixel level);
    - relation: token-to-token similarity distributions of student and teacher, KL
      (MiniLM / DPAL relation level).

    A level whose weight is 0 is not computed, and its projector is not built (``None``): it
    would never get a gradient, which stops a DDP run at its second step.

    The teacher's input size is made a multiple of its patch: each side is rounded to the
    nearest multiple (at least one patch), e.g. 256x128 for a ViT/14 becomes 252x126 (18x9
    tokens), and the log says so. The whole view is *resized* to it, never padded, so the
    teacher's token map covers exactly the image the student's positions are measured on
    (:func:`teacher_positions`, in fractions of the image). Left at 256x128, mmcv's
    ``PatchEmbed`` would pad the bottom and right to 266x140 and its 19x10 tokens would cover
    that padded canvas, whose last row and column see mostly padding: the targets would be
    read off their places, increasingly towards the bottom and right (by 10 and 12 pixels at
    the edges).

    The teacher is frozen, in eval mode and under ``no_grad``. It is deliberately *not a
    registered sub-module*: it is not in ``parameters()``, so neither the optimizer nor
    SAIP's EMA teacher ever sees it, and not in ``state_dict()``, so run checkpoints stay the
    student's size. It moves with the model (``.to()``, ``.cuda()``) all the same. Its weights
    are read from ``teacher_checkpoint`` in :meth:`init_weights`, which MMEngine's runner calls
    when a run starts or resumes, never at build time: a config can be built and inspected
    without the file, and a resumed run reloads it (and says so if it is gone). Any layout of
    ``tools/model_converters/to_mmpretrain_vit.py`` loads directly (it is converted in
    memory), as does that tool's output.

    Args:
        teacher (dict): the teacher backbone config, e.g. ``dict(type='VisionTransformer',
            arch='base', img_size=(256, 128), patch_size=16)``. ``out_type`` is forced to
            ``'raw'``; ``norm_cfg`` defaults to ``dict(type='LN', eps=1e-6)`` (timm, MAE, DINO,
            PATH and HAP ViTs); ``img_size`` is rounded to a multiple of ``patch_size`` (see
            above).
        teacher_checkpoint (str): the teacher's weights (loaded when the run starts).
        student_channels (int): width of the student's tokens. Defaults to 192 (ViT-Tiny).
        teacher_source (str): ``'teacher'`` or ``'student'`` for checkpoints holding both
            (DINO, SAIP). Defaults to 'teacher'.
        teacher_src_grid (Sequence[int], optional): (h, w) grid of the checkpoint's position
            embeddings when neither its layout nor its meta says (non-square). Defaults to None.
        scales (Sequence[float]): rescale factors of the student's view, drawn per step.
            Defaults to (0.75, 0.875, 1.125, 1.25), SAIP's ``rescale_factors``.
        mask_ratio (float): fraction of the student view's patches removed (random, per image);
            the patch and relation levels then use the visible ones. Defaults to 0.0.
        teacher_dtype (str): ``'auto'`` (float16 on a GPU, float32 on the CPU), ``'float32'``,
            ``'float16'`` or ``'bfloat16'``. Defaults to 'auto'.
        loss (dict): :class:`DistillLoss` config. Defaults to ``dict(type='DistillLoss')``.
        init_cfg (dict, optional): initialisation of the projectors.
    """

    def __init__(self,
                 teacher: dict,
                 teacher_checkpoint: Optional[str] = None,
                 student_channels: int = 192,
                 teacher_source: str = 'teacher',
                 teacher_src_grid: Optional[Sequence[int]] = None,
                 scales: Sequence[float] = (0.75, 0.875, 1.125, 1.25),
                 mask_ratio: float = 0.0,
                 teacher_dtype: str = 'auto',
                 loss: dict = dict(type='DistillLoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(teacher, dict) or 'type' not in teacher:
            raise TypeError(f'model.distill_head.teacher must be a backbone config dict with a '
                            f'type, got {teacher!r}')
        if teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f'model.distill_head.teacher_dtype must be one of '
                             f'{sorted(TEACHER_DTYPES)}, got {teacher_dtype!r}')
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f'model.distill_head.mask_ratio must be in [0, 1), got {mask_ratio}')
        if not scales or any(float(s) <= 0 for s in scales):
            raise ValueError(f'model.distill_head.scales must be positive factors, got {scales}')
        cfg = dict(teacher)
        cfg['out_type'] = 'raw'  # cls and patch tokens, after the final norm
        cfg.setdefault('norm_cfg', dict(type='LN', eps=1e-6))
        cfg['img_size'] = self.fit_teacher_input(cfg.get('img_size', 224),
                                                 cfg.get('patch_size', 16))
        teacher_module = MODELS.build(cfg)
        for p in teacher_module.parameters():
            p.requires_grad_(False)
        teacher_module.eval()
        # SAIP's use_fast_attention walks its registered modules; the hidden teacher needs its own
        use_fast_attention(teacher_module)
        # A plain list hides the teacher from parameters(), state_dict() and the optimizer.
        self._teacher = [teacher_module]
        self.teacher_cfg = cfg
        self.teacher_input_size = tuple(cfg['img_size'])
        stride = to_2tuple(teacher_module.patch_embed.projection.stride)
        covered = tuple(n * s for n, s in zip(teacher_module.patch_resolution, stride))
        if covered != self.teacher_input_size:  # a patch_cfg of its own (padding, stride)
            raise ValueError(
                f'model.distill_head.teacher: its {tuple(teacher_module.patch_resolution)} '
                f'tokens of stride {stride} cover {covered} pixels, not its input '
                f'{self.teacher_input_size}; the distillation targets would be misplaced. Use '
                f'an img_size that is a multiple of the patch and no patch_cfg padding')
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_source = teacher_source
        self.teacher_src_grid = tuple(teacher_src_grid) if teacher_src_grid is not None else None
        self.teacher_dtype = teacher_dtype
        self.teacher_loaded = False
        self.scales = tuple(float(s) for s in scales)
        self.mask_ratio = mask_ratio
        teacher_channels = int(teacher_module.embed_dims)
        loss_module = MODELS.build(loss)
        # A level with weight 0 is not computed: its projector would never get a gradient
        # (DDP waits for one), so it is not built.
        self.global_proj = nn.Linear(student_channels, teacher_channels) \
            if loss_module.global_weight > 0 else None
        self.patch_proj = nn.Linear(student_channels, teacher_channels) \
            if loss_module.patch_weight > 0 else None
        self.loss_module = loss_module
        self._register_load_state_dict_pre_hook(self._drop_unbuilt_projector_keys)

    def _drop_unbuilt_projector_keys(self, state_dict: dict, prefix: str, *args) -> None:
        """Checkpoints written with a level's weight above 0 (or before zero-weight levels lost
        their projector) hold its projector; they load without it."""
        for name in ('global_proj', 'patch_proj'):
            if getattr(self, name) is None:
                for key in [k for k in state_dict if k.startswith(f'{prefix}{name}.')]:
                    del state_dict[key]

    @staticmethod
    def fit_teacher_input(img_size: Any, patch_size: Any) -> Tuple[int, int]:
        """The teacher's input size: each side of ``img_size`` rounded to the nearest multiple
        of ``patch_size`` (at least one patch); logged when it differs.

        Args:
            img_size (int | Sequence[int]): the configured teacher input (H, W).
            patch_size (int | Sequence[int]): the teacher's patch.

        Returns:
            tuple[int, int]: e.g. (252, 126) for (256, 128) and patch 14; (256, 128) for 16.
        """
        size, patch = to_2tuple(img_size), to_2tuple(patch_size)
        fitted = tuple(max(1, round(int(s) / int(p))) * int(p) for s, p in zip(size, patch))
        if fitted != tuple(int(s) for s in size):
            print_log(f'model.distill_head.teacher: input {size[0]}x{size[1]} is not a multiple '
                      f'of its {patch[0]}x{patch[1]} patch; the teacher sees the view resized '
                      f'to {fitted[0]}x{fitted[1]} ({fitted[0] // patch[0]}x'
                      f'{fitted[1] // patch[1]} tokens covering the whole image; padding '
                      f'would misplace the targets)', logger='current')
        return fitted

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher ViT (not a registered sub-module; see the class docstring)."""
        return self._teacher[0]

    def _apply(self, fn, *args, **kwargs):
        """Device and dtype moves of the model apply to the hidden teacher too."""
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> 'DistillHead':
        super().train(mode)
        self.teacher.eval()  # never trained, never in train mode
        return self

    def init_weights(self) -> None:
        """Initialise the projectors, then load the teacher from ``teacher_checkpoint``."""
        super().init_weights()
        self.load_teacher()

    def load_teacher(self, path: Optional[str] = None) -> dict:
        """Read the teacher's weights (any converter layout) and load them strictly.

        Args:
            path (str, optional): defaults to ``teacher_checkpoint``.

        Returns:
            dict: the converter's report (layout, ...) plus the loader's (``loaded`` ...).

        Raises:
            FileNotFoundError: no such file (the message says why the file is needed again).
            PretrainedCheckpointError: the width, patch or depth differs from the config.
        """
        path = path or self.teacher_checkpoint
        if not path:
            raise ValueError('model.distill_head.teacher_checkpoint is not set: the frozen '
                             'teacher needs its pretrained weights (convert them with '
                             'tools/model_converters/to_mmpretrain_vit.py)')
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'model.distill_head.teacher_checkpoint: {path} not found. The teacher is read '
                f'from this file whenever a run starts or resumes (its weights are not kept in '
                f"the run's checkpoints); restore the file or set "
                f'model.distill_head.teacher_checkpoint to its new place')
        ckpt, meta = read_checkpoint_meta(path)
        src_grid = self.teacher_src_grid
        if src_grid is None and meta.get('pos_embed_grid'):
            src_grid = tuple(meta['pos_embed_grid'])  # our converters' output says its grid
        try:
            out, report = convert_vit(ckpt, arch=None, source=self.teacher_source,
                                      src_grid=src_grid, path=path,
                                      fallback_grid=self.teacher.patch_resolution)
        except ViTLayoutError as e:
            raise ViTLayoutError(str(e).replace('pass --src-grid H W',
                                                'set model.distill_head.teacher_src_grid=(H, W)')
                                 ) from None
        self._check_shapes(out['state_dict'], path)
        report.update(load_backbone_state_dict(
            self.teacher, out['state_dict'], out['meta'], path, prefix='backbone.',
            module_name='model.distill_head.teacher'))
        self.teacher.eval()
        self.teacher_loaded = True
        print_log(f'distillation teacher: {path} ({report["layout"]} layout, '
                  f'{sum(p.numel() for p in self.teacher.parameters()) / 1e6:.1f}M parameters), '
                  f'frozen; not saved in checkpoints', logger='current')
        return report

    def _check_shapes(self, state_dict: Dict[str, Tensor], path: str) -> None:
        """Name both shapes when the checkpoint's width or patch differs from the config."""
        key = 'backbone.patch_embed.projection.weight'
        have = tuple(state_dict[key].shape)
        want = tuple(self.teacher.patch_embed.projection.weight.shape)
        if have != want:
            raise PretrainedCheckpointError(
                f'{path}: the teacher checkpoint\'s patch embedding is {have} (width {have[0]}, '
                f'patch {have[-2]}x{have[-1]}) but model.distill_head.teacher builds {want} '
                f'(width {want[0]}, patch {want[-2]}x{want[-1]}); set the teacher\'s arch and '
                f'patch_size to those of the checkpoint')

    def draw_mask(self, batch_size: int, grid: Tuple[int, int],
                  device=None) -> Optional[Tensor]:
        """Visible patch indices (B, n_keep) of the student's view, or None without masking."""
        if self.mask_ratio == 0:
            return None
        ids_keep, _ = anchor_consistent_mask(batch_size, grid, grid, self.mask_ratio,
                                             device=device)
        return ids_keep

    def _run_dtype(self, device: torch.device) -> torch.dtype:
        dtype = TEACHER_DTYPES[self.teacher_dtype]
        if dtype is None:
            dtype = torch.float16 if device.type == 'cuda' else torch.float32
        return dtype

    @torch.no_grad()
    def teacher_tokens(self, images: Tensor, factor: float, grid: Tuple[int, int],
                       patch_size: int,
                       ids_keep: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The teacher's cls (B, Ct) and its patch tokens at the student's positions (B, N, Ct).

        Args:
            images (Tensor): (B, 3, H, W) the original view (normalised).
            factor (float): the student view's rescale factor.
            grid (tuple): the student view's patch grid (h, w).
            patch_size (int): the student's patch size.
            ids_keep (Tensor, optional): the student's visible patches (B, n_keep).
        """
        if not self.teacher_loaded:
            raise RuntimeError('model.distill_head: the teacher\'s weights are not loaded; they '
                               'load in init_weights(), which the runner calls when a run '
                               'starts (call model.init_weights() or load_teacher() first)')
        teacher = self.teacher
        dtype = self._run_dtype(images.device)
        if teacher.cls_token.dtype != dtype:
            teacher.to(dtype)
        x = images
        if tuple(x.shape[-2:]) != self.teacher_input_size:
            x = F.interpolate(x, size=self.teacher_input_size, mode='bilinear',
                              align_corners=False, antialias=True)
        tokens = teacher(x.to(dtype))[-1].float()  # (B, 1 + ht*wt, Ct)
        B, L, C = tokens.shape
        ht, wt = teacher.patch_resolution
        if L != 1 + ht * wt:
            raise ValueError(f'model.distill_head.teacher: {L} tokens for its {ht}x{wt} grid; '
                             'a cls token and one token per patch are expected')
        t_map = tokens[:, 1:].transpose(1, 2).reshape(B, C, *teacher.patch_resolution)
        where = teacher_positions(grid, patch_size, factor, tuple(images.shape[-2:]),
                                  device=images.device)
        # border: a student patch centre between the image edge and the outer teacher token
        # centres takes the edge token, not a blend with zeros beyond the image
        t_patch = F.grid_sample(t_map, where.expand(B, -1, -1, -1), mode='bilinear',
                                padding_mode='border',
                                align_corners=False).flatten(2).transpose(1, 2)  # (B, h*w, C)
        if ids_keep is not None:
            t_patch = torch.gather(t_patch, 1, ids_keep.unsqueeze(-1).expand(-1, -1, C))
        return tokens[:, 0], t_patch

    def loss(self, student_tokens: Tensor, images: Tensor, factor: float,
             grid: Tuple[int, int], patch_size: int,
             ids_keep: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The distillation losses of one step.

        Args:
            student_tokens (Tensor): (B, 1 + N, Cs) the student's final tokens on its view.
            images (Tensor): (B, 3, H, W) the original view the teacher sees.
            factor, grid, patch_size, ids_keep: see :meth:`teacher_tokens`.

        Returns:
            dict: ``loss_kd_global``, ``loss_kd_patch``, ``loss_kd_relation``.
        """
        t_cls, t_patch = self.teacher_tokens(images, factor, grid, patch_size, ids_keep)
        s_cls, s_patch = student_tokens[:, 0], student_tokens[:, 1:]
        if s_patch.shape[1] != t_patch.shape[1]:
            raise ValueError(f'DistillHead: {s_patch.shape[1]} student patch tokens but '
                             f'{t_patch.shape[1]} teacher positions (grid {grid})')
        return self.loss_module(
            self.global_proj(s_cls) if self.global_proj is not None else None, t_cls,
            self.patch_proj(s_patch) if self.patch_proj is not None else None, s_patch, t_patch)
