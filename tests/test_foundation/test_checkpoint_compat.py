"""Runner checkpoints load with weights_only=True after ``import saip_mm``; nothing else does."""
import collections
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.registry import DefaultScope
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.visualization import Visualizer
from torch.utils.data import Dataset

import saip_mm
from saip_mm.utils.checkpoint_compat import checkpoint_safe_globals


class _LinearModel(BaseModel):
    """Smallest model the Runner trains: y = w.x + b with an L2 loss."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        outputs = self.linear(inputs)  # (B, 1); default_collate already stacked the batch
        if mode == 'loss':
            return dict(loss=(outputs - labels).pow(2).mean())
        return outputs


class _PointsDataset(Dataset):
    metainfo = dict(classes=('point', ))  # the Runner copies it into meta['dataset_meta']

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=torch.full((2, ), float(index)), labels=torch.ones(1))


class NotAllowListed:
    """Any class nobody allow-listed: it must keep failing to load."""

    def __init__(self) -> None:
        self.payload = 1


class _GetattrOnOtherClass:
    """Pickles as getattr(OrderedDict, 'fromkeys'): the pattern our getattr stand-in must refuse."""

    def __reduce__(self):
        return getattr, (collections.OrderedDict, 'fromkeys')


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory) -> str:
    """A checkpoint written by a real mmengine Runner after 3 iterations (AdamW, warm-up+cosine)."""
    work_dir = str(tmp_path_factory.mktemp('compat_runner'))
    # The Runner makes its scope, message hub and visualizer the current global instances;
    # put the previous ones back so later tests in this process do not resolve types in
    # the 'mmengine' scope or read this run's iteration counter.
    saved = {cls: cls._instance_dict.copy() for cls in (DefaultScope, MessageHub, Visualizer)}
    try:
        _train_linear_model(work_dir)
    finally:
        for cls, instances in saved.items():
            cls._instance_dict = instances
    return os.path.join(work_dir, 'iter_3.pth')


def _train_linear_model(work_dir: str) -> None:
    runner = Runner(
        model=_LinearModel(),
        work_dir=work_dir,
        experiment_name='test_checkpoint_compat',
        train_dataloader=dict(
            dataset=_PointsDataset(), sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=2, end=4)],
        train_cfg=dict(by_epoch=False, max_iters=3),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False)),
        randomness=dict(seed=0),
        default_scope='mmengine')
    runner.train()


@pytest.mark.parametrize('weights_only', [None, True], ids=['torch-default', 'explicit'])
def test_runner_checkpoint_loads_weights_only(runner_checkpoint, weights_only):
    kwargs = {} if weights_only is None else dict(weights_only=True)
    ckpt = torch.load(runner_checkpoint, **kwargs)
    assert ckpt['meta']['iter'] == 3
    assert ckpt['meta']['dataset_meta'] == dict(classes=('point', ))
    losses = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(losses, HistoryBuffer)
    values, counts = losses.data
    assert values.dtype == np.float64 and counts.tolist() == [1, 1, 1]
    assert losses.mean() == pytest.approx(values.mean())  # statistics methods came back
    assert {float(s['step']) for s in ckpt['optimizer']['state'].values()} == {3.0}
    assert [s['_global_step'] for s in ckpt['param_schedulers']] == [3, 3]


def test_mmengine_load_checkpoint_path(runner_checkpoint):
    """load_from / Pretrained init go through mmengine's own torch.load call."""
    model = _LinearModel()
    ckpt = load_checkpoint(model, runner_checkpoint, map_location='cpu')
    assert torch.equal(model.linear.weight, ckpt['state_dict']['linear.weight'])


def test_registration_is_idempotent():
    before = len(torch.serialization.get_safe_globals())
    saip_mm.register_checkpoint_safe_globals()
    saip_mm.register_checkpoint_safe_globals()
    assert len(torch.serialization.get_safe_globals()) == before
    registered = set(torch.serialization.get_safe_globals())
    assert set(checkpoint_safe_globals()) <= registered


def test_unlisted_class_still_fails(tmp_path):
    path = str(tmp_path / 'not_allowed.pth')
    torch.save(dict(weight=torch.ones(1), extra=NotAllowListed()), path)
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError, match='NotAllowListed'):
        torch.load(path, weights_only=True)


def test_getattr_stand_in_refuses_other_attributes(tmp_path):
    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(fn=_GetattrOnOtherClass()), path)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(path)


def test_object_arrays_still_fail(tmp_path):
    path = str(tmp_path / 'object_array.pth')
    torch.save(dict(values=np.array([1, 'one'], dtype=object)), path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
