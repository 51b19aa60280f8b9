import torch

from saip_mm.models import CSRHead
from saip_mm.models.heads import patchify, unpatchify


def test_patchify_roundtrip_and_order():
    img = torch.arange(2 * 3 * 32 * 16, dtype=torch.float).view(2, 3, 32, 16)
    patches = patchify(img, 16)
    assert patches.shape == (2, 2, 16 * 16 * 3)
    # patch 1 is the lower 16x16 block; its first value is pixel (16, 0) of channel 0
    assert patches[0, 1, 0] == img[0, 0, 16, 0]
    assert patches[0, 0, 1] == img[0, 1, 0, 0]  # channels are the fastest axis
    torch.testing.assert_close(unpatchify(patches, (2, 1), 16), img)


def test_target_is_per_patch_normalised():
    head = CSRHead(in_channels=8, embed_dims=16, depth=1, num_heads=2)
    img = torch.randn(1, 3, 32, 16)
    target = head.construct_target(img)
    raw = patchify(img, 16)
    mean, var = raw.mean(-1, keepdim=True), raw.var(-1, keepdim=True)
    torch.testing.assert_close(target, (raw - mean) / torch.sqrt(var + 1e-6))
    assert torch.allclose(target.mean(-1), torch.zeros(1, 2), atol=1e-5)


def test_decoder_shapes_and_loss_only_on_removed_patches():
    torch.manual_seed(0)
    head = CSRHead(in_channels=8, embed_dims=16, depth=2, num_heads=2, anchor_grid=(4, 2))
    head.init_weights()
    grid = (5, 2)  # a rescaled view: pos embeddings resized from 4x2 to 5x2
    ids_keep = torch.tensor([[0, 3, 7], [1, 2, 9]])
    mask = torch.ones(2, 10).scatter_(1, ids_keep, 0.)
    tokens = torch.randn(2, 4, 8)
    pred = head(tokens, torch.randn(2, 8), ids_keep, grid)
    assert pred.shape == (2, 10, 16 * 16 * 3)
    images = torch.randn(2, 3, 80, 32)
    losses = head.loss(tokens, torch.randn(2, 8), ids_keep, mask, images)
    assert set(losses) == {'loss_csr'} and torch.isfinite(losses['loss_csr'])
    # Hand check: recompute the same prediction and average MSE over removed patches only.
    anchor = torch.randn(2, 8)
    pred = head(tokens, anchor, ids_keep, grid)
    target = head.construct_target(images)
    per_patch = ((pred - target) ** 2).mean(-1)
    expected = (per_patch * mask).sum() / mask.sum()
    torch.testing.assert_close(head.loss(tokens, anchor, ids_keep, mask, images)['loss_csr'],
                               expected)


def test_defaults_are_the_reference_recipe():
    head = CSRHead()
    assert head.embed.in_features == 192 and head.embed.out_features == 512
    assert len(head.blocks) == 8 and head.blocks[0].attn.num_heads == 16
    assert head.pos_embed.shape == (1, 1 + 128, 512)
    assert head.pred.out_features == 16 * 16 * 3


def test_loss_names_a_mask_that_does_not_match_the_kept_tokens():
    import pytest
    head = CSRHead(in_channels=8, embed_dims=16, depth=1, num_heads=2, anchor_grid=(2, 1))
    ids_keep = torch.tensor([[0], [1]])
    mask = torch.tensor([[0., 1.], [0., 0.]])  # sample 1 removes nothing
    with pytest.raises(ValueError, match=r'remove L - n_keep = 1 patches, got \[1, 0\]'):
        head.loss(torch.randn(2, 2, 8), torch.randn(2, 8), ids_keep, mask,
                  torch.randn(2, 3, 32, 16))
