"""Pictures of what SAIP sees and predicts, written through MMEngine's visualizer."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

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


BLACK, GREEN, RED = (0, 0, 0), (0, 200, 0), (220, 0, 0)
INSTANCE_COLOR, ROI_COLOR = GREEN, RED
FONT = cv2.FONT_HERSHEY_SIMPLEX
Title = Union[str, Sequence[Tuple[str, tuple]]]  # plain text, or (text, RGB colour) pieces


def fit_scale(title: Title, width: int, height: int) -> float:
    """The largest font scale (at most ``height / 34``) at which ``title`` fits ``width``."""
    pieces = [title] if isinstance(title, str) else [text for text, _ in title]
    scale = height / 34
    while scale > 0.2 and sum(cv2.getTextSize(t, FONT, scale, 1)[0][0]
                              for t in pieces) > width - 2:
        scale *= 0.9
    return scale


def title_strip(title: Title, width: int, height: int,
                scale: Optional[float] = None) -> np.ndarray:
    """A white (height, width, 3) strip with ``title`` centred.

    Args:
        title (str | list[tuple[str, tuple]]): the text, or pieces of text with their RGB
            colours (drawn left to right); plain text is black.
        width (int): strip width in pixels (the panel's).
        height (int): strip height in pixels.
        scale (float, optional): font scale; by default :func:`fit_scale`. Defaults to None.
    """
    pieces = [(title, BLACK)] if isinstance(title, str) else list(title)
    scale = fit_scale(title, width, height) if scale is None else scale
    strip = np.full((height, width, 3), 255, np.uint8)
    sizes = [cv2.getTextSize(text, FONT, scale, 1) for text, _ in pieces]
    text_h = max(h for (_, h), _ in sizes)
    descent = max(base for _, base in sizes)  # below the baseline: g, p, y
    x = max(0, (width - sum(w for (w, _), _ in sizes)) // 2)
    y = max(text_h, (height - text_h - descent) // 2 + text_h)
    for (text, color), ((w, _), _) in zip(pieces, sizes):
        cv2.putText(strip, text, (x, y), FONT, scale, color, 1, cv2.LINE_AA)
        x += w
    return strip


def colour_bar(height: int, bar_width: int = 12) -> np.ndarray:
    """The JET scale of :func:`heat_overlay` as a panel: 1 at the top, 0 at the bottom."""
    label_w = max(24, height // 6)
    values = np.linspace(1, 0, height, dtype=np.float32)[:, None]  # top = 1
    bar = cv2.applyColorMap((np.repeat(values, bar_width, 1) * 255).astype(np.uint8),
                            cv2.COLORMAP_JET)
    panel = np.full((height, bar_width + label_w, 3), 255, np.uint8)
    panel[:, :bar_width] = cv2.cvtColor(bar, cv2.COLOR_BGR2RGB)
    scale = max(0.25, min(0.5, height / 512))
    for value, y in ((1.0, 0), (0.5, height // 2), (0.0, height - 1)):
        text = f'{value:.1f}'
        w, h = cv2.getTextSize(text, FONT, scale, 1)[0]
        y = min(max(y + h // 2, h), height - 1)
        cv2.putText(panel, text, (bar_width + 3, y), FONT, scale, BLACK, 1, cv2.LINE_AA)
    return panel


def with_column_titles(rows: List[List[np.ndarray]], titles: List[Title], height: int,
                       gap: int = 4) -> np.ndarray:
    """Panels laid out in rows (:func:`hstack`), under one title strip per column.

    The strip is ``max(14, height // 10)`` pixels high; all titles share one font size, the
    largest at which each fits its column.
    """
    strip_h = max(14, height // 10)
    widths = [_fit_height(p, height).shape[1] for p in rows[0]]
    scale = min(fit_scale(t, w, strip_h) for t, w in zip(titles, widths))  # one size for all
    header = [title_strip(t, w, strip_h, scale) for t, w in zip(titles, widths)]
    lines = [hstack(header, strip_h, gap)] + [hstack(r, height, gap) for r in rows]
    width = max(line.shape[1] for line in lines)
    padded = [np.pad(line, ((0, gap), (0, width - line.shape[1]), (0, 0)), constant_values=255)
              for line in lines]
    return np.concatenate(padded, axis=0)[:-gap]


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
      then the instance and ROI search maps over it and a colour bar of their scale.

    Every column is titled (see :meth:`draw`), one row per sample.

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
        self.titles: Dict[str, List[Title]] = {}  # column titles of the last pictures drawn

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
        """Build the pictures (uint8 RGB) from a batch of views and the model's maps.

        Each picture has one row per sample under one title per column (kept in
        ``self.titles``): views ``g1``, ``g2``, ``region``, ``local 1`` …; CSR ``masked
        input``, ``reconstruction``, ``target``; CSS the reference (instance box green, ROI box
        red), the ``instance search`` and ``ROI search`` maps and their colour bar (``prob``, the
        search-map probability, 0 to 1).
        """
        rows: Dict[str, List[List[np.ndarray]]] = {'saip_views': [], 'saip_csr': [],
                                                   'saip_css': []}
        n_local = inputs['locals'].shape[1]
        titles: Dict[str, List[Title]] = {
            'saip_views': ['g1', 'g2', 'region'] + [f'local {i + 1}' for i in range(n_local)],
            'saip_csr': ['masked input', 'reconstruction', 'target'],
            'saip_css': [[('reference: ', BLACK), ('instance', INSTANCE_COLOR), (' / ', BLACK),
                          ('ROI', ROI_COLOR)]]}
        css_maps = [k for k in ('css_instance', 'css_roi') if k in maps]
        titles['saip_css'] += [{'css_instance': 'instance search', 'css_roi': 'ROI search'}[k]
                               for k in css_maps] + (['prob'] if css_maps else [])
        for b in range(inputs['g1'].shape[0]):
            views = [to_uint8(inputs['g1'][b]), to_uint8(inputs['g2'][b]),
                     to_uint8(inputs['region'][b])]
            views += [to_uint8(v) for v in inputs['locals'][b]]
            rows['saip_views'].append(views)
            if 'csr_pred' in maps:
                rows['saip_csr'].append(self._csr_row(maps, b, patch_size, norm_pix))
            reference = to_uint8(inputs['reference'][b])
            draw_box(reference, mask_box(inputs['instance_mask'][b]), INSTANCE_COLOR)
            draw_box(reference, mask_box(inputs['roi_mask'][b]), ROI_COLOR)
            panels = [reference] + [heat_overlay(reference, maps[k][b]) for k in css_maps]
            if css_maps:
                panels.append(colour_bar(self.height))
            rows['saip_css'].append(panels)
        self.titles = {name: titles[name] for name, r in rows.items() if r}
        return {name: with_column_titles(r, titles[name], self.height)
                for name, r in rows.items() if r}

    def _csr_row(self, maps: Dict[str, Tensor], b: int, patch_size: int,
                 norm_pix: bool) -> List[np.ndarray]:
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
        return [to_img(masked), to_img(recon), to_img(raw)]
