"""The batched views: same outputs as the per-image pipeline, same distributions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import Compose, default_collate, pseudo_collate

from mmpretrain.registry import MODELS, TRANSFORMS
from saip_mm.datasets.transforms import (IMAGENET_MEAN, IMAGENET_STD, MultiPersonReference,
                                         PersonGlobalViews, PersonLocalViews)

SHAPES = dict(g1=(3, 256, 128), g2=(3, 256, 128), locals=(7, 3, 128, 64), region=(3, 128, 64),
              reference=(3, 224, 224), instance_mask=(224, 224), roi_mask=(224, 224))
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def compose(steps) -> Compose:
    """A pipeline built from mmpretrain's TRANSFORMS registry (where saip_mm registers)."""
    return Compose([TRANSFORMS.build(step) for step in steps])


def person_image(height=300, width=150, seed=0) -> np.ndarray:
    """A smooth coloured figure on a gradient: realistic statistics for jitter and blur."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    img = np.stack([80 + 100 * yy, 120 + 60 * xx, 160 - 80 * yy], -1)
    body = ((yy - 0.5) / 0.35)**2 + ((xx - 0.5) / 0.25)**2 <= 1
    img[body] = (200, 60, 40)
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def batch_of(img: np.ndarray, num: int, bg: np.ndarray = None) -> dict:
    """Collated inputs of PackSAIPImages for ``num`` copies of one image ((B, H, W, 3) uint8)."""
    pipeline = compose([dict(type='ResizeForBatchViews'), dict(type='PackSAIPImages')])
    bg = img if bg is None else bg
    samples = [pipeline(dict(img=img, ori_shape=img.shape[:2], bg_img=bg,
                             bg_ori_shape=bg.shape[:2])) for _ in range(num)]
    return default_collate(samples)


@pytest.mark.parametrize('collate', [default_collate, pseudo_collate])
def test_outputs_are_those_of_the_per_image_path(collate):
    img = person_image()
    per_image = compose([
        dict(type='PersonGlobalViews'), dict(type='PersonLocalViews'), dict(type='RegionView'),
        dict(type='MultiPersonReference'), dict(type='PackSAIPInputs')])
    np.random.seed(0)
    reference_batch = MODELS.build(dict(type='SAIPDataPreprocessor'))(
        default_collate([per_image(dict(img=img, bg_img=img)) for _ in range(2)]))['inputs']
    light = compose([dict(type='ResizeForBatchViews'), dict(type='PackSAIPImages')])
    torch.manual_seed(0)
    out = MODELS.build(dict(type='SAIPBatchViewsPreprocessor'))(
        collate([light(dict(img=img, bg_img=img)) for _ in range(2)]))
    inputs = out['inputs']
    assert set(inputs) == set(reference_batch) == set(SHAPES)
    for key, shape in SHAPES.items():
        assert inputs[key].shape == reference_batch[key].shape == (2, ) + shape, key
        assert inputs[key].dtype == reference_batch[key].dtype == torch.float32, key
    assert len(out['data_samples']) == 2
    assert out['data_samples'][0].region_interpolation == 'nearest'  # checked by SAIP
    # The masks are binary boxes of one patch each.
    for key in ('instance_mask', 'roi_mask'):
        assert set(inputs[key].unique().tolist()) == {0.0, 1.0}
        assert (inputs[key].sum((1, 2)) == 128 * 64).all()


def test_parameter_frequencies_and_ranges_are_the_per_image_ones():
    pre = MODELS.build(dict(type='SAIPBatchViewsPreprocessor'))
    reference = [*PersonGlobalViews().augmentations, PersonLocalViews().augmentation,
                 MultiPersonReference().augmentation]
    batched = [*pre.global_augs, pre.local_aug, pre.reference_aug]
    num = 6000
    torch.manual_seed(0)
    for ref, aug in zip(reference, batched):
        params = aug.sample_params(torch.full((num, ), 300), torch.full((num, ), 150))
        for key, prob in (('flip', ref.flip_prob), ('jitter', ref.jitter_prob),
                          ('gray', ref.gray_prob), ('blur', ref.blur_prob),
                          ('solarize', ref.solarize_prob)):
            # 4 standard errors of a Bernoulli mean at n = 6000: <= 0.026.
            assert abs(params[key].float().mean().item() - prob) < 0.026, (ref.size, key)
        b, c, s, h = ref.color_jitter
        low = torch.tensor([1 - b, 1 - c, 1 - s, -h])
        high = torch.tensor([1 + b, 1 + c, 1 + s, h])
        factors = params['factors']
        assert (factors >= low).all() and (factors <= high).all()
        assert torch.allclose(factors.mean(0), (low + high) / 2, atol=0.02)
        sigma = params['sigma']
        assert sigma.min() >= ref.blur_sigma[0] and sigma.max() <= ref.blur_sigma[1]
        assert abs(sigma.mean().item() - sum(ref.blur_sigma) / 2) < 0.03
        # Each jitter op comes first for a quarter of the views.
        first = torch.bincount(params['order'][:, 0], minlength=4).float() / num
        assert torch.allclose(first, torch.full((4, ), 0.25), atol=0.025)
    # The recipe's probabilities, per view (SAIP_METHOD.md section 2).
    assert [a.aug.blur_prob for a in batched] == [1.0, 0.1, 0.5, 0.1]
    assert [a.aug.solarize_prob for a in batched] == [0.0, 0.2, 0.0, 0.2]


def denormalized_mean(views: torch.Tensor) -> torch.Tensor:
    """Mean 0-255 RGB value of every view (N, 3)."""
    return (views * STD + MEAN).mean((-2, -1))


def test_pixel_statistics_of_the_two_paths_agree():
    img = person_image()
    num = 64
    np.random.seed(0)
    g1s, locals_ = [], []
    globals_ = PersonGlobalViews()
    local_views = PersonLocalViews(num_views=2)
    for _ in range(num):
        g1s.append(globals_(dict(img=img))['g1'])
        locals_.append(local_views(dict(img=img))['locals'])
    per_g1 = denormalized_mean(torch.stack(g1s))
    per_local = denormalized_mean(torch.cat(locals_))
    torch.manual_seed(0)
    inputs = MODELS.build(dict(type='SAIPBatchViewsPreprocessor',
                               local_views=dict(num_views=2)))(batch_of(img, num))['inputs']
    bat_g1 = denormalized_mean(inputs['g1'])
    bat_local = denormalized_mean(inputs['locals'].flatten(0, 1))
    # Mean colour and its spread over draws (jitter, grayscale, crops) agree to sampling
    # error: a per-view mean varies by about 30 levels, so the mean of 64 by about 4.
    for per, bat in ((per_g1, bat_g1), (per_local, bat_local)):
        assert (per.mean(0) - bat.mean(0)).abs().max() < 12
        assert ((per.std(0) - bat.std(0)).abs() < 0.3 * per.std(0)).all()
    # Sharpness (mean vertical gradient) of the crops themselves, photometric steps off: the
    # canvas keeps the image's own pixels, so the batched crops are as sharp as PIL's
    # (resizing every image to 256x128 first made them about 1.5x softer).
    plain = dict(jitter_prob=0.0, gray_prob=0.0, blur_prob=(0.0, 0.0), solarize_prob=(0.0, 0.0))
    np.random.seed(1)
    per_plain = torch.stack([PersonGlobalViews(**plain)(dict(img=img))['g1'] for _ in range(16)])
    torch.manual_seed(1)
    bat_plain = MODELS.build(dict(type='SAIPBatchViewsPreprocessor', global_views=plain))(
        batch_of(img, 16))['inputs']['g1']
    grad = lambda v: (v[..., 1:, :] - v[..., :-1, :]).abs().mean()  # noqa: E731
    assert abs(grad(per_plain) / grad(bat_plain) - 1) < 0.05


def test_region_reference_and_masks_follow_the_rules():
    img = person_image()
    bg = person_image(200, 300, seed=1)
    torch.manual_seed(0)
    pre = MODELS.build(dict(type='SAIPBatchViewsPreprocessor'))
    collated = batch_of(img, 3, bg)['inputs']
    assert collated['img'].dtype == collated['bg_img'].dtype == torch.uint8
    assert collated['img'].shape == (3, 384, 192, 3)  # channels last, as decoded
    for key in ('img', 'bg_img'):  # generate() takes (B, 3, H, W), any memory format
        collated[key] = collated[key].permute(0, 3, 1, 2)
    out = pre.generate(collated['img'], collated['img_hw'], collated['bg_img'],
                       collated['bg_img_hw'], collated['img_work_hw'], collated['bg_img_work_hw'])
    # The region view is exactly F.interpolate(g1, (128, 64)) (nearest, the reference's).
    assert torch.equal(out['region'], F.interpolate(out['g1'], size=(128, 64)))
    roi_box, instance_box = out['params']['roi_box'], out['params']['instance_box']
    assert (roi_box[:, 2] <= instance_box[:, 0]).all()
    for b in range(3):
        for key, box in (('roi_mask', roi_box[b]), ('instance_mask', instance_box[b])):
            x1, y1, x2, y2 = box.tolist()
            expected = torch.zeros(224, 224)
            expected[y1:y2, x1:x2] = 1
            assert torch.equal(out[key][b], expected), key
    # Blending checked at a pixel: the background view is rebuilt from its parameters.
    aug = pre.reference_aug
    background, _ = aug(collated['bg_img'], collated['bg_img_hw'], collated['bg_img_work_hw'],
                        params=out['params']['reference'], resample='loop',
                        photometric='opencv')  # what 'auto' picks on a CPU
    x1, y1 = roi_box[0, :2].tolist()
    i1, j1 = instance_box[0, :2].tolist()
    assert out['reference'][0, 1, y1 + 5, x1 + 7].item() == pytest.approx(
        0.7 * out['locals'][0, -1, 1, 5, 7].item() + 0.3 * background[0, 1, y1 + 5, x1 + 7].item(),
        abs=1e-5)
    assert out['reference'][0, 2, j1 + 100, i1 + 3].item() == pytest.approx(
        0.7 * out['region'][0, 2, 100, 3].item() + 0.3 * background[0, 2, j1 + 100, i1 + 3].item(),
        abs=1e-5)
    outside = torch.ones(224, 224, dtype=torch.bool)
    outside &= out['roi_mask'][0] == 0
    outside &= out['instance_mask'][0] == 0
    assert torch.equal(out['reference'][0][:, outside], background[0][:, outside])


def test_bicubic_region_and_matmul_resample():
    img = person_image()
    collated = batch_of(img, 2)['inputs']
    for key in ('img', 'bg_img'):
        collated[key] = collated[key].permute(0, 3, 1, 2).contiguous()  # channels first
    pre = MODELS.build(dict(type='SAIPBatchViewsPreprocessor', resize_mode='bicubic'))
    torch.manual_seed(0)
    sizes = (collated['img_work_hw'], collated['bg_img_work_hw'])
    loop = pre.generate(collated['img'], collated['img_hw'], collated['bg_img'],
                        collated['bg_img_hw'], *sizes)
    expected = F.interpolate(loop['g1'], size=(128, 64), mode='bicubic', antialias=True,
                             align_corners=False)
    assert torch.allclose(loop['region'], expected)
    pre.resample = 'matmul'
    torch.manual_seed(0)
    matmul = pre.generate(collated['img'], collated['img_hw'], collated['bg_img'],
                          collated['bg_img_hw'], *sizes)
    # Same parameters, the two resamplers agree to one level of 255 before the photometric
    # steps (a few levels after jitter/blur amplify it), in normalised units.
    for key in ('g1', 'g2', 'locals', 'reference'):
        assert (loop[key] - matmul[key]).abs().mean() < 0.01, key
    assert torch.equal(loop['roi_mask'], matmul['roi_mask'])


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match='resize_mode'):
        MODELS.build(dict(type='SAIPBatchViewsPreprocessor', resize_mode='area'))
    with pytest.raises(ValueError, match='resample'):
        MODELS.build(dict(type='SAIPBatchViewsPreprocessor', resample='grid'))
    with pytest.raises(ValueError, match='photometric'):
        MODELS.build(dict(type='SAIPBatchViewsPreprocessor', photometric='kornia'))
    with pytest.raises(ValueError, match='chunk_size'):
        MODELS.build(dict(type='SAIPBatchViewsPreprocessor', chunk_size=0))
    with pytest.raises(ValueError, match='blur_prob'):
        MODELS.build(dict(type='SAIPBatchViewsPreprocessor', global_views=dict(blur_prob=(1, ))))
    for group, field, value in (('global_views', 'std', [float('inf')] * 3),
                                ('local_views', 'std', [0, 0, 0]),
                                ('reference', 'mean', [float('nan'), 0, 0])):
        with pytest.raises(ValueError, match=rf'model\.data_preprocessor\.{group}\.{field} '
                                             r'must be finite numbers'):
            MODELS.build(dict(type='SAIPBatchViewsPreprocessor', **{group: {field: value}}))
    pre = MODELS.build(dict(type='SAIPBatchViewsPreprocessor'))
    batch = batch_of(person_image(), 1)
    with pytest.raises(KeyError, match='view `bg_img` is missing'):
        pre(dict(inputs={k: v for k, v in batch['inputs'].items() if k != 'bg_img'}))
    batch['inputs']['img'] = batch['inputs']['img'].float()
    with pytest.raises(ValueError, match='`img` must be'):
        pre(batch)


def test_light_pipeline_transforms_are_registered():
    assert TRANSFORMS.get('ResizeForBatchViews') is not None
    assert TRANSFORMS.get('PackSAIPImages') is not None


def test_dataset_with_the_light_pipeline_feeds_the_preprocessor(tmp_path):
    import cv2
    from mmpretrain.registry import DATASETS
    from torch.utils.data import DataLoader
    (tmp_path / 'people').mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / 'people' / f'p{i}.jpg'), person_image(200 + 40 * i, 90, i))
    dataset = DATASETS.build(dict(
        type='PersonImageDataset', data_root=str(tmp_path / 'people'),
        pipeline=[dict(type='LoadPersonImage', decode_size=(256, 256)),
                  dict(type='ResizeForBatchViews'), dict(type='PackSAIPImages')]))
    loader = DataLoader(dataset, batch_size=3, collate_fn=default_collate)
    batch = next(iter(loader))
    assert batch['inputs']['img'].shape == (3, 384, 192, 3)
    assert batch['inputs']['img_hw'].tolist() == [[200, 90], [240, 90], [280, 90]]
    assert torch.equal(batch['inputs']['img_work_hw'], batch['inputs']['img_hw'])
    inputs = MODELS.build(dict(type='SAIPBatchViewsPreprocessor'))(batch)['inputs']
    assert {k: tuple(v.shape[1:]) for k, v in inputs.items()} == SHAPES
