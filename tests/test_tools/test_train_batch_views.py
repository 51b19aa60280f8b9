"""tools/train.py with the batched-views config's views: every view SAIP trains on is the
per-image view of the parameters drawn for it, and g1, g2 and the local crops are distinct."""
import importlib.util
import textwrap
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

ROOT = Path(__file__).resolve().parents[2]
MICRO = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'
BATCHVIEWS = (ROOT / 'configs' / 'saip' /
              'saip_vit-tiny-p16_8xb256-amp-batchviews-coslr-300e_lup1m-256x128.py')

_spec = importlib.util.spec_from_file_location(
    'saip_batch_views_testlib', ROOT / 'tests' / 'test_models' / 'batch_views_testlib.py')
testlib = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(testlib)


@HOOKS.register_module()
class _BatchViewsSpyHook(Hook):
    """Records, per training iteration, the uint8 batch, what each view group drew, the views
    the preprocessor made and the views SAIP's loss received."""
    batches = []

    def before_train(self, runner):
        _BatchViewsSpyHook.batches = []
        model = runner.model
        pre = model.data_preprocessor
        record = testlib.spy_draws(pre)
        forward, loss = pre.forward, model.loss

        def spy_forward(data, training=False):
            start = {role: len(record[role]) for role in testlib.ROLES}
            out = forward(data, training)
            _BatchViewsSpyHook.batches.append(dict(
                batch=data['inputs'], views=out['inputs'],
                draws={role: record[role][start[role]:] for role in testlib.ROLES}))
            return out

        def spy_loss(inputs, data_samples=None, **kwargs):
            _BatchViewsSpyHook.batches[-1]['loss_inputs'] = inputs
            return loss(inputs, data_samples, **kwargs)

        # Instance attributes: nn.Module.__call__ and BaseModel.forward look them up first.
        pre.forward, model.loss = spy_forward, spy_loss


def _images(batch, key):
    """The decoded images of a collated PackSAIPImages batch, cut out of their canvases."""
    canvases = batch[key]
    out = []
    for b in range(len(canvases)):
        h, w = (int(v) for v in batch[f'{key}_work_hw'][b])
        # No image was shrunk into its canvas: its crops are those of the per-image path.
        assert [h, w] == [int(v) for v in batch[f'{key}_hw'][b]]
        out.append(canvases[b][:h, :w].numpy())
    return out


def test_train_py_views_follow_their_own_draws(train_tool, person_folder, tmp_path):
    """Two iterations of tools/train.py (micro model, the batched-views config's pipeline and
    SAIPBatchViewsPreprocessor with its view arguments; 3 local crops for the micro model's
    n_local 4). Catches: g2 built as a copy of g1, g2 built with g1's draws or g1's
    augmentation, locals or reference fed another group's draws, and views that reach SAIP's
    loss other than the preprocessor's."""
    real = Config.fromfile(str(BATCHVIEWS))
    pre = real.model.data_preprocessor.to_dict()
    assert pre['type'] == 'SAIPBatchViewsPreprocessor'
    pre['local_views']['num_views'] = 3
    pipeline = [step.to_dict() for step in real.train_pipeline]
    assert [step['type'] for step in pipeline] == [
        'LoadPersonImage', 'ResizeForBatchViews', 'PackSAIPImages']
    config = tmp_path / 'batchviews_micro.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = {str(MICRO)!r}
        model = dict(data_preprocessor=dict(_delete_=True, **{pre!r}))
        train_dataloader = dict(dataset=dict(pipeline={pipeline!r}))
        custom_hooks = [dict(type='SAIPTeacherHook'), dict(type='_BatchViewsSpyHook')]
        train_cfg = dict(max_iters=2)
        default_hooks = dict(checkpoint=dict(interval=2))
    '''))
    work = tmp_path / 'work'
    train_tool.main([str(config), '--work-dir', str(work), '--cfg-options',
                     f'train_dataloader.dataset.data_root={person_folder}',
                     f'experiment_name={tmp_path.name}'])
    batches = _BatchViewsSpyHook.batches
    assert len(batches) == 2
    global_args, local_args, ref_args = (pre['global_views'], pre['local_views'],
                                         pre['reference'])
    from saip_mm.datasets.transforms import (MultiPersonReference, PersonGlobalViews,
                                             PersonLocalViews)
    transforms = {'global': PersonGlobalViews(**global_args),
                  'local': PersonLocalViews(**local_args),
                  'reference': MultiPersonReference(**ref_args)}
    for seen in batches:
        views = seen['views']
        # SAIP's loss trains on exactly the preprocessor's views.
        assert seen['loss_inputs'] is views
        assert views['g1'].shape == (2, 3, 256, 128) and views['locals'].shape[:2] == (2, 3)
        testlib.check_views_follow_their_draws(
            views, seen['draws'], _images(seen['batch'], 'img'),
            _images(seen['batch'], 'bg_img'), transforms)
    # The second iteration drew new parameters (the generator is not re-seeded per batch).
    first, second = (torch.cat([c['boxes'] for c in b['draws']['g1']]) for b in batches)
    assert not torch.equal(first, second)
    assert (work / 'iter_2.pth').is_file()
