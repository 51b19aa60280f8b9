"""tools/train.py on the toy config: 2 iterations, then --resume to 4; tools/test.py on the result;
tools/dist_train.sh with two CPU processes."""
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import pytest
import torch

import saip_mm  # noqa: F401  allow-lists Runner checkpoint classes for weights_only loading
from mmengine.logging import HistoryBuffer


def _data_options(root: str) -> list:
    return [f'train_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}']


@pytest.fixture(scope='module')
def toy_runs(tmp_path_factory, toy_image_root, repo_root, toy_config, run_tool) -> dict:
    """Train 2 iterations, then resume the same work dir up to 4; keep both logs."""
    train = osp.join(repo_root, 'tools', 'train.py')
    tmp = tmp_path_factory.mktemp('toy_train')
    work_dir = str(tmp / 'work_dir')
    first = run_tool([train, toy_config, '--work-dir', work_dir,
                      '--cfg-options'] + _data_options(toy_image_root), cwd=str(tmp))
    # Keep iter_2 as written by the first run: the resumed run must not touch it.
    first_ckpt = torch.load(osp.join(work_dir, 'iter_2.pth'))
    second = run_tool([train, toy_config, '--work-dir', work_dir, '--resume',
                       '--cfg-options', 'train_cfg.max_iters=4'] + _data_options(toy_image_root),
                      cwd=str(tmp))
    return dict(work_dir=work_dir, first_log=first, second_log=second, first_ckpt=first_ckpt)


def _adamw_steps(ckpt: dict) -> set:
    return {float(state['step']) for state in ckpt['optimizer']['state'].values()}


def test_two_iterations_write_a_full_checkpoint(toy_runs):
    ckpt = toy_runs['first_ckpt']  # loaded with plain torch.load: weights_only=True
    assert set(ckpt) >= {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'}
    assert ckpt['meta']['iter'] == 2
    assert _adamw_steps(ckpt) == {2.0}
    assert [s['_global_step'] for s in ckpt['param_schedulers']] == [2, 2]
    loss_history = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss_history, HistoryBuffer)
    assert len(loss_history.data[0]) == 2
    assert 'Iter(train) [2/2]' in toy_runs['first_log']


def test_resume_continues_counter_optimizer_and_message_hub(toy_runs):
    log = toy_runs['second_log']
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/4]' in log and 'Iter(train) [4/4]' in log
    assert 'Iter(train) [1/4]' not in log  # it did not start over

    ckpt = torch.load(osp.join(toy_runs['work_dir'], 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4
    # The message hub holds the 0-based index of the last iteration that ran.
    assert ckpt['message_hub']['runtime_info']['iter'] == 3
    assert _adamw_steps(ckpt) == {4.0}  # Adam step counts went on from 2
    # Restored history (2 losses) plus the 2 new ones: the message hub came back.
    loss_history = ckpt['message_hub']['log_scalars']['train/loss']
    assert len(loss_history.data[0]) == 4
    first_losses = toy_runs['first_ckpt']['message_hub']['log_scalars']['train/loss'].data[0]
    assert loss_history.data[0][:2].tolist() == first_losses.tolist()
    # Both schedulers counted 4 iterations in total, not 2.
    assert [s['_global_step'] for s in ckpt['param_schedulers']] == [4, 4]


def test_test_tool_dumps_predictions(toy_runs, toy_image_root, tmp_path, repo_root, toy_config,
                                     run_tool):
    out = str(tmp_path / 'preds.pkl')
    checkpoint = osp.join(toy_runs['work_dir'], 'iter_4.pth')
    log = run_tool([osp.join(repo_root, 'tools', 'test.py'), toy_config, checkpoint,
                    '--work-dir', str(tmp_path / 'test_dir'), '--out', out,
                    '--cfg-options'] + _data_options(toy_image_root), cwd=str(tmp_path))
    assert 'accuracy/top1' in log
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 4  # one per generated image
    assert all(tuple(p['pred_score'].shape) == (2, ) for p in predictions)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_dist_train_script_runs_two_cpu_processes(toy_image_root, tmp_path, repo_root,
                                                  toy_config):
    """tools/dist_train.sh with 2 processes on CPU: gloo + CPU DDP (saip_mm.utils)."""
    work_dir = str(tmp_path / 'work_dir')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [osp.join(repo_root, 'tools', 'dist_train.sh'), toy_config, '2', '--work-dir', work_dir,
         '--cfg-options', 'train_cfg.max_iters=1'] + _data_options(toy_image_root),
        cwd=str(tmp_path), env=env, timeout=240, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'Distributed training: True' in proc.stdout
    assert 'CPUDistributedDataParallel' in proc.stdout
    assert torch.load(osp.join(work_dir, 'iter_1.pth'))['meta']['iter'] == 1
