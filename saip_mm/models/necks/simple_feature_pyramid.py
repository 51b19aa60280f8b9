"""ViTDet's simple feature pyramid: multi-scale maps from the last map of a plain ViT."""
from typing import List, Sequence, Tuple

import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ViTDet normalises the pyramid with it)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        return super().forward(x).permute(0, 3, 1, 2)


def _rescale(channels: int, scale: float) -> Tuple[nn.Module, int]:
    """The stage that brings a stride-s map to stride s/scale; returns it and its out channels."""
    if scale == 4.0:
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), LayerNorm2d(channels // 2),
            nn.GELU(), nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2)), channels // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), channels // 2
    if scale == 1.0:
        return nn.Identity(), channels
    if scale == 0.5:
        return nn.MaxPool2d(2, stride=2), channels
    raise ValueError(f'scale factor {scale} is not one of 4.0, 2.0, 1.0, 0.5')


# Registered in MMEngine's root registry: mmdet and mmseg configs find it under their own scope.
@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Build a feature pyramid from one plain-ViT feature map (Li et al., ViTDet, 2022).

    Each level rescales the last input map (deconvolutions up, max-pooling down), then applies a
    1×1 and a 3×3 convolution, each followed by a channel LayerNorm. Levels beyond the scale
    factors are max-pooled (stride 2) from the coarsest one, as the RPN of Faster/Mask R-CNN
    expects 5 levels.

    Args:
        in_channels (int): channels of the ViT map (192 for ViT-Tiny).
        out_channels (int): channels of every pyramid level. Defaults to 256.
        scale_factors (Sequence[float]): rescaling of the input map per level, from fine to
            coarse. Defaults to (4.0, 2.0, 1.0, 0.5): strides 4, 8, 16, 32 from a stride-16 ViT.
        num_outs (int): number of outputs, at least ``len(scale_factors)``. Defaults to 5.
        init_cfg (dict | list, optional): initialisation config. Defaults to Xavier on convs.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_outs: int = 5,
                 init_cfg=dict(type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs={num_outs} < {len(scale_factors)} scale factors')
        self.num_outs = num_outs
        self.stages = nn.ModuleList()
        for scale in scale_factors:
            rescale, channels = _rescale(in_channels, float(scale))
            self.stages.append(nn.Sequential(
                rescale,
                nn.Conv2d(channels, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                LayerNorm2d(out_channels)))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Map the last of ``inputs`` (B, C, h, w) to ``num_outs`` levels, fine to coarse."""
        x = inputs[-1]
        outs: List[Tensor] = [stage(x) for stage in self.stages]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
