"""The SAIP algorithm: student + EMA teacher, three cross-scale objectives."""
import copy
import math
import random
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from torch import Tensor

from ..utils import anchor_consistent_mask


def cosine_momentum(base: float, end: float, it: int, max_iters: int) -> float:
    """Cosine schedule from ``base`` at iteration 0 to ``end`` at ``max_iters``."""
    progress = min(max(it / max(max_iters, 1), 0.0), 1.0)
    return end - (end - base) * (math.cos(math.pi * progress) + 1) / 2


def rescale(images: Tensor, factor: float, patch_size: int) -> Tensor:
    """Resize images by ``factor`` (bicubic), each side rounded to a multiple of the patch."""
    h, w = images.shape[-2:]
    size = (max(patch_size, round(h * factor / patch_size) * patch_size),
            max(patch_size, round(w * factor / patch_size) * patch_size))
    if size == (h, w):
        return images
    return F.interpolate(images, size=size, mode='bicubic', align_corners=False)


@MODELS.register_module()
class SAIP(BaseSelfSupervisor):
    """Scale-Aware Image Pretraining.

    The student is the backbone plus the CSM, CSR and CSS heads; the teacher is an EMA copy of
    all of them (only its backbone and CSM head run). :class:`SAIPTeacherHook` updates the
    teacher after each optimiser step; it must be in the config's ``custom_hooks``.
    A head set to ``None`` switches its objective off (the ablations).

    Args:
        backbone (dict): :class:`SAIPViT` config.
        csm_head (dict, optional): :class:`CSMHead` config, or None to switch CSM off.
        csr_head (dict, optional): :class:`CSRHead` config, or None to switch CSR off.
        css_head (dict, optional): :class:`CSSHead` config, or None to switch CSS off.
        n_local (int): ``n_local`` of the method; the pipeline gives ``n_local - 1`` local crops.
            Defaults to 8.
        rescale_factors (sequence[float]): factors drawn for the last local crop and the region
            view. Defaults to (0.75, 0.875, 1.125, 1.25).
        csr_scale (float): upscaling of ``g2`` for the masked CSR view. Defaults to 1.25.
        mask_ratio (float): CSR mask ratio. Defaults to 0.75.
        base_momentum (float): teacher EMA momentum at iteration 0. Defaults to 0.996.
        end_momentum (float): teacher EMA momentum at the last iteration. Defaults to 1.0.
        data_preprocessor (dict, optional): defaults to ``SAIPDataPreprocessor``.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 csm_head: Optional[dict] = None,
                 csr_head: Optional[dict] = None,
                 css_head: Optional[dict] = None,
                 n_local: int = 8,
                 rescale_factors: Sequence[float] = (0.75, 0.875, 1.125, 1.25),
                 csr_scale: float = 1.25,
                 mask_ratio: float = 0.75,
                 base_momentum: float = 0.996,
                 end_momentum: float = 1.0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if csm_head is None and csr_head is None and css_head is None:
            raise ValueError('SAIP needs at least one of csm_head, csr_head, css_head')
        if n_local < 2:
            raise ValueError(f'n_local must be >= 2 (got {n_local})')
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'SAIPDataPreprocessor')
        super().__init__(backbone=backbone, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.csm_head = MODELS.build(csm_head) if csm_head is not None else None
        self.csr_head = MODELS.build(csr_head) if csr_head is not None else None
        self.css_head = MODELS.build(css_head) if css_head is not None else None
        self.n_local = n_local
        self.rescale_factors = tuple(rescale_factors)
        self.csr_scale = csr_scale
        self.mask_ratio = mask_ratio
        self.base_momentum = base_momentum
        self.end_momentum = end_momentum
        # The grid every input must sit on: the ViT patch, or a hierarchical backbone's
        # ``input_stride`` (its total downsampling).
        self.patch_size = getattr(self.backbone, 'input_stride', None) or \
            self.backbone.patch_embed.projection.kernel_size[0]

        self.teacher = nn.ModuleDict(
            {name: copy.deepcopy(module) for name, module in self._student_modules()})
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()

    def _student_modules(self) -> List[Tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in ('backbone', 'csm_head', 'csr_head',
                                                          'css_head')
                if getattr(self, name) is not None]

    def init_weights(self) -> None:
        """Initialise the student, then start the teacher as its exact copy."""
        super().init_weights()
        with torch.no_grad():
            # copy_, not an EMA with m = 0: 0 * (uninitialised memory) can be NaN
            for name, student in self._student_modules():
                for t, s in zip(self.teacher[name].parameters(), student.parameters()):
                    t.copy_(s)

    def train(self, mode: bool = True) -> 'SAIP':
        """The teacher always stays in eval mode (it is never trained)."""
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: Optional[float] = None) -> float:
        """``teacher = m · teacher + (1 − m) · student`` over all parameters.

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
        for name, student in self._student_modules():
            t_params = list(self.teacher[name].parameters())
            s_params = [p.detach() for p in student.parameters()]
            torch._foreach_mul_(t_params, momentum)
            torch._foreach_add_(t_params, s_params, alpha=1 - momentum)
        return momentum

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """Downstream features: the student backbone's final cls token, (B, C)."""
        return self.backbone(inputs)['last'][:, 0]

    def mask_csr_view(self, g2: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The CSR view: ``g2`` upscaled by ``csr_scale`` and an anchor-consistent mask.

        Returns:
            tuple: the view (B, 3, H', W'), ``ids_keep`` (B, n_keep) and ``mask`` (B, h'*w'),
            1 on removed patches.
        """
        masked_view = rescale(g2, self.csr_scale, self.patch_size)
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
        if self.csr_head is not None:
            view, ids_keep, mask = self.mask_csr_view(g2)
            anchor_cls = self.backbone(g2, stop_at_inter=True)['inter'][:, 0]
            masked = self.backbone(view, ids_keep=ids_keep, stop_at_inter=True)
            grid = (view.shape[-2] // self.patch_size, view.shape[-1] // self.patch_size)
            out.update(csr_view=view, csr_mask=mask,
                       csr_pred=self.csr_head(masked['inter'], anchor_cls, ids_keep, grid),
                       csr_target=self.csr_head.construct_target(view))
        if self.css_head is not None:
            ref = self.teacher['backbone'](inputs['reference'], stop_at_inter=True)
            kv, feats = self.css_head.encode_reference(ref['inter'][:, 1:], ref['grid'])
            for name, view in (('css_instance', g1), ('css_roi', inputs['locals'][:, -1])):
                query = self.backbone(view, stop_at_inter=True)['inter']
                out[name] = self.css_head(query, kv, feats).sigmoid()
        return out

    def _csm_logits(self, head: nn.Module, tokens: Tensor, num_views: int) -> List[Tensor]:
        """cls tokens of view-major stacked tokens → list of (B, K) logits, one per view."""
        return list(head(tokens[:, 0]).chunk(num_views))

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
            ``loss_css_roi`` (those whose objective is on).
        """
        g1, g2 = inputs['g1'], inputs['g2']
        B = g1.shape[0]
        globals_ = torch.cat([g1, g2])  # (2B, 3, H, W), view-major
        use_attn = self.csm_head is not None and self.csm_head.with_attention_loss
        losses: Dict[str, Tensor] = {}

        # ---- teacher: no gradients, ever ----
        with torch.no_grad():
            if self.csm_head is not None:
                t_glob = self.teacher['backbone'](globals_, return_relations=use_attn)
                t_csm = self._csm_logits(self.teacher['csm_head'], t_glob['last'], 2)
            if self.css_head is not None:
                t_ref = self.teacher['backbone'](inputs['reference'], stop_at_inter=True)
                ref_tokens, ref_grid = t_ref['inter'][:, 1:], t_ref['grid']

        # ---- student ----
        s_glob = self.backbone(globals_, return_relations=use_attn,
                               stop_at_inter=self.csm_head is None)
        local_views = inputs['locals']
        last_local = None
        if self.csm_head is not None or self.css_head is not None:
            last_local = self.backbone(
                rescale(local_views[:, -1], random.choice(self.rescale_factors),
                        self.patch_size), stop_at_inter=self.csm_head is None)

        if self.csm_head is not None:
            s_csm = self._csm_logits(self.csm_head, s_glob['last'], 2)
            n_small = self.n_local - 2
            if n_small > 0:
                small = local_views[:, :n_small].transpose(0, 1).flatten(0, 1)  # (n*B, 3, h, w)
                s_csm += self._csm_logits(self.csm_head, self.backbone(small)['last'], n_small)
            region = self.backbone(
                rescale(inputs['region'], random.choice(self.rescale_factors), self.patch_size))
            s_csm += self._csm_logits(self.csm_head, last_local['last'], 1)
            s_csm += self._csm_logits(self.csm_head, region['last'], 1)
            losses.update(self.csm_head.loss(
                s_csm, t_csm, s_glob.get('relations'), t_glob.get('relations')))

        if self.csr_head is not None:
            masked_view, ids_keep, mask = self.mask_csr_view(g2)
            masked = self.backbone(masked_view, ids_keep=ids_keep, stop_at_inter=True)
            losses.update(self.csr_head.loss(masked['inter'], s_glob['inter'][B:, 0], ids_keep,
                                             mask, masked_view))

        if self.css_head is not None:
            losses.update(self.css_head.loss(
                s_glob['inter'][:B], last_local['inter'], ref_tokens, ref_grid,
                inputs['instance_mask'], inputs['roi_mask']))
        return losses
