import pytest
import torch

from mmpretrain.registry import TRANSFORMS
from mmpretrain.structures import DataSample

KEYS = ('g1', 'g2', 'locals', 'region', 'reference', 'instance_mask', 'roi_mask')


def views() -> dict:
    return dict(g1=torch.zeros(3, 256, 128), g2=torch.ones(3, 256, 128),
                locals=torch.zeros(7, 3, 128, 64), region=torch.zeros(3, 128, 64),
                reference=torch.zeros(3, 224, 224), instance_mask=torch.zeros(224, 224),
                roi_mask=torch.zeros(224, 224))


def test_pack_puts_views_in_inputs_and_metadata_in_the_data_sample():
    pack = TRANSFORMS.build(dict(type='PackSAIPInputs'))
    results = dict(views(), img_path='a.jpg', bg_img_path='b.jpg', roi_box=(0, 1, 64, 129),
                   instance_box=(100, 2, 164, 130), img=object())
    out = pack(results)
    assert set(out) == {'inputs', 'data_samples'}
    assert tuple(out['inputs']) == KEYS
    assert out['inputs']['g2'] is results['g2']
    sample = out['data_samples']
    assert isinstance(sample, DataSample)
    assert sample.img_path == 'a.jpg' and sample.bg_img_path == 'b.jpg'
    assert sample.roi_box == (0, 1, 64, 129) and sample.instance_box == (100, 2, 164, 130)


def test_pack_names_a_missing_view():
    results = views()
    del results['roi_mask']
    with pytest.raises(KeyError, match='roi_mask'):
        TRANSFORMS.build(dict(type='PackSAIPInputs'))(results)
    # A recipe without CSS packs fewer views.
    out = TRANSFORMS.build(dict(type='PackSAIPInputs', input_keys=('g1', 'g2')))(results)
    assert tuple(out['inputs']) == ('g1', 'g2')
