"""SAIPDataPreprocessor (saip_mm/models/data_preprocessor.py), tested beside the pipeline."""
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate, pseudo_collate

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import saip_mm  # noqa: F401  (registration: the file also runs on its own)
from saip_mm.models.data_preprocessor import SAIPDataPreprocessor

SHAPES = dict(g1=(3, 256, 128), g2=(3, 256, 128), locals=(7, 3, 128, 64), region=(3, 128, 64),
              reference=(3, 224, 224), instance_mask=(224, 224), roi_mask=(224, 224))


def sample(i: int) -> dict:
    inputs = {k: torch.full(s, float(i), dtype=torch.float64 if k == 'g1' else torch.float32)
              for k, s in SHAPES.items()}
    return dict(inputs=inputs, data_samples=DataSample(metainfo=dict(img_path=f'{i}.jpg')))


@pytest.mark.parametrize('collate', [pseudo_collate, default_collate])
def test_both_collate_forms_give_float_batches(collate):
    pre = MODELS.build(dict(type='SAIPDataPreprocessor'))
    out = pre(collate([sample(0), sample(1), sample(2)]), training=True)
    assert set(out) == {'inputs', 'data_samples'}
    for key, shape in SHAPES.items():
        batch = out['inputs'][key]
        assert batch.shape == (3, ) + shape and batch.dtype == torch.float32
        assert batch.device == torch.device('cpu')
        assert [batch[i].unique().item() for i in range(3)] == [0.0, 1.0, 2.0]  # order kept
    assert [s.img_path for s in out['data_samples']] == ['0.jpg', '1.jpg', '2.jpg']


def test_list_of_per_sample_dicts_is_stacked_too():
    pre = MODELS.build(dict(type='SAIPDataPreprocessor'))
    batch = dict(inputs=[sample(0)['inputs'], sample(1)['inputs']])
    out = pre(batch)
    assert out['inputs']['locals'].shape == (2, 7, 3, 128, 64)
    assert out['data_samples'] is None


def test_missing_view_is_named():
    pre = MODELS.build(dict(type='SAIPDataPreprocessor'))
    samples = [sample(0), sample(1)]
    for s in samples:
        del s['inputs']['instance_mask']
    for batch in (pseudo_collate(samples), default_collate(samples),
                  dict(inputs=[s['inputs'] for s in samples])):
        with pytest.raises(KeyError, match='instance_mask'):
            pre(batch)
    # Configurable views: without CSS the masks are not needed.
    pre = MODELS.build(dict(type='SAIPDataPreprocessor', view_keys=('g1', 'g2', 'locals')))
    assert set(pre(default_collate(samples))['inputs']) == {'g1', 'g2', 'locals'}


def test_plain_image_batches_are_stacked_flipped_to_rgb_and_normalised():
    """Online evaluation: PackInputs gives (3, H, W) uint8 BGR tensors per image."""
    pre = SAIPDataPreprocessor()
    bgr = torch.zeros(3, 4, 2, dtype=torch.uint8)
    bgr[0] = 10  # blue
    bgr[2] = 200  # red
    out = pre(dict(inputs=[bgr, bgr.clone()], data_samples=None))
    images = out['inputs']
    assert images.shape == (2, 3, 4, 2) and images.dtype == torch.float32
    # RGB order after the flip, ImageNet mean/std of the pipeline
    expected = torch.tensor([(200 - 123.675) / 58.395, (0 - 116.28) / 57.12,
                             (10 - 103.53) / 57.375])
    assert torch.allclose(images[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match='different sizes'):
        pre(dict(inputs=[bgr, torch.zeros(3, 5, 2, dtype=torch.uint8)]))


@pytest.mark.parametrize('field, value', [('std', [0, 0, 0]), ('std', [58.4, -1.0, 57.4]),
                                          ('std', [math.inf] * 3), ('mean', [math.nan, 0, 0])])
def test_a_normalisation_without_finite_images_is_refused_at_build(field, value):
    """A std of 0 made every evaluation image inf/NaN, and the demo then saved a "best"
    checkpoint on their features; the pipeline's own normalisation refused it already."""
    with pytest.raises(ValueError) as err:
        MODELS.build(dict(type='SAIPDataPreprocessor', **{field: value}))
    assert str(err.value).startswith(f'model.data_preprocessor.{field} must be finite numbers')
    assert repr(value) in str(err.value)


def test_the_demo_config_refuses_a_zero_std_from_the_command_line():
    """``--cfg-options 'model.data_preprocessor.std=[0,0,0]'`` on the demo config."""
    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / 'configs' / 'saip' /
                              'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'))
    cfg.merge_from_dict({'model.data_preprocessor.std': [0, 0, 0]})
    with pytest.raises(ValueError, match=r'model\.data_preprocessor\.std must be finite numbers '
                                         r'> 0 .*got \[0, 0, 0\]'):
        MODELS.build(cfg.model)
