"""RandomStateHook: 4 iterations straight and 2 + --resume 2 give bit-identical SAIP weights, in
one process and on every rank of two."""
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from saip_mm.engine.hooks.random_state_hook import RandomStateHook, get_rng_state, set_rng_state
from saip_testlib import LogRecords, write_micro_4iter_config

ROOT = Path(__file__).resolve().parents[2]
MICRO = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'


def _draws():
    return (random.random(), random.gauss(0, 1), np.random.rand(3), np.random.randn(),
            torch.rand(4))


def test_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian (gauss_next) in the Python state
    np.random.randn()  # and one in NumPy's (has_gauss)
    state = get_rng_state()
    expected = _draws()
    torch.save(dict(rng_state=state), tmp_path / 'ckpt.pth')
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(torch.load(tmp_path / 'ckpt.pth')['rng_state'])  # weights_only=True
    got = _draws()
    assert got[:2] == expected[:2]
    assert np.array_equal(got[2], expected[2]) and got[3] == expected[3]
    assert torch.equal(got[4], expected[4])


def _train(train_tool, config, work, data_root, *extra):
    """``tools/train.py CONFIG --work-dir WORK [extra]`` in this process."""
    train_tool.main([str(config), '--work-dir', str(work), *extra, '--cfg-options',
                     f'train_dataloader.dataset.data_root={data_root}'])


@pytest.fixture(scope='module', autouse=True)
def _undo_deterministic():
    """randomness.deterministic=True switches torch to deterministic algorithms globally."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope='module')
def four_iterations(tmp_path_factory, person_folder, train_tool):
    """One 4-iteration run with a checkpoint after iteration 2 (the 'interrupted' state)."""
    tmp = tmp_path_factory.mktemp('bitexact')
    # Cosine lr and momentum over 4 iterations, the CSR masks, rescale factors and
    # augmentations all draw random numbers: every one must continue where it stopped.
    config = write_micro_4iter_config(tmp / 'saip_micro_4iter.py')
    straight = tmp / 'straight'
    _train(train_tool, config, straight, person_folder)
    return dict(config=config, straight=straight, tmp=tmp, data=person_folder, tool=train_tool)


def _log_text(work) -> str:
    logs = sorted(work.glob('*/*.log'))
    assert len(logs) == 1, logs
    return logs[0].read_text()


def _assert_all_equal(a: dict, b: dict, what: str):
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f'{what}: {key} differs'


def test_resume_is_bit_exact(four_iterations):
    run = four_iterations
    resumed = run['tmp'] / 'resumed'
    _train(run['tool'], run['config'], resumed, run['data'], '--resume',
           str(run['straight'] / 'iter_2.pth'))
    log = _log_text(resumed)
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Random generator states from the checkpoint are restored after the 2' in log

    half = torch.load(run['straight'] / 'iter_2.pth')
    assert set(half['rng_state']) >= {'python', 'numpy', 'torch'}
    a = torch.load(run['straight'] / 'iter_4.pth')
    b = torch.load(resumed / 'iter_4.pth')
    assert b['meta']['iter'] == 4
    state = a['state_dict']
    assert any(k.startswith('teacher.') for k in state)
    assert 'csm_head.loss_module.center' in state
    assert any(not torch.equal(state[k], half['state_dict'][k]) for k in state
               if k.startswith('backbone.'))  # iterations 3 and 4 did change the student
    # student, teacher, heads, centre: every tensor bit-identical
    _assert_all_equal(state, b['state_dict'], 'state_dict')
    for idx, param_state in a['optimizer']['state'].items():
        for name, value in param_state.items():
            assert torch.equal(torch.as_tensor(value),
                               torch.as_tensor(b['optimizer']['state'][idx][name])), (idx, name)
    assert torch.equal(a['rng_state']['torch'], b['rng_state']['torch'])


def test_resume_without_saved_states_is_not_bit_exact(four_iterations):
    """The check above can fail: without the states MMEngine reseeds, and the weights differ."""
    run = four_iterations
    old = torch.load(run['straight'] / 'iter_2.pth')
    del old['rng_state'], old['rng_states']  # a checkpoint written without RandomStateHook
    torch.save(old, run['tmp'] / 'iter_2_without_rng.pth')
    reseeded = run['tmp'] / 'reseeded'
    _train(run['tool'], run['config'], reseeded, run['data'], '--resume',
           str(run['tmp'] / 'iter_2_without_rng.pth'))
    log = _log_text(reseeded)
    assert ('the checkpoint has no `rng_state` (saved without RandomStateHook): random '
            'generators are reseeded, so the resumed run is not bit-exact.') in log
    a = torch.load(run['straight'] / 'iter_4.pth')['state_dict']
    b = torch.load(reseeded / 'iter_4.pth')['state_dict']
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith('backbone.'))


def test_two_process_resume_is_bit_exact_on_every_rank(tmp_path, person_folder):
    """2 ranks, each with its own random stream (diff_rank_seed): 4 iterations straight, and
    a run stopped after iteration 2 then resumed from its checkpoint, end equal on every rank
    (weights, generator states, the next draws) and with equal checkpoints."""
    from dist_train_testlib import run_jobs
    config = write_micro_4iter_config(tmp_path / 'micro_4iter_dist.py', '''
        custom_hooks = [dict(type='SAIPTeacherHook'), dict(type='_DigestHook')]
        env_cfg = dict(dist_cfg=dict(backend='gloo', timeout=300))
    ''')
    stopping = tmp_path / 'micro_4iter_dist_stop.py'
    stopping.write_text(f"_base_ = '{config}'\ncustom_hooks = [dict(type='SAIPTeacherHook'), "
                        "dict(type='_CrashHook', at_iter=2)]\n")
    data = ['--cfg-options', f'train_dataloader.dataset.data_root={person_folder}']
    work = {name: tmp_path / name for name in ('straight', 'stopped', 'resumed')}
    results = run_jobs([
        dict(name='straight', argv=[str(config), '--work-dir', str(work['straight']), *data]),
        dict(name='stopped', argv=[str(stopping), '--work-dir', str(work['stopped']), *data]),
        dict(name='resumed', argv=[str(config), '--work-dir', str(work['resumed']), '--resume',
                                   str(work['stopped'] / 'iter_2.pth'), *data]),
    ], tmp_path / 'out', port=29633)
    straight, resumed = results['straight'], results['resumed']
    assert [r['error'] for r in results['stopped']] == ['KeyboardInterrupt: '] * 2
    assert [r['error'] for r in straight + resumed] == [None] * 4
    assert straight[0]['draws'] != straight[1]['draws']  # the ranks' streams differ
    for rank in (0, 1):
        assert resumed[rank]['iter'] == 4
        for key in ('weights', 'rng', 'draws'):
            assert resumed[rank][key] == straight[rank][key], (rank, key)
    a = torch.load(work['straight'] / 'iter_4.pth')
    b = torch.load(work['resumed'] / 'iter_4.pth')
    _assert_all_equal(a['state_dict'], b['state_dict'], 'state_dict')
    for sa, sb in zip(a['rng_states'], b['rng_states'], strict=True):  # rank 0, rank 1
        assert sa['python'] == sb['python'] and torch.equal(sa['torch'], sb['torch'])
        assert torch.equal(sa['numpy']['key'], sb['numpy']['key'])


class _Runner:
    def __init__(self):
        self.logger = logging.getLogger('test_random_state_hook')
        self.records = LogRecords()
        self.logger.addHandler(self.records)


def test_world_size_differs_from_the_checkpoint_reseeds_with_a_warning():
    state = get_rng_state()
    runner = _Runner()
    hook_state = RandomStateHook._own_state(
        runner, {'rng_state': state, 'rng_states': [state, state]})
    assert hook_state is None
    assert ('the checkpoint holds the random generator states of 2 processes, this run has 1 '
            'process(es): random generators are reseeded') in runner.records.messages[-1]
    # a checkpoint of an older version (the main process's states only) still restores alone
    assert RandomStateHook._own_state(runner, {'rng_state': state}) is state
