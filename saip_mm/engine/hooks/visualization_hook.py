"""Pictures of what SAIP sees and predicts, written through MMEngine's visualizer."""
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS
from torch import Tensor

from ...models.heads import patchify, unpatchify

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def to_uint8(img: Tensor, mean: Sequence[float] = IMAGENET_MEAN,
             std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """A normalised (3, H, W) RGB tensor → (H, W, 3) uint8 RGB."""
    x = img.detach().float().cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(
        mean).view(3, 1, 1)
    return x.clamp(0, 255).byte().permute(1, 2, 0).numpy().copy()


def _fit_height(img: np.ndarray, height: int) -> np.ndarray:
    if img.shape[0] == height:
        return img
    width = max(1, round(img.shape[1] * height / img.shape[0]))
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_NEAREST)


def hstack(images: List[np.ndarray], height: int, gap: int = 4) -> np.ndarray:
    """Resize to a common height and lay out left to right on a white background."""
    images = [_fit_height(i, height) for i in images]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    out = [images[0]]
    for img in images[1:]:
        out += [spacer, img]
    return np.concatenate(out, axis=1)


def heat_overlay(image: np.ndarray, prob: Tensor, alpha: float = 0.5) -> np.ndarray:
    """Blend a (h, w) probability map, upsampled, as a JET heat map over an RGB image."""
    heat = cv2.resize(prob.detach().float().cpu().numpy(), image.shape[1::-1],
                      interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap((heat.clip(0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)


def mask_box(mask: Tensor) -> Optional[tuple]:
    """The (x1, y1, x2, y2) box of a binary (H, W) mask, or None when empty."""
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def draw_box(image: np.ndarray, box: Optional[tuple], color: tuple) -> np.ndarray:
    if box is not None:
        cv2.rectangle(image, box[:2], (box[2] - 1, box[3] - 1), color, 2)
    return image


@HOOKS.register_module()
class SAIPVisualizationHook(Hook):
    """Every ``interval`` training iterations, draw the first samples of the batch.

    Three pictures go to the runner's visualizer (local PNG files under the work dir's
    ``vis_data/vis_image`` by default; TensorBoard when a ``TensorboardVisBackend`` is
    configured):

    - ``saip_views``: g1, g2, the region view and the local crops;
    - ``saip_csr``: the ×1.25 masked view (removed patches grey), the reconstruction and
      the target;
    - ``saip_css``: the multi-person reference with the true boxes (instance green, ROI red),
      then the instance and ROI search maps over it.

    Args:
        interval (int): iterations between pictures. Defaults to 50.
        max_samples (int): batch samples drawn, one row each. Defaults to 2.
        height (int): panel height in pixels. Defaults to 256.
    """
    priority = 'LOW'

    def __init__(self, interval: int = 50, max_samples: int = 2, height: int = 256) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval
        self.max_samples = max_samples
        self.height = height

    def after_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if data_batch is None or not (self.every_n_train_iters(runner, self.interval)
                                      or self.is_last_train_iter(runner)):
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        inputs = model.data_preprocessor(data_batch, False)['inputs']
        inputs = {k: v[:self.max_samples] for k, v in inputs.items()}
        was_training = model.training
        model.eval()
        try:
            maps = model.predict_maps(inputs)
        finally:
            model.train(was_training)
        norm_pix = model.csr_head is not None and model.csr_head.norm_pix
        for name, image in self.draw(inputs, maps, model.patch_size, norm_pix).items():
            runner.visualizer.add_image(name, image, step=runner.iter + 1)

    def draw(self, inputs: Dict[str, Tensor], maps: Dict[str, Tensor], patch_size: int,
             norm_pix: bool = True) -> Dict[str, np.ndarray]:
        """Build the pictures (uint8 RGB) from a batch of views and the model's maps."""
        rows: Dict[str, List[np.ndarray]] = {'saip_views': [], 'saip_csr': [], 'saip_css': []}
        for b in range(inputs['g1'].shape[0]):
            views = [to_uint8(inputs['g1'][b]), to_uint8(inputs['g2'][b]),
                     to_uint8(inputs['region'][b])]
            views += [to_uint8(v) for v in inputs['locals'][b]]
            rows['saip_views'].append(hstack(views, self.height))
            if 'csr_pred' in maps:
                rows['saip_csr'].append(self._csr_row(maps, b, patch_size, norm_pix))
            reference = to_uint8(inputs['reference'][b])
            draw_box(reference, mask_box(inputs['instance_mask'][b]), (0, 200, 0))
            draw_box(reference, mask_box(inputs['roi_mask'][b]), (220, 0, 0))
            panels = [reference]
            for key in ('css_instance', 'css_roi'):
                if key in maps:
                    panels.append(heat_overlay(reference, maps[key][b]))
            rows['saip_css'].append(hstack(panels, self.height))
        return {name: self._vstack(r) for name, r in rows.items() if r}

    def _csr_row(self, maps: Dict[str, Tensor], b: int, patch_size: int,
                 norm_pix: bool) -> np.ndarray:
        view = maps['csr_view'][b:b + 1].float()
        grid = (view.shape[-2] // patch_size, view.shape[-1] // patch_size)
        raw = patchify(view, patch_size)  # (1, L, p*p*3)
        pred = maps['csr_pred'][b:b + 1].float()
        if norm_pix:  # predictions live in normalised-patch space: use the true statistics
            pred = pred * (raw.var(-1, keepdim=True) + 1e-6).sqrt() + raw.mean(-1, keepdim=True)
        mask = maps['csr_mask'][b:b + 1].float()[..., None]
        masked = raw * (1 - mask)  # 0 in normalised space: removed patches show mean grey
        recon = raw * (1 - mask) + pred * mask  # visible patches pasted back, as in MAE
        to_img = lambda x: to_uint8(unpatchify(x, grid, patch_size)[0])  # noqa: E731
        return hstack([to_img(masked), to_img(recon), to_img(raw)], self.height)

    @staticmethod
    def _vstack(rows: List[np.ndarray], gap: int = 4) -> np.ndarray:
        width = max(r.shape[1] for r in rows)
        padded = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                  for r in rows]
        return np.concatenate(padded, axis=0)[:-gap]
