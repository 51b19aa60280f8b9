"""Which drawn parameters reach which batched view (SAIPBatchViewsPreprocessor).

Each view of a batch is compared with the per-image path's view (PersonGlobalViews,
PersonLocalViews, MultiPersonReference) built from the very parameters the batched view group
drew for it; see batch_views_testlib.py for how the draws are replayed.
"""
import pytest
import torch
from mmengine.dataset import default_collate

from batch_views_testlib import (ROLES, check_views_follow_their_draws, spy_draws,  # noqa: I100
                                 textured_person)
from mmpretrain.registry import MODELS, TRANSFORMS
from saip_mm.datasets.transforms import MultiPersonReference, PersonGlobalViews, PersonLocalViews


def light_batch(images, bg_images):
    """Collated ResizeForBatchViews + PackSAIPImages outputs, as the DataLoader gives them."""
    steps = [TRANSFORMS.build(dict(type='ResizeForBatchViews')),
             TRANSFORMS.build(dict(type='PackSAIPImages'))]
    samples = []
    for img, bg in zip(images, bg_images):
        results = dict(img=img, bg_img=bg)
        for step in steps:
            results = step(results)
        samples.append(results)
    return default_collate(samples)


@pytest.mark.parametrize('resample,photometric', [('auto', 'auto'), ('matmul', 'torch')])
def test_each_view_is_the_per_image_view_of_its_own_draws(resample, photometric):
    """Catches: g2 built as a copy of g1 (g2 is then 59 levels from the per-image view of
    g2's draws); g2 built with g1's drawn parameters or with g1's augmentation (g2's group then
    draws nothing, and g1 and g2 would share a crop box). The same checks fail a local crop or
    the reference made from another view's draws or another image of the batch.

    ('auto', 'auto') is what a CPU runs (loop + OpenCV), ('matmul', 'torch') what a GPU runs.
    """
    # Three different images of different sizes (all fit the 384x192 canvas, so the batched
    # crops read the images' own pixels), two chunks: chunk boundaries are crossed.
    images = [textured_person(300, 150, 0), textured_person(236, 104, 1),
              textured_person(180, 90, 2)]
    bg_images = [textured_person(200, 300, 3), textured_person(260, 260, 4),
                 textured_person(150, 220, 5)]
    pre = MODELS.build(dict(type='SAIPBatchViewsPreprocessor', chunk_size=2, resample=resample,
                            photometric=photometric))
    record = spy_draws(pre)
    torch.manual_seed(0)
    out = pre(light_batch(images, bg_images))
    # Each group drew once per chunk for its own views.
    assert {role: len(record[role]) for role in ROLES} == dict.fromkeys(ROLES, 2)
    # The per-image transforms with the preprocessor's (default: the recipe's) arguments.
    transforms = {'global': PersonGlobalViews(), 'local': PersonLocalViews(),
                  'reference': MultiPersonReference()}
    stats = check_views_follow_their_draws(out['inputs'], record, images, bg_images, transforms)
    # g1's recipe (always blurred, never solarised) holds for the draws that made g1.
    assert torch.cat([c['blur'] for c in record['g1']]).all()
    assert not torch.cat([c['solarize'] for c in record['g1']]).any()
    # The margin: a view is ~2 levels from its own draws' replay, ~28+ from any other's.
    assert stats['best_other'] > 5 * stats['worst_own'], stats
