"""The whole SAIP data path: dataset -> pipeline -> DataLoader workers -> data preprocessor."""
import pickle
import shutil
from functools import partial

import numpy as np
import torch
from mmengine.dataset import default_collate, pseudo_collate, worker_init_fn
from torch.utils.data import DataLoader

from mmpretrain.registry import DATASETS, MODELS

PIPELINE = [
    dict(type='LoadPersonImage'),
    dict(type='PersonGlobalViews'),
    dict(type='PersonLocalViews'),
    dict(type='RegionView'),
    dict(type='MultiPersonReference'),
    dict(type='PackSAIPInputs'),
]
SHAPES = dict(g1=(3, 256, 128), g2=(3, 256, 128), locals=(7, 3, 128, 64), region=(3, 128, 64),
              reference=(3, 224, 224), instance_mask=(224, 224), roi_mask=(224, 224))


def build_dataset(tmp_path, make_images):
    # Four copies of one person: any difference between samples comes from the augmentation.
    first = make_images(tmp_path / 'people', ['p0.png'], 64, 28)[0]
    for i in range(1, 4):
        shutil.copy(first, tmp_path / 'people' / f'p{i}.png')
    make_images(tmp_path / 'scenes', ['s0.jpg', 's1.jpg'], 40, 60)
    return DATASETS.build(dict(type='PersonImageDataset', data_root=str(tmp_path / 'people'),
                               background=str(tmp_path / 'scenes'), pipeline=PIPELINE))


def test_one_sample_has_every_view(tmp_path, make_images):
    dataset = build_dataset(tmp_path, make_images)
    np.random.seed(0)
    sample = dataset[0]
    assert {k: tuple(v.shape) for k, v in sample['inputs'].items()} == SHAPES
    meta = sample['data_samples']
    assert meta.img_path.endswith('p0.png') and '/scenes/s' in meta.bg_img_path
    assert meta.roi_box[2] <= meta.instance_box[0]
    # The pickled dataset (what a spawned worker receives) yields the same sample.
    clone = pickle.loads(pickle.dumps(dataset))
    np.random.seed(0)
    again = clone[0]
    assert all(torch.equal(sample['inputs'][k], again['inputs'][k]) for k in SHAPES)


def test_dataloader_with_two_workers_feeds_the_preprocessor(tmp_path, make_images):
    dataset = build_dataset(tmp_path, make_images)
    preprocessor = MODELS.build(dict(type='SAIPDataPreprocessor'))

    def run(collate_fn, batch_size):
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=2, shuffle=False,
                            collate_fn=collate_fn,
                            worker_init_fn=partial(worker_init_fn, num_workers=2, rank=0,
                                                   seed=0))
        return [preprocessor(batch) for batch in loader]

    batches = run(pseudo_collate, 2)
    assert len(batches) == 2
    for batch in batches:
        for key, shape in SHAPES.items():
            assert batch['inputs'][key].shape == (2, ) + shape
        assert len(batch['data_samples']) == 2

    # Batches of one: sample 0 comes from worker 0, sample 1 from worker 1. The images are
    # identical, so different views prove that each worker's NumPy generator was seeded apart.
    singles = run(default_collate, 1)
    assert [b['inputs']['g1'].shape for b in singles] == [(1, 3, 256, 128)] * 4
    assert not torch.equal(singles[0]['inputs']['g1'], singles[1]['inputs']['g1'])
    # Same seed, same data: the run is reproducible.
    again = run(default_collate, 1)
    assert all(torch.equal(a['inputs'][k], b['inputs'][k])
               for a, b in zip(singles, again) for k in SHAPES)
