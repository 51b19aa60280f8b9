"""Replaying batched SAIP views through the per-image path, on the parameters the batch drew.

``SAIPBatchViewsPreprocessor`` draws every view's parameters with torch and builds the views
with tensor ops; the per-image transforms (``saip_mm/datasets/transforms``) draw theirs with
NumPy and build them with PIL. To check which drawn parameters reach which view, the tests
record what each batched view group drew (:func:`spy_draws`) and feed exactly those draws to
the per-image ``ViewAugmentation`` (:func:`replay_view`): the crop box is passed in, and the
photometric draws are scripted into NumPy's generator. A view made from the wrong parameters
(another view's crop, flip, jitter, ...) then differs from its replay by tens of levels.
"""
import contextlib
from typing import Dict, List, Sequence
from unittest import mock

import numpy as np
import torch
from torch import Tensor

from saip_mm.datasets.transforms import IMAGENET_STD

STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
ROLES = ('g1', 'g2', 'locals', 'reference')
# Mean |batched - per-image| in 0-255 levels for a view and its replay on the same draws. The
# two paths agree to about a level (PIL rounds to uint8 after each step, the tensor ops do not;
# hue and blur are computed differently); a view made from other draws is off by tens.
SAME_DRAWS_LEVELS = 4.0


def spy_draws(pre) -> Dict[str, List[Dict[str, Tensor]]]:
    """Record what each view group of a ``SAIPBatchViewsPreprocessor`` draws, per call.

    Wraps ``sample_params`` of the preprocessor's g1, g2, local and reference augmentations
    (instance attributes, so only this preprocessor is affected).

    Returns:
        dict: role -> list of the parameter dicts that group drew, one per chunk.
    """
    record = {role: [] for role in ROLES}
    groups = (pre.global_augs[0], pre.global_augs[1], pre.local_aug, pre.reference_aug)
    for role, aug in zip(ROLES, groups):
        def sample(heights, widths, _role=role, _draw=aug.sample_params):
            params = _draw(heights, widths)
            record[_role].append(params)
            return params

        aug.sample_params = sample
    return record


def cat_draws(chunks: Sequence[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    """The per-chunk parameter dicts of one group, concatenated in batch order."""
    return {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]}


class ScriptedDraws:
    """Stands for NumPy's ``rand``/``permutation``/``uniform``, answering from a script."""

    def __init__(self, script):
        self.script = list(script)

    def _next(self, kind):
        assert self.script, f'the per-image path drew an unexpected {kind}'
        expected, value = self.script.pop(0)
        assert expected == kind, f'the per-image path drew {kind} where {expected} was due'
        return value

    def rand(self, *shape):
        assert not shape
        return self._next('rand')

    def permutation(self, n):
        assert n == 4
        return self._next('permutation')

    def uniform(self, low=0.0, high=1.0, size=None):
        assert size is None
        value = self._next('uniform')
        assert low - 1e-6 <= value <= high + 1e-6, (value, low, high)
        return value

    def randint(self, *args, **kwargs):
        raise AssertionError('the crop box is given: the per-image path must not draw one')


def _script(aug, p: dict) -> list:
    """NumPy draws that make ``ViewAugmentation.photometric`` take the decisions in ``p``.

    Mirrors the per-image draw order: flip, jitter (then the op order and each enabled op's
    factor in that order), grayscale, blur (then sigma), solarise; a step of probability 0
    draws nothing. ``rand() < prob`` is made true with 0.0 and false with 1.0.
    """
    def decide(flag):
        return ('rand', 0.0 if flag else 1.0)

    script = []
    if aug.flip_prob > 0:
        script.append(decide(p['flip']))
    if aug.jitter_prob > 0:
        script.append(decide(p['jitter']))
        if p['jitter']:
            script.append(('permutation', np.array(p['order'])))
            script += [('uniform', p['factors'][op]) for op in p['order']
                       if aug.color_jitter[op] > 0]
    else:
        assert not p['jitter']
    if aug.gray_prob > 0:
        script.append(decide(p['gray']))
    if aug.blur_prob > 0:
        script.append(decide(p['blur']))
        if p['blur']:
            script.append(('uniform', p['sigma']))
    if aug.solarize_prob > 0:
        script.append(decide(p['solarize']))
    return script


def replay_view(aug, img: np.ndarray, params: Dict[str, Tensor], index: int) -> Tensor:
    """The per-image ``ViewAugmentation`` ``aug`` applied to ``img`` with view ``index``'s draws.

    Args:
        aug (ViewAugmentation): the per-image view (from PersonGlobalViews, PersonLocalViews or
            MultiPersonReference).
        img (np.ndarray): (H, W, 3) uint8 RGB, the original image.
        params (dict): parameters of a batched view group (``sample_params`` output).
        index (int): which view.

    Returns:
        Tensor: the normalised view (3, h, w).
    """
    p = {key: value[index].tolist() for key, value in params.items()}
    scripted = ScriptedDraws(_script(aug, p))
    with contextlib.ExitStack() as stack:
        for name in ('rand', 'permutation', 'uniform', 'randint'):
            stack.enter_context(mock.patch.object(np.random, name, getattr(scripted, name)))
        view, box = aug(img, box=tuple(p['boxes']))
    assert box == tuple(p['boxes'])
    assert not scripted.script, f'the per-image path left draws unused: {scripted.script}'
    return view


def levels(a: Tensor, b: Tensor) -> float:
    """Mean |a - b| of two normalised (3, h, w) views, in 0-255 levels."""
    return ((a - b) * STD).abs().mean().item()


def check_views_follow_their_draws(inputs: Dict[str, Tensor], record: dict, images: list,
                                   bg_images: list, transforms: dict) -> Dict[str, float]:
    """Assert that every batched view is the per-image view of the draws made for it.

    Checks, per image: g1, g2 and each local crop equal the per-image replays of their own
    group's draws (within :data:`SAME_DRAWS_LEVELS`) and not those of the other views (their
    replays differ by more); the region view is g1 resized; the reference is the per-image
    background replay with the last local crop and the region view blended in.

    Args:
        inputs (dict): the preprocessor's output views (B, ...).
        record (dict): :func:`spy_draws`'s record for this batch.
        images (list): the B person images (H, W, 3) uint8, as decoded.
        bg_images (list): the B background images.
        transforms (dict): ``global`` (PersonGlobalViews), ``local`` (PersonLocalViews) and
            ``reference`` (MultiPersonReference) built with the preprocessor's arguments.

    Returns:
        dict: the largest own-replay difference and the smallest other-replay difference seen.
    """
    import torch.nn.functional as F
    num = len(images)
    num_local = inputs['locals'].shape[1]
    for role in ROLES:
        # One draw per chunk and group: a group that drew nothing got another's parameters.
        assert record[role], f'{role}: its augmentation drew no parameters'
    draws = {role: cat_draws(record[role]) for role in ROLES}
    for role, count in (('g1', num), ('g2', num), ('locals', num * num_local),
                        ('reference', num)):
        assert len(draws[role]['boxes']) == count, (role, len(draws[role]['boxes']))
    glob = transforms['global'].augmentations
    loc = transforms['local'].augmentation
    ref = transforms['reference']
    worst_own, best_other = 0.0, float('inf')
    for b in range(num):
        img = images[b]
        views = [('g1', inputs['g1'][b], replay_view(glob[0], img, draws['g1'], b)),
                 ('g2', inputs['g2'][b], replay_view(glob[1], img, draws['g2'], b))]
        views += [(f'local {j}', inputs['locals'][b, j],
                   replay_view(loc, img, draws['locals'], b * num_local + j))
                  for j in range(num_local)]
        boxes = [tuple(draws['g1']['boxes'][b].tolist()), tuple(draws['g2']['boxes'][b].tolist())]
        boxes += [tuple(draws['locals']['boxes'][b * num_local + j].tolist())
                  for j in range(num_local)]
        # Every view of the image has a crop of its own.
        assert len(set(boxes)) == len(boxes), f'image {b}: views share a crop box: {boxes}'
        for name, view, own in views:
            diff = levels(view, own)
            assert diff < SAME_DRAWS_LEVELS, (
                f'image {b}: {name} is {diff:.1f} levels from the per-image view of its own '
                f'draws')
            worst_own = max(worst_own, diff)
            for other, _, replay in views:
                if other != name and replay.shape == view.shape:
                    away = levels(view, replay)
                    assert away > 2 * SAME_DRAWS_LEVELS, (
                        f'image {b}: {name} is also the per-image view of {other}\'s draws '
                        f'({away:.1f} levels)')
                    best_other = min(best_other, away)
        # The region view is g1 resized (RegionView's 'nearest', F.interpolate's default).
        region = inputs['region'][b]
        assert torch.equal(region, F.interpolate(inputs['g1'][b:b + 1],
                                                 size=tuple(region.shape[-2:]))[0])
        # The reference: its own background draws, the last local crop in the ROI box and the
        # region view in the instance box (MultiPersonReference.blend).
        background = replay_view(ref.augmentation, bg_images[b], draws['reference'], b)
        expected = background.clone()
        for key, patch in (('roi_mask', inputs['locals'][b, -1]), ('instance_mask', region)):
            rows, cols = inputs[key][b].nonzero(as_tuple=True)
            box = (cols.min().item(), rows.min().item(), cols.max().item() + 1,
                   rows.max().item() + 1)
            assert (box[3] - box[1], box[2] - box[0]) == tuple(patch.shape[-2:]), key
            ref.blend(expected, patch, box)
        diff = levels(inputs['reference'][b], expected)
        assert diff < SAME_DRAWS_LEVELS, f'image {b}: reference is {diff:.1f} levels off'
        worst_own = max(worst_own, diff)
    return dict(worst_own=worst_own, best_other=best_other)


def textured_person(height: int, width: int, seed: int) -> np.ndarray:
    """An (H, W, 3) uint8 image with structure at every scale: a gradient, coloured blocks and
    pixel noise, so that two different crops (or flips) of it differ by tens of levels."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    img = np.stack([60 + 120 * yy, 90 + 100 * xx, 200 - 120 * yy * xx], -1)
    for _ in range(12):
        y, x = rng.randint(0, height - 8), rng.randint(0, width - 8)
        h, w = rng.randint(8, height // 3), rng.randint(8, width // 2)
        img[y:y + h, x:x + w] = rng.randint(0, 256, 3)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
