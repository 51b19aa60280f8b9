#!/usr/bin/env python
"""Person images -> POSIX tar shards with a random-access index, for ``PersonImageDataset``.

Input (``SRC``): a folder of images (recursive, sorted, as ``PersonImageDataset`` lists it), a
list file (one path per line, relative to ``--root``, by default the list file's folder), or
LUPerson's LMDB (a folder holding ``lmdb/`` and ``keys.pkl`` as LUPerson-NL releases it, or
``lup_lmdb/`` and ``keys.pkl`` as LUPerson's ``convert_lmdb.py`` writes it, or ``lup_lmdb/``
itself; see ``saip_mm.datasets.image_sources.LmdbSource``; the key list is read with a
restricted unpickler that refuses any Python global).

Output folder (``OUT``)::

    shard-000000.tar ...   --shard-size images each, in input order
    shard_index.npz        per image: its shard, the byte offset and size of its data in the
                           shard, its key; per shard: its file name and byte size

An image's bytes are copied as they are (not re-encoded), so it decodes to the same pixels as
its source; its key is the file's path relative to the folder (or the list entry, or the LMDB
key) and its tar member is the key, plus the format's extension when the key has none
(``.jpg``, ``.png``, ``.bmp``, else ``.bin``). Members carry fixed metadata (mtime 0, uid 0,
mode 0644): the same input gives byte-identical shards.

Train on them with ``data_root=OUT`` (``PersonImageDataset`` finds ``shard_index.npz``)::

    python tools/train.py CONFIG --cfg-options train_dataloader.dataset.data_root=OUT/ \\
        train_dataloader.dataset.ann_file=''

The dataset reads an image with one seek and one read at the indexed offset (a map-style
dataset: MMEngine's samplers, DDP sharding and bit-exact resume work unchanged), checks the tar
header in front of it, and at start checks every shard's byte size against the index.

WebDataset: compatible. The shards are plain POSIX tar files (GNU format only for member names
over 100 bytes), one member per image named ``<key>.<ext>``, which is WebDataset's layout of
samples with one image field; ``wds.WebDataset('OUT/shard-{000000..000009}.tar')`` streams
them. WebDataset splits a member name at the first '.' of its file name, so keys with a dot
before their extension would be cut there. The index is this package's addition: WebDataset
ignores it (it reads shards sequentially).

Written atomically: into ``OUT.partial/`` beside ``OUT``, the index last, then renamed to
``OUT``; an interrupted run leaves only ``OUT.partial`` (the next run removes it). An existing
``OUT`` is refused unless ``--force``, and then replaced only once the new shards are complete.
Files and folders are created with the default modes, so they follow the umask (0644 / 0755
under umask 022: readable by the team), not a private temporary mode. Progress
(:mod:`saip_mm.utils.progress`): a bar in a terminal, whole lines every 10% in a log file.

    python tools/dataset_converters/images_to_shards.py data/vtest/persons.txt data/vtest_shards
    python tools/dataset_converters/images_to_shards.py data/lup1m data/lup1m_shards \\
        --shard-size 10000
"""
import argparse
import importlib.util
import io
import os
import os.path as osp
import posixpath
import shutil
import sys
import tarfile
from typing import Dict, Iterator, List, Optional, TextIO, Tuple

import numpy as np

if importlib.util.find_spec('saip_mm') is None:  # a checkout that is not pip-installed
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from saip_mm.datasets.image_sources import (IMG_SUFFIX_CODES, MEMBER_SUFFIXES,  # noqa: E402
                                            SHARD_INDEX, SHARD_INDEX_FORMAT, TAR_BLOCK,
                                            LmdbSource, PathArray, detect_source)
from saip_mm.datasets.person_image_dataset import IMG_EXTENSIONS, list_images  # noqa: E402
from saip_mm.engine.hooks.safe_checkpoint_hook import PARTIAL_SUFFIX, fsync_dir  # noqa: E402
from saip_mm.utils.progress import Progress  # noqa: E402

SHARD_NAME = 'shard-{:06d}.tar'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Person images to tar shards with an index')
    parser.add_argument('src', help='image folder, list file, or LUPerson LMDB folder '
                        '(lmdb/ or lup_lmdb/ + keys.pkl, or lup_lmdb/ itself)')
    parser.add_argument('out', help='output folder (must not exist, unless --force)')
    parser.add_argument('--shard-size', type=int, default=10000,
                        help='images per shard (default 10000: about 100 MB of LUPerson crops)')
    parser.add_argument('--root', help='list file input: the folder its entries are relative '
                        'to (default: the list file\'s folder)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing OUT (once the new shards are complete)')
    return parser.parse_args(argv)


def _list_key(entry: str, list_file: str) -> str:
    """A list entry (relative to its root) as a member key; refused outside the root."""
    key = posixpath.normpath(entry.replace(os.sep, '/'))
    if key == '..' or key.startswith('../'):
        raise ValueError(f'{list_file}: entry {entry!r} is not a path inside its root; a tar '
                         'member named so would be written outside the folder it is unpacked in')
    return key


def open_input(src: str, root: Optional[str] = None) -> Tuple[str, int, Iterator[Tuple[str,
                                                                                        bytes]]]:
    """The input's kind, its number of images and an iterator of (key, bytes) in order.

    Args:
        src (str): a folder of images, a list file, or a LUPerson LMDB folder.
        root (str, optional): list file input: the folder its entries are relative to.
            Defaults to None (the list file's folder).

    Returns:
        tuple: ('folder' | 'list' | 'lmdb', count, iterator).
    """
    if osp.isfile(src):
        root = root if root is not None else osp.dirname(src)
        paths = list_images(root, src, IMG_EXTENSIONS, check_files=True)
        keys = [_list_key(osp.relpath(path, root or '.'), src) for path in paths]
        return 'list', len(paths), _read_files(paths, keys)
    if not osp.isdir(src):
        raise FileNotFoundError(f'input not found: {src}')
    if detect_source(src, '') == 'lmdb':
        lmdb_source = LmdbSource(src, check_keys=True)

        def entries() -> Iterator[Tuple[str, bytes]]:
            for i in range(len(lmdb_source)):
                yield lmdb_source.keys[i], lmdb_source.read(i)

        return 'lmdb', len(lmdb_source), entries()
    paths = list_images(src, '', IMG_EXTENSIONS)
    keys = [osp.relpath(p, src).replace(os.sep, '/') for p in paths]
    return 'folder', len(paths), _read_files(paths, keys)


def _read_files(paths: List[str], keys: List[str]) -> Iterator[Tuple[str, bytes]]:
    for path, key in zip(paths, keys):
        with open(path, 'rb') as f:
            yield key, f.read()


def member_suffix(key: str, data: bytes) -> int:
    """Code (index in ``MEMBER_SUFFIXES``) of what to append to ``key`` to name its member."""
    if osp.splitext(key)[1].lower() in IMG_EXTENSIONS:
        return 0
    if data[:3] == b'\xff\xd8\xff':
        return IMG_SUFFIX_CODES['.jpg']
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return IMG_SUFFIX_CODES['.png']
    if data[:2] == b'BM':
        return IMG_SUFFIX_CODES['.bmp']
    return IMG_SUFFIX_CODES['.bin']


def _remove(path: str) -> None:
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path)
    elif osp.lexists(path):
        os.remove(path)


def write_shards(entries: Iterator[Tuple[str, bytes]], total: int, folder: str,
                 shard_size: int, stream: Optional[TextIO] = None) -> Dict:
    """Write the shards and, last, the index into ``folder`` (which exists and is empty).

    Args:
        entries (Iterator[tuple[str, bytes]]): (key, encoded image) in order.
        total (int): number of entries (for the progress report).
        folder (str): output folder.
        shard_size (int): images per shard.
        stream (TextIO, optional): progress output. Defaults to None (stdout).

    Returns:
        dict: ``images``, ``shards``, ``bytes``.
    """
    keys: List[str] = []
    shard_idx: List[int] = []
    offsets: List[int] = []
    sizes: List[int] = []
    suffixes: List[int] = []
    shard_names: List[str] = []
    shard_bytes: List[int] = []
    f = tar = None

    def close_shard() -> None:
        tar.close()  # end-of-archive blocks; the file object stays open
        f.flush()
        os.fsync(f.fileno())
        shard_bytes.append(f.tell())
        f.close()

    with Progress(total, label='images_to_shards', unit='images', stream=stream) as progress:
        for i, (key, data) in enumerate(entries):
            if i % shard_size == 0:
                if tar is not None:
                    close_shard()
                shard_names.append(SHARD_NAME.format(len(shard_names)))
                f = open(osp.join(folder, shard_names[-1]), 'wb')  # umask mode
                tar = tarfile.open(fileobj=f, mode='w', format=tarfile.GNU_FORMAT)
            suffix = member_suffix(key, data)
            info = tarfile.TarInfo(key + MEMBER_SUFFIXES[suffix])
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
            # addfile leaves tar.offset after the data, padded to whole blocks
            padded = (len(data) + TAR_BLOCK - 1) // TAR_BLOCK * TAR_BLOCK
            offsets.append(tar.offset - padded)
            sizes.append(len(data))
            keys.append(key)
            shard_idx.append(len(shard_names) - 1)
            suffixes.append(suffix)
            progress.update()
        if tar is not None:
            close_shard()
    if not keys:
        raise ValueError('the input holds no image')
    key_bytes, key_ends = PathArray(keys).buffers()
    index_path = osp.join(folder, SHARD_INDEX)
    with open(index_path, 'wb') as out:  # umask mode, unlike a temporary file's 0600
        np.savez_compressed(
            out, format=np.array(SHARD_INDEX_FORMAT), shard_names=np.array(shard_names),
            shard_bytes=np.array(shard_bytes, dtype=np.int64),
            shard=np.array(shard_idx, dtype=np.int32), offset=np.array(offsets, dtype=np.int64),
            size=np.array(sizes, dtype=np.int64), suffix=np.array(suffixes, dtype=np.uint8),
            key_bytes=key_bytes, key_ends=key_ends)
        out.flush()
        os.fsync(out.fileno())
    return dict(images=len(keys), shards=len(shard_names), bytes=int(sum(shard_bytes)))


def convert(src: str, out: str, shard_size: int = 10000, force: bool = False,
            root: Optional[str] = None, stream: Optional[TextIO] = None) -> Dict:
    """Convert ``src`` into shards at ``out`` (see the module docstring).

    Args:
        src (str): a folder of images, a list file, or a LUPerson LMDB folder.
        out (str): the output folder.
        shard_size (int): images per shard. Defaults to 10000.
        force (bool): replace an existing ``out``. Defaults to False.
        root (str, optional): list file input: the folder its entries are relative to.
            Defaults to None (the list file's folder).
        stream (TextIO, optional): progress output. Defaults to None (stdout).

    Returns:
        dict: ``input`` (kind), ``images``, ``shards``, ``bytes``, ``out``.
    """
    if shard_size <= 0:
        raise ValueError(f'--shard-size must be > 0, got {shard_size}')
    out = osp.abspath(out).rstrip(os.sep)
    src_abs = osp.abspath(src)
    if osp.commonpath([out, src_abs]) == out:
        raise ValueError(f'{out} holds the input {src}: choose an output folder outside it')
    if osp.lexists(out) and not force:
        raise FileExistsError(f'{out} exists: pass --force to replace it (it is replaced only '
                              'once the new shards are complete)')
    kind, total, entries = open_input(src, root)
    partial = out + PARTIAL_SUFFIX
    _remove(partial)  # left by an interrupted run: never complete (the name says so)
    os.makedirs(partial)  # mode 0777 & ~umask
    try:
        summary = write_shards(entries, total, partial, shard_size, stream)
        if osp.lexists(out):  # --force: replace only now that the new one is complete
            old = out + '.old'
            _remove(old)
            os.rename(out, old)
            os.rename(partial, out)
            _remove(old)
        else:
            os.rename(partial, out)
        fsync_dir(osp.dirname(out))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return dict(summary, input=kind, out=out)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    try:
        summary = convert(args.src, args.out, args.shard_size, args.force, args.root)
    except (OSError, ValueError) as err:
        sys.exit(f'error: {err}')
    print(f'written: {summary["images"]} images ({summary["input"]}) in {summary["shards"]} '
          f'shard(s), {summary["bytes"] / 1e6:.1f} MB, and {SHARD_INDEX} -> {summary["out"]}')
    print('train on them: --cfg-options train_dataloader.dataset.data_root='
          f'{summary["out"]}/ train_dataloader.dataset.ann_file=')


if __name__ == '__main__':
    main()
