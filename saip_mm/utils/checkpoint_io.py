"""Read and write checkpoint files with errors that name the file and say what is wrong.

Used by the checkpoint converters (``tools/model_converters``) and the pretrained loader
(:mod:`saip_mm.models.utils.pretrained`). Torch's own errors for a damaged file
(``PytorchStreamReader failed reading zip archive``, ``IndexError: pop from empty list``,
``invalid load key``) say neither which file nor what to do.
"""
import contextlib
import math
import os
import os.path as osp
import pickle
import re
import tempfile
import zipfile
from typing import Any, Dict, Iterable, Optional, Sequence

import torch


class CheckpointReadError(ValueError):
    """A checkpoint file cannot be read (damaged, not a checkpoint, or holds pickled code)."""


def _first_bytes(path: str, n: int = 16) -> bytes:
    with open(path, 'rb') as f:
        return f.read(n)


def read_checkpoint(path: str,
                    map_location: str = 'cpu',
                    allowed_globals: Iterable[type] = ()) -> Any:
    """Load a checkpoint with ``weights_only=True``; unreadable files raise a clear error.

    Args:
        path (str): the checkpoint file.
        map_location (str): where tensors go. Defaults to 'cpu'.
        allowed_globals (Iterable[type]): plain data classes allowed in the file on top of
            torch's and saip_mm's allow-list, e.g. ``argparse.Namespace`` (the ``args`` that
            DINO/MAE-style training scripts save). Never code. Defaults to ().

    Returns:
        The unpickled object (usually a dict).

    Raises:
        FileNotFoundError: no such file.
        CheckpointReadError: the file is empty, truncated, not a PyTorch checkpoint, or holds
            Python objects outside the allow-list (the message names the file and the cause).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointReadError(f'{path} is empty (0 bytes): not a checkpoint')
    head = _first_bytes(path)
    # torch.save writes a zip archive (legacy files: a pickle, protocol 2+ starts with 0x80).
    # Anything else, or a zip without its central directory, is refused before torch reads it.
    if not head.startswith((b'PK', b'\x80')) or (head.startswith(b'PK')
                                                  and not zipfile.is_zipfile(path)):
        raise CheckpointReadError(f'{path} cannot be read as a PyTorch checkpoint: '
                                  f'{_damage(path, size)}')
    guard = (torch.serialization.safe_globals(list(allowed_globals))
             if allowed_globals else contextlib.nullcontext())
    try:
        with guard:
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r'Unsupported global: GLOBAL (\S+)', text)
        if found:
            raise CheckpointReadError(
                f'{path} holds pickled Python objects that are not plain data (class '
                f'{found.group(1)}); it is loaded with weights_only=True, so no code from a '
                f'checkpoint is ever run. Re-save its tensors (torch.save(state_dict, ...)) where '
                f'it was made') from None
        cause = _damage(path, size)
        raise CheckpointReadError(f'{path} cannot be read as a PyTorch checkpoint: {cause}. '
                                  f'(torch: {text.splitlines()[0][:200]})') from None
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, OSError,
            zipfile.BadZipFile) as e:
        cause = _damage(path, size)
        first = (str(e).splitlines() or [''])[0][:200]
        raise CheckpointReadError(f'{path} cannot be read as a PyTorch checkpoint: {cause}. '
                                  f'(torch: {type(e).__name__}: {first})') from None


def _damage(path: str, size: int) -> str:
    """Say why a file that torch cannot load is damaged, in words a user can act on."""
    head = _first_bytes(path)
    if head.startswith(b'PK'):
        if not zipfile.is_zipfile(path):
            return (f'it is a truncated or damaged zip archive ({size} bytes; an interrupted '
                    f'save or copy?)')
        return f'its zip archive ({size} bytes) lacks the tensors torch expects (damaged?)'
    if head[:1] == b'\x80':
        return f'it is a truncated or damaged legacy pickle ({size} bytes)'
    try:
        head.decode('ascii')
        return f'it is a text file (starts with {head[:12]!r}), not a checkpoint'
    except UnicodeDecodeError:
        return f'it is not a PyTorch checkpoint (starts with {head[:8]!r})'


def first_non_finite(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """Name of the first floating-point tensor holding NaN or inf, with its count; or None."""
    for name, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point():
            bad = (~torch.isfinite(value)).sum().item()
            if bad:
                return f'{name} ({bad} of {value.numel()} values are NaN or inf)'
    return None


def check_finite(state_dict: Dict[str, torch.Tensor], path: str) -> None:
    """Refuse weights with NaN or inf (a run that diverged); the message names the tensor.

    Raises:
        ValueError: a tensor is not finite.
    """
    bad = first_non_finite(state_dict)
    if bad is not None:
        raise ValueError(
            f'{path}: non-finite weights in {bad}: the run that wrote it diverged; convert an '
            f'earlier checkpoint instead (nothing was written)')


def check_output_path(src: str, dst: str, force: bool = False) -> None:
    """Refuse to write over the source checkpoint (even with ``force``) or an existing file.

    Raises:
        ValueError: ``dst`` is ``src`` (same path, link or hard link).
        FileExistsError: ``dst`` exists and ``force`` is False.
        IsADirectoryError: ``dst`` is a folder.
    """
    same = osp.realpath(src) == osp.realpath(dst)
    if not same and osp.exists(dst) and osp.exists(src):
        same = osp.samefile(src, dst)
    if same:
        raise ValueError(f'the output {dst} is the input checkpoint {src}: refusing to replace '
                         f'it (also with --force); choose another output path')
    if osp.isdir(dst):
        raise IsADirectoryError(f'the output {dst} is a folder; give a file name')
    if osp.exists(dst) and not force:
        raise FileExistsError(f'{dst} exists; pass --force to overwrite it')


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_atomic(obj: Any, dst: str) -> None:
    """``torch.save`` to a temporary file beside ``dst``, then rename: never a half-written dst.

    The file gets the mode of any newly created file (``0o666`` less the umask): ``mkstemp``
    creates it ``0o600``, which would keep teammates on a shared cluster from reading an
    exported backbone meant for them.
    """
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(dst) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def patch_grid(img_size: Sequence[int], patch_size: int) -> tuple:
    """Patch grid (h, w) of an input, as mmpretrain's ViT computes it (padding to whole patches).

    mmcv's ``PatchEmbed`` pads the input to a multiple of the stride (``padding='corner'``), so a
    side of ``n`` pixels gives ``ceil(n / patch)`` patches.
    """
    return tuple(math.ceil(int(s) / patch_size) for s in img_size)
