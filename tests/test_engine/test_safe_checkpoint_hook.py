"""SafeCheckpointHook: a kill at any moment of a save leaves a run that --resume continues."""
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend
from mmengine.runner import Runner, find_latest_checkpoint

from saip_mm.engine.hooks import SafeCheckpointHook, safe_checkpoint_hook

ROOT = Path(__file__).resolve().parents[2]
TOY_CONFIG = ROOT / 'configs' / 'toy' / 'toy_vit-tiny_1xb2-2iter_generated-32x32.py'


class Killed(Exception):
    """Stands for a kill -9 at one point of a save (the in-process fault tests)."""


@pytest.fixture(scope='module')
def toy_images(tmp_path_factory) -> str:
    path = ROOT / 'tools' / 'misc' / 'generate_toy_images.py'
    spec = importlib.util.spec_from_file_location('generate_toy_images', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = str(tmp_path_factory.mktemp('toy_images'))
    module.generate_toy_images(root, per_class=2, size=32, seed=0)
    return root


def _train(work: Path, data_root: str, hook_type: str, max_iters: int = 3,
           resume: bool = False) -> Runner:
    cfg = Config.fromfile(str(TOY_CONFIG))
    cfg.work_dir = str(work)
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_cfg.max_iters = max_iters
    cfg.default_hooks.checkpoint = dict(type=hook_type, interval=1, by_epoch=False,
                                        max_keep_ckpts=1)
    cfg.resume = resume
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _half_write_then_die(name):
    """LocalBackend.put that writes half of ``name`` and dies, like a kill during the write."""
    put = LocalBackend.put

    def faulty(self, obj, filepath):
        if str(filepath).endswith(name):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise Killed(filepath)
        return put(self, obj, filepath)

    return faulty


def _checkpoint_files(work: Path) -> list:
    """Checkpoints, temporary files and the pointer (not the dumped config or the log folder)."""
    return sorted(p.name for p in work.iterdir() if p.name.startswith(('iter_', 'last_')))


def _last(work: Path) -> str:
    return find_latest_checkpoint(str(work))


def _fault(monkeypatch, where):
    """Make the save of iteration 3 die at ``where``."""
    if where == 'writing':
        monkeypatch.setattr(LocalBackend, 'put', _half_write_then_die('iter_3.pth.partial'))
    elif where == 'renaming':
        replace = os.replace

        def faulty_replace(src, dst):
            if str(dst).endswith('iter_3.pth'):
                raise Killed(dst)
            return replace(src, dst)

        monkeypatch.setattr(safe_checkpoint_hook.os, 'replace', faulty_replace)
    elif where == 'pointing':
        write = safe_checkpoint_hook.write_text_atomic

        def faulty_write(path, text):
            if text.endswith('iter_3.pth'):
                raise Killed(path)
            return write(path, text)

        monkeypatch.setattr(safe_checkpoint_hook, 'write_text_atomic', faulty_write)
    elif where == 'pruning':
        remove = SafeCheckpointHook._remove_checkpoint

        def faulty_remove(self, runner, step):
            if runner.iter + 1 == 3:
                raise Killed(step)
            return remove(self, runner, step)

        monkeypatch.setattr(SafeCheckpointHook, '_remove_checkpoint', faulty_remove)


@pytest.mark.parametrize('where', ['writing', 'renaming', 'pointing', 'pruning'])
def test_a_fault_at_any_step_leaves_a_complete_latest_checkpoint(where, toy_images, tmp_path,
                                                                 monkeypatch):
    work = tmp_path / 'work'
    with monkeypatch.context() as patch:
        _fault(patch, where)
        with pytest.raises(Killed):
            _train(work, toy_images, 'SafeCheckpointHook')
    latest = _last(work)
    # Before the rename and the pointer update the newest checkpoint is iteration 2; after
    # them, iteration 3. Either way the file is whole and nothing half-written is named.
    expected = 3 if where == 'pruning' else 2
    assert latest == str(work / f'iter_{expected}.pth')
    assert torch.load(latest)['meta']['iter'] == expected  # loads: complete
    if where in ('writing', 'renaming'):
        partial = work / 'iter_3.pth.partial'
        assert partial.is_file() and not (work / 'iter_3.pth').exists()
    if where == 'pointing':
        assert (work / 'iter_3.pth').is_file()  # renamed, not yet pointed at
    if where == 'pruning':
        assert (work / 'iter_2.pth').is_file()  # dropped by max_keep_ckpts=1, not yet deleted

    # --resume continues from it and leaves exactly what max_keep_ckpts=1 keeps.
    runner = _train(work, toy_images, 'SafeCheckpointHook', max_iters=4, resume=True)
    assert runner.iter == 4
    assert _checkpoint_files(work) == ['iter_4.pth', 'last_checkpoint']
    assert _last(work) == str(work / 'iter_4.pth')


def test_each_save_writes_aside_renames_points_then_prunes(toy_images, tmp_path, monkeypatch):
    """The file operations of three saves with max_keep_ckpts=1, in order: the new checkpoint
    is written to ``<name>.partial``, renamed, ``last_checkpoint`` is pointed at it, and only
    then is the previous checkpoint deleted. Catches: the stock order (MMEngine's
    CheckpointHook deletes the old checkpoint first and writes the new one in place, so a kill
    during the write loses the run) or any step moved before the one it must follow."""
    work = tmp_path / 'work'
    events = []
    put, remove, replace = LocalBackend.put, LocalBackend.remove, os.replace

    def spy_put(self, obj, filepath):
        events.append(('write', Path(filepath).name))
        return put(self, obj, filepath)

    def spy_remove(self, filepath):
        events.append(('delete', Path(filepath).name))
        return remove(self, filepath)

    def spy_replace(src, dst):
        result = replace(src, dst)
        if Path(dst).name == 'last_checkpoint':
            events.append(('point', Path(Path(dst).read_text()).name))
        elif Path(dst).name.startswith('iter_'):
            events.append(('rename', f'{Path(src).name} -> {Path(dst).name}'))
        return result

    monkeypatch.setattr(LocalBackend, 'put', spy_put)
    monkeypatch.setattr(LocalBackend, 'remove', spy_remove)
    monkeypatch.setattr(safe_checkpoint_hook.os, 'replace', spy_replace)
    _train(work, toy_images, 'SafeCheckpointHook')
    monkeypatch.undo()
    expected = []
    for it in (1, 2, 3):
        expected += [('write', f'iter_{it}.pth.partial'),
                     ('rename', f'iter_{it}.pth.partial -> iter_{it}.pth'),
                     ('point', f'iter_{it}.pth')]
        if it > 1:
            expected.append(('delete', f'iter_{it - 1}.pth'))
    assert [e for e in events if e[1].startswith('iter_')] == expected
    assert _checkpoint_files(work) == ['iter_3.pth', 'last_checkpoint']


def test_write_text_atomic_replaces_whole(tmp_path):
    path = tmp_path / 'last_checkpoint'
    path.write_text('old')
    safe_checkpoint_hook.write_text_atomic(str(path), '/work/iter_9.pth')
    assert path.read_text() == '/work/iter_9.pth'
    assert [p.name for p in tmp_path.iterdir()] == ['last_checkpoint']


SLOW_DISK = '''
"""Test-only: a disk so slow that one checkpoint write stays half done until the kill."""
import os
import time

from mmengine.fileio import LocalBackend

_put = LocalBackend.put


def _slow_put(self, obj, filepath):
    name = os.environ.get('SLOW_SAVE_NAME')
    if name and str(filepath).endswith(name):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
            os.fsync(f.fileno())
        open(os.environ['SLOW_SAVE_MARKER'], 'w').close()
        time.sleep(600)
    return _put(self, obj, filepath)


LocalBackend.put = _slow_put
'''


def test_kill_9_during_a_save_then_resume(toy_images, tmp_path):
    """A real training process is killed (SIGKILL) half-way through writing iter_3."""
    (tmp_path / 'slow_disk.py').write_text(SLOW_DISK)
    config = tmp_path / 'toy_safe.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = '{TOY_CONFIG}'
        custom_imports = dict(imports=['saip_mm', 'slow_disk'], allow_failed_imports=False)
        train_cfg = dict(max_iters=4)
        default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook', interval=1,
                                             by_epoch=False, max_keep_ckpts=1))
    '''))
    work = tmp_path / 'work'
    marker = tmp_path / 'inside_save'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
               SLOW_SAVE_NAME='iter_3.pth.partial', SLOW_SAVE_MARKER=str(marker),
               OMP_NUM_THREADS='1')
    cmd = [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config), '--work-dir',
           str(work), '--cfg-options', f'train_dataloader.dataset.data_root={toy_images}']
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), proc.communicate(timeout=60)[0][-4000:]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # What the kill left: a half-written temporary file that nothing names.
    partial = work / 'iter_3.pth.partial'
    full_size = (work / 'iter_2.pth').stat().st_size
    assert 0 < partial.stat().st_size < full_size
    assert not (work / 'iter_3.pth').exists() and not (work / 'iter_1.pth').exists()
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    assert torch.load(work / 'iter_2.pth')['meta']['iter'] == 2

    env.pop('SLOW_SAVE_NAME')
    res = subprocess.run(cmd + ['--resume'], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=240)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    # One checkpoint interval lost (iteration 3), no more.
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Removed iter_3.pth.partial, a checkpoint a previous run did not finish writing.' in log
    assert _checkpoint_files(work) == ['iter_4.pth', 'last_checkpoint']
    assert torch.load(work / 'iter_4.pth')['meta']['iter'] == 4


def test_a_kill_while_writing_a_new_best_keeps_the_previous_best(toy_images, tmp_path,
                                                                 monkeypatch):
    runner = _train(tmp_path / 'best', toy_images, 'SafeCheckpointHook', max_iters=2)
    hook = next(h for h in runner.hooks if isinstance(h, SafeCheckpointHook))
    hook.__init__(interval=1, by_epoch=False, max_keep_ckpts=1, save_best='acc', rule='greater')
    hook.before_train(runner)
    hook.after_val_epoch(runner, metrics={'acc': 0.5})
    first = Path(runner.message_hub.get_info('best_ckpt'))
    assert first.name == 'best_acc_iter_2.pth' and first.is_file()
    state = torch.load(first, map_location='cpu', weights_only=False)['state_dict']
    # A better score at a later iteration, killed while its best checkpoint is half written.
    runner.train_loop._iter = 3
    for name in ('best_acc_iter_3.pth.partial', 'best_acc_iter_3.pth'):  # aside, or in place
        monkeypatch.setattr(LocalBackend, 'put', _half_write_then_die(name))
    with pytest.raises(Killed):
        hook.after_val_epoch(runner, metrics={'acc': 0.7})
    assert first.is_file()  # the stock hook has deleted it by now
    loaded = torch.load(first, map_location='cpu', weights_only=False)['state_dict']
    assert loaded.keys() == state.keys()
    assert not (first.parent / 'best_acc_iter_3.pth').exists()
    monkeypatch.undo()
    # A resumed run (its message hub as the last checkpoint saved it) clears the half-written
    # file; a completed new best then replaces the old one.
    runner.message_hub.update_info('best_ckpt', str(first))
    runner.message_hub.update_info('best_score', 0.5)
    hook.__init__(interval=1, by_epoch=False, max_keep_ckpts=1, save_best='acc', rule='greater')
    hook.before_train(runner)
    assert not (first.parent / 'best_acc_iter_3.pth.partial').exists()
    hook.after_val_epoch(runner, metrics={'acc': 0.7})
    assert (first.parent / 'best_acc_iter_3.pth').is_file() and not first.exists()
