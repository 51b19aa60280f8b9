import torch
import torch.nn.functional as F

from saip_mm.models.utils import anchor_consistent_mask


def _anchor_mask(seed, batch, n_anchor=128, n_keep=32):
    # Replays the function's first random draw: the mask it draws on the anchor grid.
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(batch, n_anchor, generator=g).argsort(1)
    mask = torch.ones(batch, n_anchor)
    mask.scatter_(1, order[:, :n_keep], 0.)
    return mask


def test_visible_count_is_exact_and_regions_match():
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        ids_keep, mask = anchor_consistent_mask(4, (16, 8), (20, 10), 0.75, generator=g)
        assert ids_keep.shape == (4, 50)  # floor(200 * 0.25)
        assert (mask.sum(1) == 150).all()
        assert (ids_keep.diff(dim=1) > 0).all()  # grid order, no repeats
        assert (mask.gather(1, ids_keep) == 0).all()
        # The anchor mask carried to the 20x10 grid: same image regions at both scales.
        up = F.interpolate(_anchor_mask(seed, 4).view(4, 1, 16, 8), size=(20, 10),
                           mode='nearest').flatten(1)
        for b in range(4):
            visible_up = (up[b] == 0).nonzero().flatten()
            kept = set(ids_keep[b].tolist())
            if len(visible_up) >= 50:  # trimmed: every kept token lies in a visible region
                assert kept <= set(visible_up.tolist())
            else:  # topped up: every visible-region token is kept
                assert set(visible_up.tolist()) <= kept


def test_same_grid_keeps_the_anchor_mask():
    g = torch.Generator().manual_seed(3)
    _, mask = anchor_consistent_mask(2, (16, 8), (16, 8), 0.75, generator=g)
    assert torch.equal(mask, _anchor_mask(3, 2))
