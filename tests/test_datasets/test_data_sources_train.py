"""tools/train.py on every image source kind (micro SAIP model, 2 iterations); bit-exact resume
from shards; overriding the dataset's data_root alone moves the person and background lists."""
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmpretrain.registry import DATASETS
from saip_testlib import write_micro_4iter_config

ROOT = Path(__file__).resolve().parents[2]
MICRO = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'
DEMO = ROOT / 'configs' / 'saip' / 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'


@pytest.fixture(scope='module', autouse=True)
def _undo_deterministic():
    """randomness.deterministic=True switches torch to deterministic algorithms globally."""
    yield
    torch.use_deterministic_algorithms(False)


def _train(train_tool, config, work: Path, *options: str, resume: str = None) -> None:
    """``tools/train.py CONFIG`` in this process; a unique experiment name keeps the loggers
    of the runs apart."""
    extra = ['--resume', resume] if resume else []
    train_tool.main([str(config), '--work-dir', str(work), *extra, '--cfg-options',
                     f'experiment_name={work.parent.name}_{work.name}', *options])


def _log_text(work: Path) -> str:
    logs = sorted(work.glob('*/*.log'))
    assert len(logs) == 1, logs
    return logs[0].read_text()


@pytest.mark.parametrize('kind', ['folder', 'lmdb', 'shards'])
def test_two_iterations_from_each_source_kind(kind, tmp_path, make_sources, train_tool):
    src = make_sources(tmp_path / 'data')
    work = tmp_path / f'work_{kind}'
    _train(train_tool, MICRO, work, f'train_dataloader.dataset.data_root={src[kind]}',
           f'train_dataloader.dataset.background={src[kind + "_bg"]}', 'train_cfg.max_iters=2')
    assert 'Iter(train) [2/2]' in _log_text(work)
    ckpt = torch.load(work / 'iter_2.pth')
    assert ckpt['meta']['iter'] == 2
    assert np.isfinite(ckpt['message_hub']['log_scalars']['train/loss'].data[0]).all()


def _demo_layout_config(folder: Path) -> Path:
    """The micro model with the demo config's dataset: persons.txt + background frames.txt,
    both relative to the dataset's data_root (the micro config switches them off)."""
    demo_dataset = Config.fromfile(str(DEMO)).train_dataloader.dataset
    assert demo_dataset.ann_file == 'persons.txt'
    assert dict(demo_dataset.background) == dict(ann_file='frames.txt')  # no data_root of its own
    config = folder / 'micro_demo_layout.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = '{MICRO}'
        train_dataloader = dict(dataset=dict(ann_file='persons.txt',
                                             background=dict(_delete_=True,
                                                             ann_file='frames.txt')))
    '''))
    return config


def test_data_root_alone_moves_both_sources(tmp_path, make_sources, train_tool, monkeypatch):
    src = make_sources(tmp_path / 'data')
    elsewhere = tmp_path / 'elsewhere' / 'vtest_copy'
    shutil.copytree(src['list'], elsewhere)  # persons/, frames/, persons.txt, frames.txt
    config = _demo_layout_config(tmp_path)
    (tmp_path / 'cwd').mkdir()
    monkeypatch.chdir(tmp_path / 'cwd')  # no data/vtest/ to fall back on from here
    option = f'train_dataloader.dataset.data_root={elsewhere}/'

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': f'{elsewhere}/'})
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert dataset.get_data_info(0)['img_path'] == f'{elsewhere}/persons/p000.jpg'
    assert {dataset.get_background_path(i) for i in range(3)} == {
        f'{elsewhere}/frames/f00{i}.jpg' for i in range(3)}

    work = tmp_path / 'work'
    _train(train_tool, config, work, option, 'train_cfg.max_iters=2')
    assert 'Iter(train) [2/2]' in _log_text(work)

    # the error a run stops with (the dataset is built as the Runner builds it)
    os.remove(elsewhere / 'frames.txt')
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.build(cfg.train_dataloader.dataset)
    assert str(err.value) == (
        f'image list file not found: {elsewhere}/frames.txt; set '
        '`train_dataloader.dataset.background.ann_file` (or '
        '`train_dataloader.dataset.background.data_root`): relative background paths are '
        f"relative to the dataset's data_root '{elsewhere}/'")


def test_resume_from_shards_is_bit_exact(tmp_path, make_sources, train_tool):
    """4 iterations straight and 2 + --resume 2 on shards give bit-identical weights (the
    approach of tests/test_engine/test_random_state_hook.py, with a shard source)."""
    src = make_sources(tmp_path / 'data')
    config = write_micro_4iter_config(tmp_path / 'micro_4iter_shards.py', f'''
        train_dataloader = dict(dataset=dict(data_root='{src["shards"]}',
                                             background='{src["shards_bg"]}'))
    ''')
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    _train(train_tool, config, straight)
    _train(train_tool, config, resumed, resume=str(straight / 'iter_2.pth'))
    assert 'resumed epoch: 0, iter: 2' in _log_text(resumed)
    half = torch.load(straight / 'iter_2.pth')
    a = torch.load(straight / 'iter_4.pth')
    b = torch.load(resumed / 'iter_4.pth')
    assert b['meta']['iter'] == 4
    state = a['state_dict']
    assert any(not torch.equal(state[k], half['state_dict'][k]) for k in state
               if k.startswith('backbone.'))  # iterations 3 and 4 did change the student
    assert state.keys() == b['state_dict'].keys()
    for key in state:
        assert torch.equal(state[key], b['state_dict'][key]), key
    for idx, param_state in a['optimizer']['state'].items():
        for name, value in param_state.items():
            assert torch.equal(torch.as_tensor(value),
                               torch.as_tensor(b['optimizer']['state'][idx][name])), (idx, name)
