"""The patch grid of a checkpoint's position embeddings, shared by loaders and converters.

It lives in ``saip_mm.utils`` (not ``saip_mm.models``) because both the pretrained loader
(:mod:`saip_mm.models.utils.pretrained`) and the checkpoint converters
(:mod:`saip_mm.utils.vit_checkpoint`) apply the same rules, and ``saip_mm.utils`` must not
import ``saip_mm.models`` (the models build on the utils, not the other way round). Both names
stay importable from :mod:`saip_mm.models.utils.pretrained` and :mod:`saip_mm.models.utils`.
"""
import math
from typing import Optional, Sequence, Tuple


class PretrainedCheckpointError(ValueError):
    """A pretrained checkpoint does not fit the module it should initialise."""


def resolve_pos_embed_grid(num_patches: int,
                           src_grid: Optional[Sequence[int]] = None,
                           meta: Optional[dict] = None,
                           context: str = 'checkpoint') -> Tuple[Tuple[int, int], str]:
    """Find the (h, w) patch grid a checkpoint's position embeddings were learned on.

    Order: ``meta['pos_embed_grid']`` (written with the checkpoint, the most reliable),
    ``src_grid`` (declared by the caller), then a square grid when ``num_patches`` is a perfect
    square (the stock mmpretrain convention, e.g. 224×224 ImageNet checkpoints). Both given and
    different is an error, as is any grid whose size is not ``num_patches``.

    Args:
        num_patches (int): patch positions in the checkpoint (``L`` minus extra tokens).
        src_grid (Sequence[int], optional): declared grid (h, w).
        meta (dict, optional): the checkpoint's ``meta``.
        context (str): names the checkpoint in error messages.

    Returns:
        tuple: the grid (h, w) and where it came from (for the load log).

    Raises:
        PretrainedCheckpointError: no grid can be resolved, or the given ones disagree.
    """
    candidates = []
    meta_grid = (meta or {}).get('pos_embed_grid')
    if meta_grid is not None:
        candidates.append((tuple(int(v) for v in meta_grid), "the checkpoint's meta"))
    if src_grid is not None:
        candidates.append((tuple(int(v) for v in src_grid), 'src_grid'))
    for grid, origin in candidates:
        if len(grid) != 2 or grid[0] * grid[1] != num_patches:
            raise PretrainedCheckpointError(
                f'{context}: pos_embed grid {grid} from {origin} has {math.prod(grid)} '
                f'positions but the checkpoint holds {num_patches}')
    if len(candidates) == 2 and candidates[0][0] != candidates[1][0]:
        raise PretrainedCheckpointError(
            f"{context}: the checkpoint's meta says pos_embed_grid={candidates[0][0]} but "
            f'src_grid={candidates[1][0]} was given; remove src_grid or fix it')
    if candidates:
        return candidates[0]
    side = math.isqrt(num_patches)
    if side * side == num_patches:
        return (side, side), 'a square grid (no grid given; stock mmpretrain convention)'
    raise PretrainedCheckpointError(
        f'{context}: cannot tell the patch grid of its pos_embed: {num_patches} positions are '
        f"not a square grid and neither the checkpoint's meta ('pos_embed_grid') nor src_grid "
        f'gives it (a SAIP checkpoint learned on the 256x128 anchor with patch 16 has (16, 8))')
