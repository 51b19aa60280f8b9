"""Every SAIP view of a batch, generated on the model's device from decoded uint8 images."""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmpretrain.registry import MODELS
from ..datasets.transforms import MultiPersonReference, PersonGlobalViews, PersonLocalViews
from ..datasets.transforms.augmentation import IMAGENET_MEAN, IMAGENET_STD, check_size
from .data_preprocessor import SAIPDataPreprocessor, check_mean_std
from .utils.batch_views import (PHOTOMETRIC_BACKENDS, RESAMPLE_MODES, BatchViewAugmentation,
                                blend_patches, box_masks, place_patches)

BATCH_INPUT_KEYS = ('img', 'img_hw', 'img_work_hw', 'bg_img', 'bg_img_hw', 'bg_img_work_hw')
REGION_MODES = ('nearest', 'bicubic')


@MODELS.register_module()
class SAIPBatchViewsPreprocessor(SAIPDataPreprocessor):
    """Build all SAIP views of a batch with tensor ops on the model's device.

    The batched alternative to the per-image view transforms: the DataLoader workers only
    decode each image and place it in a fixed-size canvas, shrunk only when larger
    (``ResizeForBatchViews`` + ``PackSAIPImages``); this preprocessor draws every view's random
    parameters for the whole batch and builds the views with the distributions of the
    per-image path (crop boxes drawn in the original image's pixels, same probabilities and
    ranges; see
    ``saip_mm.models.utils.batch_views`` for what differs at the pixel level). It outputs what
    ``SAIPDataPreprocessor`` outputs for the per-image pipeline: ``g1``, ``g2`` (B, 3, 256, 128),
    ``locals`` (B, n_local - 1, 3, 128, 64), ``region`` (B, 3, 128, 64), ``reference``
    (B, 3, 224, 224), ``instance_mask`` and ``roi_mask`` (B, 224, 224) for the reference recipe.

    Each view group takes the arguments of its per-image transform, whose defaults (the SAIP
    reference recipe) and checks therefore apply unchanged.

    Args:
        global_views (dict): arguments of ``PersonGlobalViews`` (``keys``/``img_key`` unused).
            Defaults to {} (the reference recipe).
        local_views (dict): arguments of ``PersonLocalViews``. Defaults to {}.
        region_size (Sequence[int]): (H, W) of the region view. Defaults to (128, 64).
        resize_mode (str): how ``g1`` is resized into the region view: 'nearest' (exactly
            ``F.interpolate(g1, size)``, the reference's default) or 'bicubic' (antialiased).
            Defaults to 'nearest'.
        reference (dict): arguments of ``MultiPersonReference`` (the background view and
            ``person_weight``; the key arguments are unused). Defaults to {}.
        resample (str): crop + resize implementation: 'matmul' (one batched resample, best on
            GPUs), 'loop' (one ``F.interpolate`` per crop on uint8, best on CPUs) or 'auto'
            (matmul on CUDA, loop elsewhere). Defaults to 'auto'.
        photometric (str): implementation of the photometric steps: 'torch' (tensor ops over
            the batch), 'opencv' (one view at a time with OpenCV/NumPy, CPU only, 2-3x faster
            there) or 'auto' (opencv on a CPU, torch elsewhere). Same formulas and parameters
            either way (outputs equal within 1e-6). Defaults to 'auto'.
        chunk_size (int, optional): images processed together; on a CPU small chunks keep the
            views in cache (measured about 5x faster per op than whole batches); on a GPU they
            bound the memory of the resampling matrices. Defaults to None: 8 on a CPU, 64
            elsewhere.
        non_blocking (bool): non-blocking host-to-device copies. Defaults to False.
    """

    def __init__(self,
                 global_views: Optional[dict] = None,
                 local_views: Optional[dict] = None,
                 region_size: Sequence[int] = (128, 64),
                 resize_mode: str = 'nearest',
                 reference: Optional[dict] = None,
                 resample: str = 'auto',
                 photometric: str = 'auto',
                 chunk_size: Optional[int] = None,
                 non_blocking: Optional[bool] = False) -> None:
        super().__init__(view_keys=BATCH_INPUT_KEYS, non_blocking=non_blocking)
        for field, group in (('global_views', global_views), ('local_views', local_views),
                             ('reference', reference)):
            group = group or {}
            check_mean_std(f'model.data_preprocessor.{field}', group.get('mean'),
                           group.get('std'))
        globals_ = PersonGlobalViews(**(global_views or {}))
        locals_ = PersonLocalViews(**(local_views or {}))
        ref = MultiPersonReference(**(reference or {}))
        self.global_augs = [BatchViewAugmentation(a) for a in globals_.augmentations]
        self.local_aug = BatchViewAugmentation(locals_.augmentation)
        self.num_local = locals_.num_views
        self.reference_aug = BatchViewAugmentation(ref.augmentation)
        self.person_weight = ref.person_weight
        self.region_size = check_size('region_size', region_size)
        if resize_mode not in REGION_MODES:
            raise ValueError(f'SAIPBatchViewsPreprocessor: `resize_mode` must be one of '
                             f'{REGION_MODES}, got {resize_mode!r}')
        self.resize_mode = resize_mode
        if resample not in RESAMPLE_MODES:
            raise ValueError(f'SAIPBatchViewsPreprocessor: `resample` must be one of '
                             f'{RESAMPLE_MODES}, got {resample!r}')
        self.resample = resample
        if photometric not in PHOTOMETRIC_BACKENDS:
            raise ValueError(f'SAIPBatchViewsPreprocessor: `photometric` must be one of '
                             f'{PHOTOMETRIC_BACKENDS}, got {photometric!r}')
        self.photometric = photometric
        if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
            raise ValueError(f'SAIPBatchViewsPreprocessor: `chunk_size` must be a positive '
                             f'integer or None, got {chunk_size}')
        self.chunk_size = chunk_size
        # The region view and the ROI crop must fit side by side in the reference.
        place_patches(0, self.reference_aug.size, self.local_aug.size, self.region_size)
        for aug in self.global_augs[1:] + [self.local_aug, self.reference_aug]:
            if (aug.aug.mean, aug.aug.std) != (self.global_augs[0].aug.mean,
                                               self.global_augs[0].aug.std):
                raise ValueError('SAIPBatchViewsPreprocessor: every view group must use the '
                                 'same `mean`/`std` (the reference blends normalised views)')

    def region_view(self, g1: Tensor) -> Tensor:
        """``g1`` (B, 3, H, W), normalised, resized to the region view (B, 3, h, w)."""
        if self.resize_mode == 'nearest':
            return F.interpolate(g1, size=self.region_size)
        return F.interpolate(g1, size=self.region_size, mode='bicubic', align_corners=False,
                             antialias=True)

    def generate(self, img: Tensor, img_hw: Tensor, bg_img: Tensor, bg_img_hw: Tensor,
                 img_work_hw: Optional[Tensor] = None, bg_img_work_hw: Optional[Tensor] = None,
                 out: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        """Build every view of a batch (or a chunk of one).

        Args:
            img (Tensor): (B, 3, H, W) uint8 canvases of the person images (any memory
                format; channels-last is read without a copy on a CPU).
            img_hw (Tensor): (B, 2) the images' original (H, W).
            bg_img (Tensor): (B, 3, H', W') uint8 canvases of the background images.
            bg_img_hw (Tensor): (B, 2) their original (H, W).
            img_work_hw (Tensor, optional): (B, 2) the (H, W) each person image covers in its
                canvas (top-left). Defaults to None: all of it.
            bg_img_work_hw (Tensor, optional): the same for the backgrounds. Defaults to None.
            out (dict, optional): output tensors to write into (one per view key).
                Defaults to None.

        Returns:
            dict: the views, and the parameters under ``params`` (boxes in original pixels,
            ``roi_box``/``instance_box`` in the reference).
        """
        num = img.shape[0]
        out = out if out is not None else {}
        mode = self.resample
        if mode == 'auto':
            mode = 'matmul' if img.device.type == 'cuda' else 'loop'
        backend = self.photometric
        if backend == 'auto':
            backend = 'opencv' if img.device.type == 'cpu' else 'torch'
        kwargs = dict(resample=mode, photometric=backend)
        params = {}
        for key, aug in zip(('g1', 'g2'), self.global_augs):
            out[key], params[key] = aug(img, img_hw, img_work_hw, 1, out=out.get(key), **kwargs)
        loc_out = out.get('locals')
        locals_, params['locals'] = self.local_aug(
            img, img_hw, img_work_hw, self.num_local,
            out=None if loc_out is None else loc_out.view(-1, *loc_out.shape[2:]), **kwargs)
        out['locals'] = locals_.view(num, self.num_local, *locals_.shape[1:])
        region = self.region_view(out['g1'])
        if 'region' in out:
            out['region'].copy_(region)
        else:
            out['region'] = region
        reference, params['reference'] = self.reference_aug(
            bg_img, bg_img_hw, bg_img_work_hw, 1, out=out.get('reference'), **kwargs)
        roi_box, instance_box = place_patches(num, self.reference_aug.size,
                                              self.local_aug.size, self.region_size)
        blend_patches(reference, out['locals'][:, -1], roi_box, self.person_weight)
        blend_patches(reference, out['region'], instance_box, self.person_weight)
        out['reference'] = reference
        for key, boxes in (('roi_mask', roi_box), ('instance_mask', instance_box)):
            out[key] = box_masks(boxes, self.reference_aug.size, device=img.device,
                                 out=out.get(key))
        params.update(roi_box=roi_box, instance_box=instance_box)
        out['params'] = params
        return out

    def forward(self, data: dict, training: bool = False) -> dict:
        """Move the uint8 images to the device and build the views there.

        Args:
            data (dict): the collated batch of ``PackSAIPImages``: ``inputs`` with ``img``
                and ``bg_img`` ((B, H, W, 3) uint8), ``img_hw``, ``img_work_hw``,
                ``bg_img_hw``, ``bg_img_work_hw``, and optionally ``data_samples``.
            training (bool): unused; the views are always random. Defaults to False.

        Returns:
            dict: ``inputs`` (g1, g2, locals, region, reference, instance_mask, roi_mask) and
            ``data_samples`` (with ``region_interpolation`` = ``resize_mode`` in their metainfo).
        """
        if 'inputs' not in data:
            raise KeyError(f'SAIPBatchViewsPreprocessor: the batch has no `inputs` (keys: '
                           f'{sorted(data)})')
        if self.is_image_batch(data['inputs']):  # online evaluation
            return self.image_batch(data)
        batch = self.cast_data({key: self._stack(data['inputs'], key) for key in self.view_keys})
        for key in ('img', 'bg_img'):
            if (batch[key].dtype != torch.uint8 or batch[key].dim() != 4
                    or batch[key].shape[-1] != 3):
                raise ValueError(f'SAIPBatchViewsPreprocessor: `{key}` must be (B, H, W, 3) '
                                 f'uint8 working images (PackSAIPImages), got '
                                 f'{tuple(batch[key].shape)} {batch[key].dtype}')
        # (B, 3, H, W) channels-last views of the packed images: no copy.
        img, bg_img = batch['img'].permute(0, 3, 1, 2), batch['bg_img'].permute(0, 3, 1, 2)
        num = img.shape[0]
        device = img.device
        chunk = self.chunk_size or (8 if device.type == 'cpu' else 64)
        g_h, g_w = self.global_augs[0].size
        l_h, l_w = self.local_aug.size
        r_h, r_w = self.reference_aug.size
        inputs = dict(
            g1=torch.empty(num, 3, g_h, g_w, device=device),
            g2=torch.empty(num, 3, *self.global_augs[1].size, device=device),
            locals=torch.empty(num, self.num_local, 3, l_h, l_w, device=device),
            region=torch.empty(num, 3, *self.region_size, device=device),
            reference=torch.empty(num, 3, r_h, r_w, device=device),
            instance_mask=torch.empty(num, r_h, r_w, device=device),
            roi_mask=torch.empty(num, r_h, r_w, device=device))
        sizes = {key: batch[key].cpu() for key in self.view_keys if key.endswith('_hw')}
        for start in range(0, num, chunk):
            part = slice(start, min(num, start + chunk))
            self.generate(img[part], sizes['img_hw'][part], bg_img[part], sizes['bg_img_hw'][part],
                          sizes['img_work_hw'][part], sizes['bg_img_work_hw'][part],
                          out={key: value[part] for key, value in inputs.items()})
        data_samples = self.cast_data(data.get('data_samples'))
        for sample in data_samples or []:
            # As RegionView records its mode, so that SAIP can check it against its own.
            if hasattr(sample, 'set_metainfo'):
                sample.set_metainfo(dict(region_interpolation=self.resize_mode))
        return dict(inputs=inputs, data_samples=data_samples)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_local={self.num_local}, '
                f'region_size={self.region_size}, resize_mode={self.resize_mode!r}, '
                f'resample={self.resample!r}, photometric={self.photometric!r}, '
                f'chunk_size={self.chunk_size})')
