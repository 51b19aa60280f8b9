"""Anchor-consistent random masking for the CSR branch."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def anchor_consistent_mask(batch_size: int,
                           anchor_grid: Tuple[int, int],
                           target_grid: Tuple[int, int],
                           mask_ratio: float = 0.75,
                           device: Optional[torch.device] = None,
                           generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Draw a random mask on the anchor grid and carry it to a rescaled view's grid.

    The mask is drawn on the anchor grid (16×8 for a 256×128 anchor) and upsampled with nearest
    interpolation to the target grid (20×10 for the ×1.25 CSR view), so the masked regions are the
    same image regions at both scales. The visible set then holds exactly
    ``floor(L * (1 - mask_ratio))`` tokens (``L`` = target grid size) so a batch stays
    rectangular: visible tokens of the upsampled mask are trimmed, or masked ones added back, at
    random to reach that count.

    Args:
        batch_size (int): number of masks.
        anchor_grid (tuple): (h, w) of the anchor patch grid.
        target_grid (tuple): (h, w) of the masked view's patch grid.
        mask_ratio (float): fraction of removed tokens. Defaults to 0.75 (reference recipe).
        device (torch.device, optional): where the outputs live.
        generator (torch.Generator, optional): random source, for reproducible tests.

    Returns:
        tuple: ``ids_keep`` (B, n_keep) long, visible token indices in grid order, and
        ``mask`` (B, L) float, 1 on removed tokens and 0 on visible ones.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
    ah, aw = anchor_grid
    th, tw = target_grid
    n_anchor, n_target = ah * aw, th * tw
    n_keep = int(n_target * (1 - mask_ratio))
    n_keep_anchor = int(n_anchor * (1 - mask_ratio))

    # Removed positions on the anchor grid: the n_keep_anchor lowest-noise tokens stay visible.
    noise = torch.rand(batch_size, n_anchor, device=device, generator=generator)
    order = noise.argsort(dim=1)
    anchor_mask = torch.ones(batch_size, n_anchor, device=device)
    anchor_mask.scatter_(1, order[:, :n_keep_anchor], 0.0)
    target_mask = F.interpolate(anchor_mask.view(batch_size, 1, ah, aw), size=(th, tw),
                                mode='nearest').flatten(1)  # (B, L)

    # Rank tokens: visible ones first (in random order), then masked ones; take n_keep. Random
    # tie-breaking is what trims, or tops up, the visible set at random.
    jitter = torch.rand(batch_size, n_target, device=device, generator=generator)
    rank = (target_mask + jitter).argsort(dim=1)
    ids_keep = rank[:, :n_keep].sort(dim=1).values
    mask = torch.ones(batch_size, n_target, device=device)
    mask.scatter_(1, ids_keep, 0.0)
    return ids_keep, mask
