"""Keyed image sources of ``PersonImageDataset``: LUPerson's LMDB release and tar shards.

A keyed source holds its keys in a :class:`PathArray` (two NumPy buffers, shared by the
DataLoader workers without copy-on-read) and reads an entry's encoded bytes on demand;
``LoadPersonImage`` decodes them exactly as it decodes a file's bytes.

Layouts (``<root>`` is the dataset's image folder: ``data_root`` joined with ``data_prefix``):

- LUPerson LMDB, in either of its two published layouts (see :func:`find_lmdb_environment`
  and :func:`read_luperson_keys`): an LMDB environment (a folder holding ``data.mdb``; key ->
  encoded image) and a pickled key list ``keys.pkl``:

  - LUPerson-NL's release: ``<root>/lmdb/`` + ``<root>/keys.pkl``, a ``dict(keys=[...],
    pids=[...])``;
  - LUPerson's ``LUP/convert_lmdb.py``: ``lup_lmdb/`` (the environment itself) + ``keys.pkl``
    beside it, a plain list of keys; ``<root>`` is the folder holding both, or ``lup_lmdb/``.

  Keys are str or bytes; Python 2 pickles (protocols 0-2) of either layout load too.
- shards: ``<root>/shard_index.npz`` (written by ``tools/dataset_converters/images_to_shards.py``)
  and the POSIX tar files it names, relative to its own folder.

Handles are opened lazily in the process that reads (each DataLoader worker): LMDB
environments are closed in a process before it forks and opened again on the next read, shard
files are opened again when ``os.getpid()`` changes, so no environment or file offset is used
on both sides of a fork; a pickled source holds no handle.
"""
import os
import os.path as osp
import pickle
import tarfile
import threading
from collections import OrderedDict
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .transforms.loading import CorruptEntryError, CorruptImageError  # noqa: F401

SOURCE_KINDS = ('auto', 'files', 'lmdb', 'shards')
LMDB_DIR = 'lmdb'
# Environment folders looked for under <root>, in order, after <root> itself: LUPerson-NL's
# release, then the folder LUPerson's LUP/convert_lmdb.py writes.
LMDB_DIRS = (LMDB_DIR, 'lup_lmdb')
LMDB_DATA = 'data.mdb'
LMDB_KEYS = 'keys.pkl'
SHARD_INDEX = 'shard_index.npz'
SHARD_INDEX_FORMAT = 'saip_mm.shards/1'
TAR_BLOCK = 512
# Suffix appended to a key to name its tar member (code 0: the key already ends in one).
MEMBER_SUFFIXES = ('', '.jpg', '.png', '.bmp', '.bin')
IMG_SUFFIX_CODES = {suffix: code for code, suffix in enumerate(MEMBER_SUFFIXES)}


class PathArray:
    """An immutable list of strings packed in two NumPy arrays.

    A Python list of a million strings gets copied into every DataLoader worker as their
    reference counts change (copy-on-read); NumPy buffers stay shared. Strings are stored as
    UTF-8 with ``surrogateescape``, so keys that were bytes (not UTF-8) round-trip exactly.

    Args:
        paths (Sequence[str]): the strings.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [path.encode('utf-8', 'surrogateescape') for path in paths]
        self._ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        self._bytes = np.frombuffer(b''.join(encoded), dtype=np.uint8).copy()

    @classmethod
    def from_buffers(cls, data: np.ndarray, ends: np.ndarray) -> 'PathArray':
        """Wrap already packed buffers (as written by :meth:`buffers`)."""
        arr = cls.__new__(cls)
        arr._bytes = np.ascontiguousarray(data, dtype=np.uint8)
        arr._ends = np.ascontiguousarray(ends, dtype=np.int64)
        if len(arr._ends) and (arr._ends[-1] != len(arr._bytes) or np.any(np.diff(arr._ends) < 0)):
            raise ValueError('PathArray buffers are inconsistent')
        return arr

    def buffers(self) -> Tuple[np.ndarray, np.ndarray]:
        """The packed UTF-8 bytes and the end offset of each string."""
        return self._bytes, self._ends

    def __len__(self) -> int:
        return len(self._ends)

    def raw(self, idx: int) -> bytes:
        """The ``idx``-th string's bytes."""
        if not -len(self) <= idx < len(self):
            raise IndexError(f'PathArray index {idx} out of range for {len(self)} paths')
        idx = idx % len(self)
        start = 0 if idx == 0 else int(self._ends[idx - 1])
        return self._bytes[start:int(self._ends[idx])].tobytes()

    def __getitem__(self, idx: int) -> str:
        return self.raw(idx).decode('utf-8', 'surrogateescape')


class MissingEntryError(CorruptImageError):
    """A key listed by a keyed source that its container does not hold (skippable when met
    while reading; at start it stops the dataset from building).

    Args:
        path (str): the entry's name, ``<container>[<key>]``.
        message (str): what is wrong.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)


class ShardIndexError(ValueError):
    """Shards that do not match their index (truncated, replaced or mis-indexed shards).

    Never skipped by ``skip_corrupt``: the index no longer describes the data, so training on
    would read wrong bytes or silently lose a shard's tail. Rebuild the shards.
    """


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks for a Python global (a class or a function), refused unread."""


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only what needs no global: dict, list, tuple, set, str, bytes, numbers,
    bool, None. Anything else reaches ``find_class``, which refuses it before it is looked
    up, so a crafted pickle (``__reduce__`` -> ``os.system``) never runs. That holds for every
    protocol: Python 2's ``GLOBAL``/``INST`` opcodes, protocol 4's ``STACK_GLOBAL`` and the
    ``copyreg`` extension codes all resolve through ``find_class``, and a persistent id has no
    loader here.

    Python 2 ``str`` objects (the ``STRING`` opcodes of protocols 0-2) are read as bytes
    (``encoding='bytes'``): their encoding is not recorded, and bytes keep them exact.
    """

    def __init__(self, file: BinaryIO, path: str) -> None:
        super().__init__(file, encoding='bytes')
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f'{self._path}: refusing to load the Python global {module}.{name}: only plain '
            'containers, strings, bytes and numbers are read from this file (a pickle naming '
            'a global can run code). Re-save it with plain Python types.')


def load_plain_pickle(path: str) -> Any:
    """Read a pickle that holds only built-in containers, str, bytes and numbers.

    Any protocol, Python 2's included: a Python 2 ``str`` arrives as ``bytes`` (see
    :class:`_PlainUnpickler`), a Python 2 ``unicode`` as ``str``.

    Args:
        path (str): the file.

    Returns:
        Any: the unpickled value.

    Raises:
        UnsafePickleError: the pickle names a global (class, function), which is refused
            without being imported or called.
    """
    with open(path, 'rb') as f:
        try:
            return _PlainUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except Exception as err:  # truncated or not a pickle
            raise pickle.UnpicklingError(f'{path}: not a readable pickle ({err})') from err


def _as_str(value: Any) -> Any:
    """Bytes (a Python 2 ``str``, or a bytes key) as str, UTF-8 with ``surrogateescape``: it
    encodes back to the same bytes, so an LMDB key is looked up exactly as stored."""
    return value.decode('utf-8', 'surrogateescape') if isinstance(value, bytes) else value


def read_luperson_keys(path: str) -> List[str]:
    """The keys of a LUPerson ``keys.pkl``, as str, in file order.

    Two layouts are read: LUPerson's ``LUP/convert_lmdb.py`` pickles a plain list of keys;
    LUPerson-NL's release a ``dict(keys=[...], pids=[...])`` (``pids``, or ``vids``: labels
    unused by pretraining, only checked for length). A list or tuple; keys str or bytes.
    Python 2 pickles of either load too: their ``str`` keys (and the dict's own ``'keys'``)
    arrive as bytes.

    Bytes keys are decoded with UTF-8 ``surrogateescape``: they encode back to the same bytes.

    Args:
        path (str): the pickle.

    Returns:
        list[str]: the keys, in file order.
    """
    data = load_plain_pickle(path)
    if isinstance(data, dict):
        data = {_as_str(k): v for k, v in data.items()}
        if 'keys' not in data:
            raise ValueError(f'{path}: a dict without a `keys` list (entries '
                             f'{sorted(map(str, data))}); expected LUPerson-NL\'s dict(keys=[...], '
                             "pids=[...]) or LUPerson's plain list of keys")
        keys = data['keys']
        for name in ('pids', 'vids'):
            labels = data.get(name)
            if (labels is not None and isinstance(keys, (list, tuple))
                    and (not isinstance(labels, (list, tuple)) or len(labels) != len(keys))):
                have = (f'{len(labels)} {name}' if isinstance(labels, (list, tuple)) else
                        f'`{name}` a {type(labels).__name__}')
                raise ValueError(f'{path}: {len(keys)} keys but {have}')
    elif isinstance(data, (list, tuple)):
        keys = data
    else:
        raise ValueError(f'{path}: expected a list of keys (LUPerson\'s convert_lmdb.py) or a '
                         f'dict with a `keys` list (LUPerson-NL), got {type(data).__name__}')
    if not isinstance(keys, (list, tuple)) or not keys:
        raise ValueError(f'{path}: the key list must be a non-empty list')
    out = []
    for i, key in enumerate(keys):
        if not isinstance(key, (str, bytes)):
            raise ValueError(f'{path}: key #{i} is a {type(key).__name__}, not str or bytes')
        out.append(_as_str(key))
    return out


def write_luperson_lmdb(root: str, items: Sequence[Tuple[str, bytes]],
                        bytes_keys: bool = False, layout: str = 'nl') -> str:
    """Write a LUPerson LMDB under ``root`` in one of its two published layouts.

    For tests and benchmarks that need such a database made from images at hand.

    Args:
        root (str): the folder to create them in.
        items (Sequence[tuple[str, bytes]]): (key, encoded image) pairs, in key-list order.
        bytes_keys (bool): store the keys in ``keys.pkl`` as bytes (the release has both kinds).
            Defaults to False (str).
        layout (str): ``'nl'``: LUPerson-NL's release, ``lmdb/`` + ``keys.pkl`` holding
            ``dict(keys=[...], pids=[...])``; ``'lup'``: what LUPerson's ``LUP/convert_lmdb.py``
            writes, ``lup_lmdb/`` + ``keys.pkl`` holding the plain list of keys, the values put
            as ``uint8`` arrays of the file bytes. Defaults to 'nl'.

    Returns:
        str: ``root``.
    """
    import lmdb
    if layout not in ('nl', 'lup'):
        raise ValueError(f"layout must be 'nl' or 'lup', got {layout!r}")
    env_path = osp.join(root, LMDB_DIRS[0] if layout == 'nl' else LMDB_DIRS[1])
    os.makedirs(env_path, exist_ok=True)
    total = sum(len(data) for _, data in items)
    env = lmdb.open(env_path, map_size=2 * total + (64 << 20))
    with env.begin(write=True) as txn:
        for key, data in items:
            # convert_lmdb.py puts np.fromstring(file bytes, uint8): the same bytes
            txn.put(key.encode('utf-8'),
                    data if layout == 'nl' else np.frombuffer(data, dtype=np.uint8))
    env.close()
    keys = [key.encode('utf-8') if bytes_keys else key for key, _ in items]
    with open(osp.join(root, LMDB_KEYS), 'wb') as f:
        pickle.dump(dict(keys=keys, pids=list(range(len(keys)))) if layout == 'nl' else keys, f)
    return root


def lmdb_environment_candidates(folder: str) -> List[str]:
    """Where an LMDB environment is looked for at ``folder``, in order: the folder itself,
    ``<folder>/lmdb`` (LUPerson-NL), ``<folder>/lup_lmdb`` (LUPerson's ``convert_lmdb.py``)."""
    folder = osp.normpath(folder) if folder else '.'
    return [folder] + [osp.join(folder, name) for name in LMDB_DIRS]


def find_lmdb_environment(folder: str) -> Optional[str]:
    """The first of :func:`lmdb_environment_candidates` that holds ``data.mdb``, or None."""
    return next((path for path in lmdb_environment_candidates(folder)
                 if osp.isfile(osp.join(path, LMDB_DATA))), None)


def key_list_candidates(folder: str, env_path: str) -> List[str]:
    """Where ``keys.pkl`` is looked for when no ``ann_file`` names it, in order: in ``folder``
    (the dataset's image folder), then beside the environment folder ``env_path`` (the two
    are the same for ``<folder>/lmdb/``; for a ``folder`` that is the environment itself, as
    ``lup_lmdb/``, the second is its parent, where ``convert_lmdb.py`` writes it)."""
    folder = osp.normpath(folder) if folder else '.'
    out = [osp.join(folder, LMDB_KEYS)]
    beside = osp.join(osp.dirname(osp.normpath(env_path)), LMDB_KEYS)
    return out + ([beside] if beside != out[0] else [])


def detect_source(folder: str, ann_file: str) -> str:
    """The source kind at ``folder`` / ``ann_file`` (``source='auto'``).

    A ``.pkl`` annotation file is LUPerson's key list (LMDB), a ``.npz`` a shard index, any
    other a list of image files. Without one: LUPerson's LMDB when ``folder``, ``folder/lmdb``
    or ``folder/lup_lmdb`` holds ``data.mdb`` (or when ``folder`` holds ``keys.pkl`` and one
    of those two sub-folders: a broken environment is then reported as such); shards when it
    holds ``shard_index.npz``; otherwise a folder of images.

    Args:
        folder (str): the image folder (``data_root`` joined with ``data_prefix``).
        ann_file (str): the annotation file, '' for none.

    Returns:
        str: 'files', 'lmdb' or 'shards'.
    """
    if ann_file:
        ext = osp.splitext(ann_file)[1].lower()
        return {'.pkl': 'lmdb', '.npz': 'shards'}.get(ext, 'files')
    if folder and find_lmdb_environment(folder) is not None:
        return 'lmdb'
    if folder and osp.isfile(osp.join(folder, LMDB_KEYS)) and any(
            osp.isdir(osp.join(folder, name)) for name in LMDB_DIRS):
        return 'lmdb'
    if folder and osp.isfile(osp.join(folder, SHARD_INDEX)):
        return 'shards'
    return 'files'


def entry_name(container: str, key: str) -> str:
    """How an entry is named in data infos, logs and errors: ``<container>[<key>]``."""
    return f'{container}[{key}]'


class FileSource:
    """Image files (a folder scan or a list file), for the background.

    Args:
        paths (Sequence[str]): the files.
    """

    kind = 'files'

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = PathArray(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, idx: int) -> str:
        """The ``idx``-th file's path."""
        return self.paths[idx]

    def read(self, idx: int) -> None:
        """None: ``LoadPersonImage`` reads files itself (through ``backend_args``)."""
        return None


# LMDB environments of this process, by real path. py-lmdb refuses to open an environment
# twice in one process (its files' fcntl locks are per process), also in a forked child whose
# parent had it open; so datasets share one handle per path, and every open handle is closed
# in the parent before a fork (re-opened lazily after it): no child inherits one.
_lmdb_lock = threading.RLock()
_lmdb_envs: Dict[str, Any] = {}
_lmdb_pid = os.getpid()


def _open_lmdb(path: str):
    import lmdb  # only the LMDB source needs it
    try:
        # read-only, no lock file (nothing written next to a read-only copy; no reader table
        # shared between processes), no OS readahead (random reads of a database larger
        # than RAM)
        return lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False,
                         subdir=True)
    except lmdb.Error as err:
        raise OSError(f'cannot open the LMDB environment {path}: {err}') from err


def _lmdb_env(path: str, key: str):
    """This process's handle on the environment at ``path`` (real path ``key``), opened on
    first use."""
    global _lmdb_pid
    if _lmdb_pid != os.getpid():
        # A fork that bypassed os.fork's hooks: the handles are the parent's. Closing them here
        # is safe without a lock file (lock=False: no reader table to clear) and lets
        # py-lmdb open the environment again in this process.
        for env in _lmdb_envs.values():
            env.close()
        _lmdb_envs.clear()
        _lmdb_pid = os.getpid()
    env = _lmdb_envs.get(key)
    if env is None:
        env = _lmdb_envs[key] = _open_lmdb(path)
    return env


def close_lmdb_environments() -> None:
    """Close the LMDB environments this process opened for image sources.

    They re-open on the next read. Called before every fork; call it yourself before writing
    to an environment that a dataset of this process has read.
    """
    with _lmdb_lock:
        if _lmdb_pid == os.getpid():
            for env in _lmdb_envs.values():
                env.close()
        _lmdb_envs.clear()


def _before_fork() -> None:
    _lmdb_lock.acquire()  # waits for a read in flight in another thread
    if _lmdb_pid == os.getpid():
        for env in _lmdb_envs.values():
            env.close()
    _lmdb_envs.clear()


def _after_fork_in_child() -> None:
    global _lmdb_lock, _lmdb_pid
    _lmdb_lock = threading.RLock()  # the parent's is held by the forking thread
    _lmdb_pid = os.getpid()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(before=_before_fork, after_in_parent=lambda: _lmdb_lock.release(),
                        after_in_child=_after_fork_in_child)


class LmdbSource:
    """LUPerson's LMDB: an environment and a key list (``keys.pkl``), in either published layout.

    Where they are found (``root`` is the dataset's image folder, ``data_root`` joined with
    ``data_prefix``):

    - the environment: ``root`` itself when it holds ``data.mdb`` (LUPerson's ``lup_lmdb/``
      named directly), else ``<root>/lmdb/`` (LUPerson-NL's release), else
      ``<root>/lup_lmdb/`` (a folder holding what ``LUP/convert_lmdb.py`` writes);
    - the key list: ``keys_file`` (the dataset's ``ann_file``) when given, else
      ``<root>/keys.pkl``, else ``keys.pkl`` beside the environment folder (for
      ``root=.../lup_lmdb``: ``.../keys.pkl``, where ``convert_lmdb.py`` writes it). A plain
      list of keys or LUPerson-NL's ``dict(keys=[...], pids=[...])``
      (:func:`read_luperson_keys`).

    The environment is opened read-only, ``lock=False`` and ``readahead=False``, lazily in the
    reading process, one handle per process and path shared by all sources; handles are closed
    before a fork, and a process whose pid changed opens its own (see
    :func:`close_lmdb_environments`). MMEngine's ``LmdbBackend`` is not used: it keeps the
    environment it opened across a fork (LMDB forbids using it in the child, and py-lmdb then
    refuses to open it again there), encodes keys as ASCII only, and returns None for a missing
    key.

    Args:
        root (str): the folder holding the environment (or the environment itself).
        keys_file (str): the key list. Defaults to '' (looked for as described above).
        check_keys (bool): at start, check that every key is in the environment (its B-tree
            only: entries are not read). Defaults to True: only the first key otherwise.
        hint (str): appended to not-found errors (which config key to set). Defaults to ''.

    Raises:
        FileNotFoundError: no environment or no key list; the message lists every place
            looked at.
    """

    kind = 'lmdb'

    def __init__(self, root: str, keys_file: str = '', check_keys: bool = True,
                 hint: str = '') -> None:
        env_path = find_lmdb_environment(root)
        if env_path is None:
            looked = ', '.join(osp.join(p, LMDB_DATA) for p in lmdb_environment_candidates(root))
            raise FileNotFoundError(
                f'LMDB environment not found: looked for {looked} (LUPerson-NL: <root>/lmdb/ '
                f"with keys.pkl beside it; LUPerson's convert_lmdb.py: lup_lmdb/ with keys.pkl "
                f'beside it, <root> being lup_lmdb/ or the folder holding it){hint}')
        self.env_path = env_path
        if keys_file:
            if not osp.isfile(keys_file):
                raise FileNotFoundError(f'LMDB key list not found: {keys_file}{hint}')
        else:
            candidates = key_list_candidates(root, env_path)
            keys_file = next((path for path in candidates if osp.isfile(path)), '')
            if not keys_file:
                raise FileNotFoundError(
                    f'LMDB key list not found for the environment {env_path}: looked for '
                    f'{" and ".join(candidates)} (or name it with ann_file){hint}')
        self.keys_file = keys_file
        self.keys = PathArray(read_luperson_keys(self.keys_file))
        self._env_key = osp.realpath(self.env_path)  # once: a realpath per read costs 10 us
        self._check(check_keys)

    def _check(self, all_keys: bool) -> None:
        """Fail at start when keys are missing: all of them, or (unchecked) the first one."""
        missing, first = 0, None
        with _lmdb_lock, _lmdb_env(self.env_path, self._env_key).begin(buffers=True) as txn:
            for i in range(len(self.keys) if all_keys else 1):
                if txn.get(self.keys.raw(i)) is None:
                    missing += 1
                    first = first if first is not None else self.keys[i]
        if missing:
            what = (f'{missing} of the {len(self.keys)} keys' if all_keys else 'the first key')
            raise MissingEntryError(
                entry_name(self.env_path, first),
                f'{what} listed in {self.keys_file} are not in the LMDB {self.env_path}, first: '
                f'{first!r} (a key list of another database? With check_files=False missing '
                'keys are reported when read, and skip_corrupt=True skips them)')

    def __len__(self) -> int:
        return len(self.keys)

    def name(self, idx: int) -> str:
        """``<environment>[<key>]``, e.g. ``<root>/lmdb[<key>]``."""
        return entry_name(self.env_path, self.keys[idx])

    def read(self, idx: int) -> bytes:
        """The ``idx``-th entry's encoded bytes.

        Raises:
            MissingEntryError: the key is not in the environment.
        """
        with _lmdb_lock, _lmdb_env(self.env_path, self._env_key).begin() as txn:
            value = txn.get(self.keys.raw(idx))
        if value is None:
            raise MissingEntryError(self.name(idx), f'no entry for key {self.keys[idx]!r} in '
                                    f'the LMDB {self.env_path} (listed in {self.keys_file})')
        return value


def read_shard_index(path: str) -> Dict[str, np.ndarray]:
    """Load and check a shard index (no pickle: ``allow_pickle=False``).

    Args:
        path (str): the ``.npz`` index.

    Returns:
        dict: ``shard_names``, ``shard_bytes``, ``shard``, ``offset``, ``size``, ``suffix``,
        ``key_bytes``, ``key_ends`` arrays.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            index = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ShardIndexError(f'{path}: not a readable shard index ({err})') from err
    fmt = str(index.get('format', ''))
    if fmt != SHARD_INDEX_FORMAT:
        raise ShardIndexError(f'{path}: format {fmt!r}, expected {SHARD_INDEX_FORMAT!r}')
    n = len(index['shard'])
    for name in ('offset', 'size', 'suffix', 'key_ends'):
        if len(index[name]) != n:
            raise ShardIndexError(f'{path}: `{name}` has {len(index[name])} entries, '
                                  f'`shard` {n}')
    if len(index['shard_bytes']) != len(index['shard_names']):
        raise ShardIndexError(f'{path}: {len(index["shard_names"])} shard names but '
                              f'{len(index["shard_bytes"])} shard sizes')
    if n and (index['shard'].min() < 0 or index['shard'].max() >= len(index['shard_names'])):
        raise ShardIndexError(f'{path}: an entry names a shard beyond the '
                              f'{len(index["shard_names"])} listed')
    if n and (index['suffix'].min() < 0 or index['suffix'].max() >= len(MEMBER_SUFFIXES)):
        raise ShardIndexError(f'{path}: unknown member suffix code')
    return index


class ShardSource:
    """Images in POSIX tar shards, read at the offsets of a shard index.

    Random access (one positioned read of one member: ``os.pread``), so any sampler, DDP's sharding and bit-exact
    resume work as with files. Checked at start, with no read of image data: every shard exists
    with the byte size the index recorded, and every entry lies inside its shard. Checked at
    each read: the tar header just before the entry names the indexed member and size. Both
    failures raise :class:`ShardIndexError` naming the shard (never skipped).

    Args:
        index_file (str): the ``shard_index.npz``; shard names are relative to its folder.
        hint (str): appended to not-found errors (which config key to set). Defaults to ''.
        max_open (int): shard files kept open per process. Defaults to 16.
    """

    kind = 'shards'

    def __init__(self, index_file: str, hint: str = '', max_open: int = 16) -> None:
        if not osp.isfile(index_file):
            raise FileNotFoundError(f'shard index not found: {index_file}{hint}')
        self.index_file = index_file
        index = read_shard_index(index_file)
        folder = osp.dirname(index_file)
        self.shard_paths = [osp.join(folder, str(name)) for name in index['shard_names']]
        self.shard = index['shard'].astype(np.int32)
        self.offset = index['offset'].astype(np.int64)
        self.size = index['size'].astype(np.int64)
        self.suffix = index['suffix'].astype(np.uint8)
        self.keys = PathArray.from_buffers(index['key_bytes'], index['key_ends'])
        self.max_open = max_open
        self._files: 'OrderedDict[int, int]' = OrderedDict()  # shard -> descriptor
        self._pid: Optional[int] = None
        self._check(index['shard_bytes'].astype(np.int64), hint)

    def _check(self, shard_bytes: np.ndarray, hint: str) -> None:
        for path, expected in zip(self.shard_paths, shard_bytes):
            if not osp.isfile(path):
                raise FileNotFoundError(f'shard not found: {path} (listed in '
                                        f'{self.index_file}){hint}')
            actual = osp.getsize(path)
            if actual != expected:
                raise ShardIndexError(
                    f'shard {path} is {actual} bytes, its index {self.index_file} recorded '
                    f'{int(expected)} ({"truncated" if actual < expected else "rewritten"} '
                    'after indexing?). Rebuild the shards with images_to_shards.py.')
        ends = self.offset + self.size
        bad = np.flatnonzero((self.offset < TAR_BLOCK) | (self.size < 0)
                             | (ends > shard_bytes[self.shard]))
        if len(bad):
            i = int(bad[0])
            raise ShardIndexError(
                f'{len(bad)} entries of {self.index_file} lie outside their shard, first: key '
                f'{self.keys[i]!r} at bytes {int(self.offset[i])}+{int(self.size[i])} of shard '
                f'{self.shard_paths[self.shard[i]]} ({int(shard_bytes[self.shard[i]])} bytes)')

    def __len__(self) -> int:
        return len(self.shard)

    def name(self, idx: int) -> str:
        """``<shard path>[<key>]``."""
        return entry_name(self.shard_paths[self.shard[idx]], self.keys[idx])

    def member(self, idx: int) -> str:
        """The tar member name of the ``idx``-th entry."""
        return self.keys[idx] + MEMBER_SUFFIXES[self.suffix[idx]]

    def _fd(self, shard: int) -> int:
        """This process's descriptor of ``shard`` (at most ``max_open`` kept open)."""
        pid = os.getpid()
        if self._pid != pid:
            # Inherited across a fork: close our copies (the parent's stay open) and open our
            # own, as each DataLoader worker opens its LMDB environment.
            for inherited in self._files.values():
                os.close(inherited)
            self._files = OrderedDict()
            self._pid = pid
        fd = self._files.get(shard)
        if fd is None:
            if len(self._files) >= self.max_open:
                os.close(self._files.popitem(last=False)[1])
            fd = self._files[shard] = os.open(self.shard_paths[shard], os.O_RDONLY)
        else:
            self._files.move_to_end(shard)
        return fd

    def read(self, idx: int) -> bytes:
        """The ``idx``-th entry's bytes: its tar header and data in one positioned read.

        Raises:
            ShardIndexError: the shard ends early or its header names another member/size.
        """
        shard, offset, size = int(self.shard[idx]), int(self.offset[idx]), int(self.size[idx])
        path = self.shard_paths[shard]
        fd = self._fd(shard)
        start, want = offset - TAR_BLOCK, TAR_BLOCK + size
        # pread: a seek and a read in one call, without a file offset shared between threads
        # or with a forked parent
        chunks, got = [], 0
        while got < want:
            chunk = os.pread(fd, want - got, start + got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        buf = b''.join(chunks)
        if len(buf) < want:
            raise ShardIndexError(f'shard {path} ends at byte {offset - TAR_BLOCK + len(buf)}, '
                                  f'before the data of key {self.keys[idx]!r} ({offset}+{size}): '
                                  'truncated after the run started?')
        # The tar header in front of the data must name the indexed member and size (GNU tar
        # keeps the first 100 bytes of a longer name there). Compared as bytes: parsing the
        # header with tarfile would cost as much as the read itself.
        name = self.keys.raw(idx) + MEMBER_SUFFIXES[self.suffix[idx]].encode()
        found = buf[:100].split(b'\0', 1)[0]
        if (found != name[:100] or buf[257:262] != b'ustar'
                or (buf[124:136] != b'%011o\0' % size and _tar_size(buf) != size)):
            where = f'shard {path}: at byte {offset - TAR_BLOCK}'
            if buf[257:262] != b'ustar':
                raise ShardIndexError(f'{where}, no tar header for key {self.keys[idx]!r}: the '
                                      'index does not match the shard')
            raise ShardIndexError(
                f'{where}, the member is {found.decode("utf-8", "replace")!r} '
                f'({_tar_size(buf)} bytes), the index expects {self.member(idx)!r} ({size} '
                f'bytes) for key {self.keys[idx]!r}: the index does not match the shard')
        return buf[TAR_BLOCK:]

    def close(self) -> None:
        """Close this process's shard files."""
        if self._pid == os.getpid():
            for fd in self._files.values():
                os.close(fd)
        self._files = OrderedDict()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: os may be gone
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state['_files'] = OrderedDict()
        state['_pid'] = None
        return state


def _tar_size(header: bytes) -> int:
    """The size field of a tar header, -1 when unreadable."""
    try:
        return tarfile.nti(header[124:136])
    except tarfile.InvalidHeaderError:
        return -1


KeyedSource = Union[LmdbSource, ShardSource]


def open_keyed_source(kind: str, folder: str, ann_file: str = '', check_keys: bool = True,
                      hint: str = '') -> KeyedSource:
    """The LMDB or shard source at ``folder`` (or at ``ann_file``).

    Args:
        kind (str): 'lmdb' or 'shards'.
        folder (str): LMDB: the folder holding the environment or the environment itself
            (see :class:`LmdbSource`); shards: the folder holding ``shard_index.npz``.
        ann_file (str): the key list (LMDB) or the shard index, instead of the folder's.
            Defaults to ''.
        check_keys (bool): LMDB: check every key at start. Defaults to True.
        hint (str): appended to not-found errors. Defaults to ''.

    Returns:
        LmdbSource | ShardSource: the source.
    """
    if kind == 'lmdb':
        return LmdbSource(folder, ann_file, check_keys=check_keys, hint=hint)
    if kind == 'shards':
        return ShardSource(ann_file or osp.join(folder, SHARD_INDEX), hint=hint)
    raise ValueError(f'not a keyed source kind: {kind!r} (expected lmdb or shards)')
