"""The SAIP algorithm: student + EMA teacher, three cross-scale objectives."""
import copy
import math
import random
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.distributed as dist
from mmengine.dist import is_distributed
from mmengine.logging import MessageHub, print_log
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from torch import Tensor

from ..backbones.saip_vit import SAIPViT
from ..data_preprocessor import SAIP_VIEW_KEYS
from ..utils import anchor_consistent_mask
from ..utils.frozen_casts import FrozenWeightCasts
from ..utils.health import (entropy_ratio, mean_offdiag_cosine, prototype_agreement,
                            rankme)
from ..utils.attention import use_fast_attention
from ..utils.lean_ffn import use_lean_ffn


def cosine_momentum(base: float, end: float, it: int, max_iters: int) -> float:
    """Cosine schedule from ``base`` at iteration 0 to ``end`` at ``max_iters``."""
    progress = min(max(it / max(max_iters, 1), 0.0), 1.0)
    return end - (end - base) * (math.cos(math.pi * progress) + 1) / 2


RESIZE_MODES = ('nearest', 'bicubic')


def resize_tensor(images: Tensor, mode: str, size: Optional[Tuple[int, int]] = None,
                  scale_factor: Optional[float] = None) -> Tensor:
    """``F.interpolate`` with the SAIP resize modes.

    Reference: ``F.interpolate``'s default, nearest-neighbour. Ours: the same by default;
    ``'bicubic'`` (``align_corners=False``) for experiments.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f'resize mode must be one of {RESIZE_MODES}, got {mode!r}')
    kwargs = dict(align_corners=False) if mode == 'bicubic' else {}
    return F.interpolate(images, size=size, scale_factor=scale_factor, mode=mode, **kwargs)


def rescale(images: Tensor, factor: float, patch_size: int, mode: str = 'nearest') -> Tensor:
    """Scale both sides by ``factor``, then keep the top-left block on the patch grid.

    Reference: ``F.interpolate(x, scale_factor=f)`` (each side becomes ``floor(side * f)``),
    whose stride-16 patch embedding then drops the incomplete last row/column of patches.
    Ours: the same resize, then an explicit crop to ``floor(side / patch) * patch``, because
    mmcv's ``PatchEmbed`` would *pad* instead (zero half-patches). The person keeps its shape:
    128×64 × 0.875 → 112×56 → 112×48 kept (a 7×3 grid).

    Args:
        images (Tensor): (B, 3, H, W).
        factor (float): the scale factor of both sides.
        patch_size (int): the grid the output must sit on.
        mode (str): ``'nearest'`` (reference) or ``'bicubic'``. Defaults to 'nearest'.

    Returns:
        Tensor: (B, 3, ⌊⌊H·f⌋/p⌋·p, ⌊⌊W·f⌋/p⌋·p).
    """
    if factor != 1:
        images = resize_tensor(images, mode, scale_factor=factor)
    h, w = images.shape[-2:]
    keep_h, keep_w = h // patch_size * patch_size, w // patch_size * patch_size
    if keep_h == 0 or keep_w == 0:
        raise ValueError(f'rescale: a {h}x{w} view (factor {factor}) is smaller than one '
                         f'{patch_size}x{patch_size} patch')
    return images[..., :keep_h, :keep_w]


def compact_module_names(names: Sequence[str], prefix: str = '') -> str:
    """``layers.7, layers.8, layers.9, ln1`` → ``layers.7-9, ln1`` (each with ``prefix``)."""
    groups: List[list] = []  # [name] or [stem, first index, last index]
    for name in names:
        stem, _, index = name.rpartition('.')
        if not (stem and index.isdigit()):
            groups.append([name])
        elif groups and len(groups[-1]) == 3 and groups[-1][0] == stem and \
                groups[-1][2] == int(index) - 1:
            groups[-1][2] = int(index)
        else:
            groups.append([stem, int(index), int(index)])
    return ', '.join(prefix + (g[0] if len(g) == 1 else
                               f'{g[0]}.{g[1]}' + (f'-{g[2]}' if g[2] > g[1] else ''))
                     for g in groups)


@MODELS.register_module()
class SAIP(BaseSelfSupervisor):
    """Scale-Aware Image Pretraining.

    The student is the backbone plus the CSM, CSR and CSS heads; the teacher is an EMA copy of
    the parts that run in the teacher: the backbone and the CSM head (the method's teacher is an
    EMA of the whole student, but its CSR and CSS copies are never read, so they are not kept;
    checkpoints that hold them still load, the extra keys are dropped).
    :class:`SAIPTeacherHook` updates the teacher after each optimiser step; it must be in the
    config's ``custom_hooks``. A head set to ``None`` switches its objective off (the ablations);
    backbone modules that then feed no loss are frozen (:meth:`freeze_unused_modules`:
    ``ln_inter`` without CSR and CSS, the blocks after ``inter_index`` and the final norm
    without CSM and distillation; their names are in ``frozen_modules``), so every ablation
    trains in DDP as in one process.
    An optional fourth objective, ``distill_head`` (:class:`DistillHead`), aligns the student on
    a rescaled view with a frozen pretrained teacher ViT on the original view (cross-scale
    distillation); it is off by default, and alone it gives the distillation-only ablation.

    Every loss term is checked before the optimiser step: a non-finite one stops the run with a
    ``FloatingPointError`` naming the term(s) and the iteration (no update, no teacher step, no
    checkpoint of the broken state).

    Under autocast (``CPUAmpOptimWrapper``, ``AmpOptimWrapper``) the frozen teacher runs with
    its linear/conv weights cast to the compute dtype once per step (``teacher_casts``, a
    :class:`FrozenWeightCasts`; autocast itself would cast them at every teacher call): the
    same outputs, and the teacher's float32 weights, which the EMA updates and checkpoints and
    exports hold, are untouched. Under CPU bf16 autocast the attention of every mmpretrain
    block runs as explicit products (:func:`~saip_mm.models.utils.attention.
    scaled_dot_product_attention`), several times faster there than PyTorch's fused kernel.

    Args:
        backbone (dict): :class:`SAIPViT` config.
        csm_head (dict, optional): :class:`CSMHead` config, or None to switch CSM off.
        csr_head (dict, optional): :class:`CSRHead` config, or None to switch CSR off.
        css_head (dict, optional): :class:`CSSHead` config, or None to switch CSS off.
        distill_head (dict, optional): :class:`DistillHead` config (frozen teacher ViT, its
            checkpoint, three alignment levels), or None (default): no distillation. Needs a
            ViT student (``SAIPViT``).
        n_local (int): ``n_local`` of the method; the pipeline gives ``n_local - 1`` local crops
            (``PersonLocalViews.num_views``: set both together). Defaults to 8.
        rescale_factors (sequence[float]): factors drawn for the last local crop and the region
            view. Defaults to (0.75, 0.875, 1.125, 1.25).
        csr_scale (float): upscaling of ``g2`` for the masked CSR view. Defaults to 1.25.
        mask_ratio (float): CSR mask ratio. Defaults to 0.75.
        resize_mode (str): interpolation of the tensor resizes: the random rescale, the CSR view
            and (through the pipeline's ``RegionView.interpolation``, which must match) the
            region view. Reference: ``F.interpolate``'s default, ``'nearest'``; ours: the same by
            default, ``'bicubic'`` for experiments. Defaults to 'nearest'.
        base_momentum (float): teacher EMA momentum at iteration 0. Defaults to 0.996.
        end_momentum (float): teacher EMA momentum at the last iteration. Defaults to 1.0.
        val_feature (str): which backbone embeds images in validation (``predict``): the EMA
            ``'teacher'`` (the weights exported by default) or the ``'student'``; the feature
            is the final cls token, set as ``pred_feature`` for :class:`ReIDMetric`.
            Defaults to 'teacher'.
        lean_ffn (bool): the transformer MLPs of the backbone and heads keep only the GELU
            input for the backward pass and recompute GELU there (:class:`LeanFFN`): same
            values and gradients, about a tenth less activation memory, one more GELU per MLP.
            Defaults to True.
        data_preprocessor (dict, optional): defaults to ``SAIPDataPreprocessor``.
        init_cfg (dict, optional): initialisation config.
    """
    # Only these teacher copies run (backbone: globals + reference; CSM head: globals).
    TEACHER_MODULES = ('backbone', 'csm_head')

    def __init__(self,
                 backbone: dict,
                 csm_head: Optional[dict] = None,
                 csr_head: Optional[dict] = None,
                 css_head: Optional[dict] = None,
                 distill_head: Optional[dict] = None,
                 n_local: int = 8,
                 rescale_factors: Sequence[float] = (0.75, 0.875, 1.125, 1.25),
                 csr_scale: float = 1.25,
                 mask_ratio: float = 0.75,
                 resize_mode: str = 'nearest',
                 base_momentum: float = 0.996,
                 end_momentum: float = 1.0,
                 val_feature: str = 'teacher',
                 lean_ffn: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if csm_head is None and csr_head is None and css_head is None and distill_head is None:
            raise ValueError('SAIP needs at least one of csm_head, csr_head, css_head, '
                             'distill_head')
        if isinstance(n_local, bool) or not isinstance(n_local, int) or n_local < 2:
            raise ValueError(f'model.n_local must be an integer >= 2 (got {n_local!r})')
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f'model.resize_mode must be one of {RESIZE_MODES}, '
                             f'got {resize_mode!r}')
        if val_feature not in ('teacher', 'student'):
            raise ValueError(f"model.val_feature must be 'teacher' or 'student', "
                             f'got {val_feature!r}')
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'SAIPDataPreprocessor')
        super().__init__(backbone=backbone, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.csm_head = MODELS.build(csm_head) if csm_head is not None else None
        self.csr_head = MODELS.build(csr_head) if csr_head is not None else None
        self.css_head = MODELS.build(css_head) if css_head is not None else None
        self.distill_head = MODELS.build(distill_head) if distill_head is not None else None
        if self.distill_head is not None and not isinstance(self.backbone, SAIPViT):
            raise ValueError(f'model.distill_head needs a ViT student (SAIPViT: patch tokens and '
                             f'masking), got {type(self.backbone).__name__}')
        self.n_local = n_local
        self.rescale_factors = tuple(rescale_factors)
        self.csr_scale = csr_scale
        self.mask_ratio = mask_ratio
        self.resize_mode = resize_mode
        self.base_momentum = base_momentum
        self.end_momentum = end_momentum
        self.val_feature = val_feature
        # Set by SAIPHealthHook before a step whose health metrics it logs; the step then
        # leaves them in `self.health` (a dict of floats) for the hook to take.
        self.health_due = False
        self.health: Optional[Dict[str, float]] = None
        if lean_ffn:  # before the teacher copy: its MLPs run under no_grad either way
            use_lean_ffn(self)
        # Explicit attention products under CPU bf16 autocast, where PyTorch's fused kernel
        # is slow; unchanged elsewhere (before the teacher copy, which shares the switch).
        use_fast_attention(self)
        # The grid every input must sit on: the ViT patch, or a hierarchical backbone's
        # ``input_stride`` (its total downsampling).
        self.patch_size = getattr(self.backbone, 'input_stride', None) or \
            self.backbone.patch_embed.projection.kernel_size[0]
        # Before the teacher copy, so that the copy holds the same (frozen) modules.
        self.frozen_modules = self.freeze_unused_modules()

        self.teacher = nn.ModuleDict(
            {name: copy.deepcopy(module) for name, module in self._teacher_pairs()})
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()
        self._register_load_state_dict_pre_hook(self._drop_unused_teacher_keys)
        # Under autocast: the teacher's linear/conv weights in the compute dtype, cast once per
        # EMA update instead of at every teacher call (not parameters, not in checkpoints).
        self.teacher_casts = FrozenWeightCasts()

    def freeze_unused_modules(self) -> List[str]:
        """Freeze the backbone modules whose outputs no enabled objective reads.

        CSR and CSS read the backbone's ``inter`` output; CSM and distillation read ``last``.
        The modules that feed only the unread output (:meth:`SAIPViT.modules_unused_by`:
        ``ln_inter`` without CSR and CSS; the blocks after ``inter_index`` and the final norm
        without CSM and distillation) never get a gradient, so in one process AdamW never
        changes them, and DDP, which waits for a gradient of every trainable parameter, stops
        at the second step. They are kept (the backbone must load into a stock mmpretrain
        ``VisionTransformer``/``TinyViT`` and checkpoints keep their keys) and frozen with
        ``requires_grad_(False)``: the same training, in one process or in DDP. One log line
        names them.

        Returns:
            list[str]: the frozen modules' names, e.g. ``['backbone.ln_inter']``.
        """
        read = {'last'} if self.csm_head is not None or self.distill_head is not None else set()
        if self.csr_head is not None or self.css_head is not None:
            read.add('inter')
        if not hasattr(self.backbone, 'modules_unused_by'):
            raise TypeError(f'model.backbone: SAIP needs a backbone with the named outputs '
                            f'`inter` and `last` (SAIPViT, SAIPTinyViT), got '
                            f'{type(self.backbone).__name__}')
        names = self.backbone.modules_unused_by(read)
        modules = dict(self.backbone.named_modules())
        for name in names:
            modules[name].requires_grad_(False)
        if names:
            unread = 'inter' if 'inter' not in read else 'last'
            readers = dict(inter='CSR and CSS', last='CSM and distillation')[unread]
            print_log(f'SAIP: frozen (requires_grad=False) because no enabled objective reads '
                      f'the backbone output `{unread}` ({readers} read it; all off): '
                      f'{compact_module_names(names, "backbone.")}', logger='current')
        return [f'backbone.{n}' for n in names]

    def _teacher_pairs(self) -> List[Tuple[str, nn.Module]]:
        """(name, student module) of every module the teacher keeps an EMA copy of."""
        return [(name, getattr(self, name)) for name in self.TEACHER_MODULES
                if getattr(self, name) is not None]

    @staticmethod
    def _drop_unused_teacher_keys(state_dict: dict, prefix: str, *args) -> None:
        """Checkpoints written before the teacher was slimmed hold teacher CSR/CSS copies."""
        for key in [k for k in state_dict
                    if k.startswith((f'{prefix}teacher.csr_head.', f'{prefix}teacher.css_head.'))]:
            del state_dict[key]

    def init_weights(self) -> None:
        """Initialise the student, then start the teacher as its exact copy."""
        super().init_weights()
        with torch.no_grad():
            # copy_, not an EMA with m = 0: 0 * (uninitialised memory) can be NaN
            for name, student in self._teacher_pairs():
                for t, s in zip(self.teacher[name].parameters(), student.parameters()):
                    t.copy_(s)

    def train(self, mode: bool = True) -> 'SAIP':
        """The teacher always stays in eval mode (it is never trained)."""
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: Optional[float] = None) -> float:
        """``teacher = m · teacher + (1 − m) · student`` over all teacher parameters.

        Buffers are copied from the student (BatchNorm statistics; the CSM centre, unused in
        the teacher).

        Args:
            momentum (float, optional): ``m``; by default the cosine schedule from
                ``base_momentum`` to ``end_momentum`` at the message hub's ``iter`` out of
                ``max_iters``.

        Returns:
            float: the momentum used.
        """
        if momentum is None:
            hub = MessageHub.get_current_instance()
            max_iters = hub.get_info('max_iters')
            if max_iters is None:
                momentum = self.base_momentum
            else:
                momentum = cosine_momentum(self.base_momentum, self.end_momentum,
                                           hub.get_info('iter', 0) + 1, max_iters)
        t_params, s_params = [], []
        for name, student in self._teacher_pairs():
            t_params += list(self.teacher[name].parameters())
            s_params += [p.detach() for p in student.parameters()]
            # Buffers (BatchNorm running statistics of hierarchical backbones) are copied, as
            # MMEngine's EMA does: the teacher never runs in train mode to update its own.
            for t, s in zip(self.teacher[name].buffers(), student.buffers()):
                t.copy_(s)
        # One fused lerp over all tensors: t + (1 - m)(s - t) = m·t + (1 - m)·s.
        torch._foreach_lerp_(t_params, s_params, 1 - momentum)
        return momentum

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """Downstream features: the student backbone's final cls token, (B, C)."""
        return self.backbone(inputs)['last'][:, 0]

    def forward(self, inputs, data_samples: Optional[list] = None, mode: str = 'tensor'):
        """mmpretrain's self-supervised modes (``'tensor'``, ``'loss'``) plus ``'predict'``,
        which MMEngine's validation loop calls (:meth:`predict`)."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: Optional[list] = None,
                **kwargs) -> Union[list, Tensor]:
        """Frozen features for online evaluation: ``val_feature``'s final cls token.

        Changes no state: the teacher always runs in eval mode, and MMEngine's validation loop
        puts the student in eval mode (and back in train mode afterwards).

        Args:
            inputs (Tensor): (B, 3, H, W) normalised images.
            data_samples (list, optional): one per image; each gets ``pred_feature`` (C, ).

        Returns:
            list | Tensor: the data samples, or the (B, C) features when none are given.
        """
        backbone = self.teacher['backbone'] if self.val_feature == 'teacher' else self.backbone
        feats = backbone(inputs, cls_only=True)['last'][:, 0]  # (B, C)
        if data_samples is None:
            return feats
        for sample, feat in zip(data_samples, feats):
            sample.set_field(feat, 'pred_feature')
        return data_samples

    @torch.no_grad()
    def health_metrics(self, s_glob: Dict[str, Tensor], t_glob: Optional[Dict[str, Tensor]],
                       s_csm: Optional[Tensor], t_csm: Optional[Sequence[Tensor]],
                       batch_size: int) -> Dict[str, float]:
        """Label-free collapse indicators from what the step computed (no extra forward).

        Cls features are those of ``g1`` (B different images): ``rankme_{student,teacher}``
        (effective rank, at most min(B, C)) and ``cosine_{student,teacher}`` (mean cosine
        between different images). With CSM: ``csm_entropy`` (mean entropy of the teacher's
        centred, sharpened targets / log K) and ``agreement`` (fraction of cross-view pairs
        g1↔g2 where the student picks the teacher's target prototype). The centre is the one
        the loss uses (before this step's update). A batch of one image gives nothing.
        """
        B = batch_size
        if B < 2:  # one image (an epoch's last batch) has no spread to measure
            return {}
        key = 'last' if 'last' in s_glob else 'inter'  # CSR/CSS-only ablations stop at inter
        feats = {'student': s_glob[key][:B, 0]}
        if t_glob is not None:
            feats['teacher'] = t_glob['last'][:B, 0]
        out: Dict[str, float] = {}
        for name, f in feats.items():
            out[f'rankme_{name}'] = rankme(f)
            out[f'cosine_{name}'] = mean_offdiag_cosine(f)
        if s_csm is not None and t_csm is not None:
            loss_module = self.csm_head.loss_module
            temp = loss_module.current_teacher_temp()
            t_all = torch.cat(list(t_csm))  # (2B, K): g1 then g2
            out['csm_entropy'] = entropy_ratio(t_all, loss_module.center, temp)
            t_centred = t_all.float() - loss_module.center
            # student g2 against teacher g1, student g1 against teacher g2 (the loss's pairs)
            out['agreement'] = prototype_agreement(s_csm[:2 * B].roll(B, dims=0), t_centred)
        return out

    def mask_csr_view(self, g2: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The CSR view: ``g2`` upscaled by ``csr_scale`` and an anchor-consistent mask.

        Reference: ``F.interpolate(g2, scale_factor=1.25)`` (nearest). Ours: the same with
        ``resize_mode='nearest'``; the pixel target is built from this very view either way.

        Returns:
            tuple: the view (B, 3, H', W'), ``ids_keep`` (B, n_keep) and ``mask`` (B, h'*w'),
            1 on removed patches.
        """
        masked_view = rescale(g2, self.csr_scale, self.patch_size, self.resize_mode)
        grid = (masked_view.shape[-2] // self.patch_size, masked_view.shape[-1] // self.patch_size)
        # The mask is drawn on g2's own (anchor-scale) grid and carried to the upscaled one.
        anchor_grid = (g2.shape[-2] // self.patch_size, g2.shape[-1] // self.patch_size)
        ids_keep, mask = anchor_consistent_mask(g2.shape[0], anchor_grid, grid, self.mask_ratio,
                                                device=g2.device)
        return masked_view, ids_keep, mask

    @torch.no_grad()
    def predict_maps(self, inputs: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """What the model sees and predicts, for visualisation; no loss, no state change.

        Returns:
            dict: with CSR, ``csr_view`` (the ×1.25 view), ``csr_mask`` (B, L), ``csr_pred``
            and ``csr_target`` (B, L, p*p*3, in normalised-patch space when ``norm_pix``);
            with CSS, ``css_instance`` and ``css_roi`` search probabilities (B, h, w) on the
            reference (the ROI query at scale 1, without the random rescale).
        """
        g1, g2 = inputs['g1'], inputs['g2']
        out: Dict[str, Tensor] = {}
        g1_inter = self.backbone(g1, stop_at_inter=True)['inter']  # CSR anchor, CSS query
        if self.csr_head is not None:
            view, ids_keep, mask = self.mask_csr_view(g2)
            # The anchor cls comes from g1, never from g2 (the image being reconstructed).
            anchor_cls = g1_inter[:, 0]
            masked = self.backbone(view, ids_keep=ids_keep, stop_at_inter=True)
            grid = (view.shape[-2] // self.patch_size, view.shape[-1] // self.patch_size)
            out.update(csr_view=view, csr_mask=mask,
                       csr_pred=self.csr_head(masked['inter'], anchor_cls, ids_keep, grid),
                       csr_target=self.csr_head.construct_target(view))
        if self.css_head is not None:
            ref = self.teacher['backbone'](inputs['reference'], stop_at_inter=True)
            kv, feats = self.css_head.encode_reference(ref['inter'][:, 1:], ref['grid'])
            roi_query = self.backbone(inputs['locals'][:, -1], stop_at_inter=True)['inter']
            for name, query in (('css_instance', g1_inter), ('css_roi', roi_query)):
                out[name] = self.css_head(query, kv, feats).sigmoid()
        return out

    def check_inputs(self, inputs: Dict[str, Tensor], data_samples: Optional[list] = None) -> None:
        """Check the batched views against the model's settings; raise naming the fields.

        The pipeline is built from the config when it is parsed, so ``--cfg-options`` can change
        the model without the pipeline (or back): a mismatch would cut views wrongly and train
        silently on the wrong pairs.
        """
        for key in SAIP_VIEW_KEYS:
            if key not in inputs:
                raise KeyError(f'SAIP: view `{key}` is missing from the batch (has '
                               f'{sorted(inputs)}); the pipeline must end with PackSAIPInputs')
        g1, g2, local_views = inputs['g1'], inputs['g2'], inputs['locals']
        B = g1.shape[0]
        if g1.dim() != 4 or g2.shape != g1.shape:
            raise ValueError(f'SAIP: g1 and g2 must be (B, 3, H, W) of one shape, got '
                             f'{tuple(g1.shape)} and {tuple(g2.shape)}')
        if local_views.dim() != 5 or local_views.shape[0] != B:
            raise ValueError(f'SAIP: `locals` must be (B={B}, n_local - 1, 3, h, w), got '
                             f'{tuple(local_views.shape)}')
        if local_views.shape[1] != self.n_local - 1:
            raise ValueError(
                f'SAIP: the batch holds {local_views.shape[1]} local crops per image but '
                f'model.n_local={self.n_local} needs n_local - 1 = {self.n_local - 1}. '
                f'model.n_local and the PersonLocalViews transform\'s num_views must be set '
                f'together (num_views = n_local - 1), e.g. --cfg-options model.n_local=8 '
                f'train_dataloader.dataset.pipeline.2.num_views=7 for the configs in '
                f'configs/saip/ (PersonLocalViews is pipeline step 2 there).')
        for key in ('region', 'reference'):
            if inputs[key].dim() != 4 or inputs[key].shape[0] != B:
                raise ValueError(f'SAIP: `{key}` must be (B={B}, 3, h, w), got '
                                 f'{tuple(inputs[key].shape)}')
        ref_hw = tuple(inputs['reference'].shape[-2:])
        for key in ('instance_mask', 'roi_mask'):
            if tuple(inputs[key].shape) != (B, ) + ref_hw:
                raise ValueError(f'SAIP: `{key}` must be (B, H, W) = {(B, ) + ref_hw} like the '
                                 f'reference, got {tuple(inputs[key].shape)}')
        if data_samples:
            meta = getattr(data_samples[0], 'metainfo', {}) or {}
            mode = meta.get('region_interpolation')
            if mode is not None and mode != self.resize_mode:
                raise ValueError(
                    f'SAIP: the pipeline\'s RegionView.interpolation={mode!r} differs from '
                    f'model.resize_mode={self.resize_mode!r}; set both to the same mode (the '
                    f'method resizes the region view, the random rescale and the CSR view alike)')

    def loss(self, inputs: Dict[str, Tensor], data_samples: Optional[list] = None,
             **kwargs) -> Dict[str, Tensor]:
        """One SAIP training step's losses (section 3 of the method).

        Args:
            inputs (dict): batched views from ``SAIPDataPreprocessor``: ``g1``, ``g2``
                (B, 3, 256, 128), ``locals`` (B, n_local - 1, 3, 128, 64), ``region``
                (B, 3, 128, 64), ``reference`` (B, 3, 224, 224), ``instance_mask`` and
                ``roi_mask`` (B, 224, 224).

        Returns:
            dict: ``loss_csm``, ``loss_csm_attn``, ``loss_csr``, ``loss_css_inst``,
            ``loss_css_roi``, ``loss_kd_global``, ``loss_kd_patch``, ``loss_kd_relation``
            (those whose objective is on).
        """
        self.check_inputs(inputs, data_samples)
        g1, g2, local_views = inputs['g1'], inputs['g2'], inputs['locals']
        B = g1.shape[0]
        globals_ = torch.cat([g1, g2])  # (2B, 3, H, W), view-major
        use_csm, use_csr, use_css = (self.csm_head is not None, self.csr_head is not None,
                                     self.css_head is not None)
        use_kd, only_kd = self.distill_head is not None, not (use_csm or use_csr or use_css)
        use_attn = use_csm and self.csm_head.with_attention_loss
        losses: Dict[str, Tensor] = {}

        # ---- teacher: no gradients, ever ----
        with torch.no_grad():
            run = self.teacher_casts  # run(m, ...) = m(...), m's weights cast once a step
            if use_csm:
                t_glob = run(self.teacher['backbone'], globals_, return_relations=use_attn,
                             cls_only=True)
                t_csm = run(self.teacher['csm_head'], t_glob['last'][:, 0]).chunk(2)  # 2×(B, K)
            if use_css:
                t_ref = run(self.teacher['backbone'], inputs['reference'], stop_at_inter=True)
                ref_tokens, ref_grid = t_ref['inter'][:, 1:], t_ref['grid']
            # The EMA update changes the teacher after this step: its cast weights are not
            # kept through the student's forward and backward.
            run.release()

        # ---- student ----
        # cls_only: CSM reads the cls token of `last`; the last block skips the other rows.
        if not only_kd:
            s_glob = self.backbone(globals_, return_relations=use_attn,
                                   stop_at_inter=not use_csm, cls_only=True)
        # Random draws in a fixed order (last local, region, CSR mask) for reproducibility.
        last_local = region = None
        if use_csm or use_css:
            local_factor = random.choice(self.rescale_factors)
            last_local_view = rescale(local_views[:, -1], local_factor, self.patch_size,
                                      self.resize_mode)
        if use_csm:
            region_view = rescale(inputs['region'], random.choice(self.rescale_factors),
                                  self.patch_size, self.resize_mode)
            if region_view.shape == last_local_view.shape:
                # Same size: one backbone pass for both views.
                both = self.backbone(torch.cat([last_local_view, region_view]), cls_only=True)
                last_local = {k: v[:B] if k in ('inter', 'last') else v for k, v in both.items()}
                region = {k: v[B:] if k in ('inter', 'last') else v for k, v in both.items()}
            else:
                last_local = self.backbone(last_local_view, cls_only=True)
                region = self.backbone(region_view, cls_only=True)
        elif use_css:
            last_local = self.backbone(last_local_view, stop_at_inter=True)

        if use_csm:
            # Student views in the method's order: g1, g2, locals…, rescaled last local,
            # rescaled region. One head call for all of them (one prototype normalisation).
            cls_tokens = [s_glob['last'][:, 0]]
            n_small = self.n_local - 2
            if n_small > 0:
                small = local_views[:, :n_small].transpose(0, 1).flatten(0, 1)  # (n*B, 3, h, w)
                cls_tokens.append(self.backbone(small, cls_only=True)['last'][:, 0])
            cls_tokens += [last_local['last'][:, 0], region['last'][:, 0]]
            s_csm = self.csm_head(torch.cat(cls_tokens))  # ((n_local + 2)·B, K), view-major
            if self.health_due:  # before the loss updates the centre
                self.health = self.health_metrics(s_glob, t_glob, s_csm, t_csm, B)
            losses.update(self.csm_head.loss(
                s_csm, t_csm, s_glob.get('relations'), t_glob.get('relations')))

        if use_csr:
            masked_view, ids_keep, mask = self.mask_csr_view(g2)
            masked = self.backbone(masked_view, ids_keep=ids_keep, stop_at_inter=True)
            # Anchor cls = student `inter` cls of g1 (reference: b_feats[0][:bs]), never g2's:
            # g2 is the image being reconstructed and its cls would leak the target.
            losses.update(self.csr_head.loss(masked['inter'], s_glob['inter'][:B, 0], ids_keep,
                                             mask, masked_view))

        if use_css:
            losses.update(self.css_head.loss(
                s_glob['inter'][:B], last_local['inter'], ref_tokens, ref_grid,
                inputs['instance_mask'], inputs['roi_mask']))

        if use_kd:
            # The teacher sees g1 as it is, the student g1 rescaled (and maybe masked).
            factor = random.choice(self.distill_head.scales)
            kd_view = rescale(g1, factor, self.patch_size, self.resize_mode)
            grid = (kd_view.shape[-2] // self.patch_size, kd_view.shape[-1] // self.patch_size)
            ids_keep = self.distill_head.draw_mask(B, grid, device=g1.device)
            s_kd = self.backbone(kd_view, ids_keep=ids_keep)
            losses.update(self.distill_head.loss(s_kd['last'], g1, factor, grid, self.patch_size,
                                                 ids_keep))
        if self.health_due and not use_csm:  # from the student's features (no CSM targets)
            self.health = self.health_metrics(s_kd if only_kd else s_glob, None, None, None, B)
        self.health_due = False
        return losses

    def parse_losses(self, losses: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Sum the losses, after checking every term is finite (on every process).

        Raises:
            FloatingPointError: naming the non-finite term(s) and the iteration, before the
                optimiser step and the teacher update can spread NaN into the weights.
        """
        names = list(losses)
        values = torch.stack([losses[n].detach().float().mean() for n in names])
        finite = torch.isfinite(values)
        bad_here = (~finite).any().float()
        if is_distributed():  # every rank must stop, not only the one that saw it
            dist.all_reduce(bad_here, op=dist.ReduceOp.MAX)
        if bad_here.item() > 0:
            it = MessageHub.get_current_instance().get_info('iter')
            where = f'iteration {it + 1}' if it is not None else 'this step'
            terms = ', '.join(f'{n}={values[i].item()}' for i, n in enumerate(names)
                              if not finite[i]) or 'on another process'
            raise FloatingPointError(
                f'SAIP: non-finite loss at {where}: {terms}. Stopped before the optimizer step '
                f'and the teacher update; the newest checkpoint is the last good state. Check '
                f'the inputs (data_preprocessor mean/std, corrupt images) and the lr.')
        return super().parse_losses(losses)
