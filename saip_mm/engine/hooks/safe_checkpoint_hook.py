"""Checkpoints that survive a kill at any moment: write aside, rename, then point, then prune."""
import os
import os.path as osp
import re
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

#: Suffix of a checkpoint being written (``iter_40.pth.partial``). It does not end in ``.pth``,
#: and ``last_checkpoint`` never names it, so ``--resume`` cannot pick up a half-written file.
PARTIAL_SUFFIX = '.partial'


def _fsync_file(path: str) -> None:
    """Flush a file's data to disk, so that a rename never outlives the content."""
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def fsync_dir(path: str) -> None:
    """Flush a folder's entries (a rename) to disk where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some systems (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on folders
    finally:
        os.close(fd)


def write_text_atomic(path: str, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, never leaving a partial file behind.

    Args:
        path (str): the file to write.
        text (str): its new content.
    """
    partial = path + PARTIAL_SUFFIX
    with open(partial, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    fsync_dir(osp.dirname(osp.abspath(path)))


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` with crash-safe saves.

    MMEngine 0.10.7 deletes the oldest checkpoint *before* writing the new one, and writes it in
    place: a kill during a save with ``max_keep_ckpts=1`` leaves a truncated file, and
    ``last_checkpoint`` names a deleted one. This hook saves in the order that keeps a resumable
    run at every moment:

    1. write the checkpoint to ``<name>.partial`` in the same folder and flush it to disk;
    2. ``os.replace`` it to ``<name>`` (atomic on one file system);
    3. rewrite ``<work_dir>/last_checkpoint`` (through a temporary file and ``os.replace`` too);
    4. only then delete the checkpoints that ``max_keep_ckpts`` drops.

    A kill therefore loses at most the checkpoint being written (one interval), and ``--resume``
    (which reads ``last_checkpoint``) only ever finds complete files. At the start of a run,
    leftover ``*.partial`` files of this hook's name pattern, and checkpoints a killed run had
    already dropped but not yet deleted, are removed.

    All arguments are ``CheckpointHook``'s (``interval``, ``by_epoch``, ``max_keep_ckpts``, ...)
    with its defaults. Atomic renames need a local ``out_dir``; with another storage backend
    (``backend_args``/``file_client_args``) the checkpoint is written under its final name, but
    old checkpoints are still deleted only after the new one and ``last_checkpoint`` are written.
    Best checkpoints (``save_best``) go through the stock logic with the same order: the new
    best is written aside and renamed, and only then is the previous best deleted (the stock
    hook deletes it first, so a kill in between leaves no best checkpoint at all).
    """

    def before_train(self, runner) -> None:
        """Resolve ``out_dir`` (see ``CheckpointHook``), then clear what a killed run left."""
        super().before_train(runner)
        if not (is_main_process() and self._is_local()):
            return
        if osp.isdir(self.out_dir):
            pattern = re.compile(
                '^(best_.*_)?' + r'\d+'.join(re.escape(part) for part in
                                             re.split(r'\{[^{}]*\}', self.filename_tmpl)) +
                re.escape(PARTIAL_SUFFIX) + '$')
            for name in sorted(os.listdir(self.out_dir)):
                if pattern.match(name):
                    os.remove(osp.join(self.out_dir, name))
                    runner.logger.info(
                        f'Removed {name}, a checkpoint a previous run did not finish writing.')
        # Checkpoints dropped by max_keep_ckpts whose deletion a kill interrupted (step 4).
        dropped = runner.message_hub.get_info('dropped_ckpt_ids', [])
        keep = set(getattr(self, 'keep_ckpt_ids', ()))
        for step in dropped:
            if step not in keep:
                self._remove_checkpoint(runner, step)
        runner.message_hub.update_info('dropped_ckpt_ids', [])

    def _is_local(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    def _remove_checkpoint(self, runner, step: int) -> None:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are folders
            self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """The stock best-checkpoint logic, with the new best written before the old goes."""
        if not (is_main_process() and self._is_local()):
            super()._save_best_checkpoint(runner, metrics)
            return
        backend, save, remove = self.file_backend, runner.save_checkpoint, self.file_backend.remove
        deferred, written = [], set()

        def is_best(path: str) -> bool:  # MMEngine names them best_<key>_<checkpoint name>
            return osp.basename(path).startswith('best_')

        def remove_later(path):
            deferred.append(path) if is_best(path) else remove(path)

        def save_aside(out_dir, filename, *args, **kwargs):
            if not is_best(filename):  # the regular save that follows has its own safety
                return save(out_dir, filename, *args, **kwargs)
            save(out_dir, filename + PARTIAL_SUFFIX, *args, **kwargs)
            path = osp.join(out_dir, filename)
            _fsync_file(path + PARTIAL_SUFFIX)
            os.replace(path + PARTIAL_SUFFIX, path)
            fsync_dir(out_dir)
            written.add(osp.abspath(path))

        # Instance attributes shadow the methods for this call only.
        backend.remove = remove_later
        runner.save_checkpoint = save_aside
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            del backend.remove
            del runner.save_checkpoint
        for path in deferred:  # the previous best, now that the new one is complete
            if osp.abspath(path) not in written and backend.isfile(path):
                backend.remove(path)

    def _save_checkpoint_with_step(self, runner, step: int, meta: Optional[dict]) -> None:
        """Save the checkpoint of ``step`` safely (see the class docstring for the order)."""
        # The bookkeeping goes into the message hub first because the message hub is saved in
        # the checkpoint; the files it drops are deleted last.
        dropped = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            # (_save_checkpoint and _save_best_checkpoint may both save one step.)
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                dropped.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        # A run resumed from this checkpoint deletes these if a kill stopped us doing so.
        runner.message_hub.update_info('dropped_ckpt_ids', dropped)

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        local = self._is_local()
        runner.save_checkpoint(  # writes on the main process only
            self.out_dir,
            ckpt_filename + PARTIAL_SUFFIX if local else ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return

        if local:
            partial = self.last_ckpt + PARTIAL_SUFFIX
            _fsync_file(partial)
            os.replace(partial, self.last_ckpt)
            fsync_dir(self.out_dir)  # make the rename itself durable
        write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old_step in dropped:
            self._remove_checkpoint(runner, old_step)
