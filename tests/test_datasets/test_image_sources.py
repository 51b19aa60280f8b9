"""PersonImageDataset over LUPerson's LMDB and tar shards: same views as files, safe key lists,
errors that name the entry, lazy per-process handles."""
import os
import os.path as osp
import pickle
import pickletools
import random
import re
from functools import partial

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate, worker_init_fn
from mmengine.logging import MMLogger
from torch.utils.data import DataLoader

from saip_mm.datasets import PersonImageDataset
from saip_mm.datasets.image_sources import (SHARD_INDEX, CorruptEntryError, LmdbSource,
                                            MissingEntryError, ShardIndexError,
                                            UnsafePickleError, close_lmdb_environments,
                                            load_plain_pickle)
from saip_mm.datasets.transforms.loading import CorruptImageError
from saip_testlib import LogRecords

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs', 'saip', 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py')
LOAD = [dict(type='LoadPersonImage')]


def _datasets(src: dict, pipeline, **kwargs) -> dict:
    """One dataset per source kind over the same images, in the same order."""
    return dict(
        folder=PersonImageDataset(data_root=src['folder'], background=src['folder_bg'],
                                  pipeline=pipeline, **kwargs),
        list=PersonImageDataset(data_root=src['list'], ann_file='persons.txt',
                                background=dict(ann_file='frames.txt'), pipeline=pipeline,
                                **kwargs),
        lmdb=PersonImageDataset(data_root=src['lmdb'], background=src['lmdb_bg'],
                                pipeline=pipeline, **kwargs),
        shards=PersonImageDataset(data_root=src['shards'], background=src['shards_bg'],
                                  pipeline=pipeline, **kwargs))


def _seeded(dataset, idx: int, seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return dataset[idx]


def test_same_seed_gives_the_same_views_from_every_source(tmp_path, make_sources):
    src = make_sources(tmp_path)
    pipeline = Config.fromfile(DEMO).train_pipeline
    datasets = _datasets(src, pipeline)
    assert {k: len(d) for k, d in datasets.items()} == dict(folder=6, list=6, lmdb=6, shards=6)
    assert {k: d.num_backgrounds for k, d in datasets.items()} == dict(folder=3, list=3, lmdb=3,
                                                                       shards=3)
    for idx in range(6):
        samples = {k: _seeded(d, idx, seed=10 + idx) for k, d in datasets.items()}
        ref = samples['folder']['inputs']
        assert set(ref) >= {'g1', 'g2', 'locals', 'region', 'reference'}
        for kind, sample in samples.items():
            for view, tensor in ref.items():
                assert torch.equal(sample['inputs'][view], tensor), (kind, idx, view)
    # entries are named <container>[<key>]: the LMDB key, or the shard and the file's key
    meta = {k: s['data_samples'] for k, s in samples.items()}
    assert meta['lmdb'].img_path == osp.join(src['lmdb'], 'lmdb') + '[p005]'
    assert meta['shards'].img_path == osp.join(src['shards'], 'shard-000001.tar') + '[p005.jpg]'
    assert meta['folder'].bg_img_path.split('/')[-1][:4] == \
        meta['lmdb'].bg_img_path.split('[')[-1][:4]


def test_pixels_match_the_files_and_data_infos_stay_small(tmp_path, make_sources):
    src = make_sources(tmp_path)
    datasets = _datasets(src, LOAD)
    for idx in range(6):
        ref = _seeded(datasets['folder'], idx, 0)
        for kind in ('lmdb', 'shards'):
            got = _seeded(datasets[kind], idx, 0)
            assert np.array_equal(got['img'], ref['img']) and np.array_equal(
                got['bg_img'], ref['bg_img'])
            assert 'img_bytes' not in got and 'bg_img_bytes' not in got  # dropped once decoded
    for kind in ('lmdb', 'shards'):
        ds = datasets[kind]
        # one tiny pickled dict(img_idx=i) per image; keys live in the source's NumPy buffers
        assert ds.data_bytes.nbytes / len(ds) < 40
        assert type(ds._images.keys).__name__ == 'PathArray'


def test_sources_are_found_by_layout_or_named(tmp_path, make_sources):
    src = make_sources(tmp_path)
    by_ann = PersonImageDataset(data_root=src['lmdb'], ann_file='keys.pkl')
    assert by_ann._images.kind == 'lmdb' and len(by_ann) == 6
    by_index = PersonImageDataset(data_root=src['shards'], ann_file=SHARD_INDEX)
    assert by_index._images.kind == 'shards'
    explicit = PersonImageDataset(data_root=src['lmdb'], source='lmdb',
                                  background=dict(data_root=src['shards_bg'], source='shards'))
    assert explicit._backgrounds.kind == 'shards'
    # the person source is reused as background, not opened twice
    same = PersonImageDataset(data_root=src['lmdb'], background=src['lmdb'])
    assert same._backgrounds is same._images
    persons = src['folder']
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'LMDB environment not found: looked for {persons}/data.mdb, {persons}/lmdb/data.mdb, '
            f'{persons}/lup_lmdb/data.mdb (LUPerson-NL: <root>/lmdb/ with keys.pkl beside it; ')
            + r'.*; set `train_dataloader\.dataset\.data_root`'):
        PersonImageDataset(data_root=persons, source='lmdb')
    with pytest.raises(FileNotFoundError, match=r'shard index not found: .*shard_index\.npz'):
        PersonImageDataset(data_root=src['folder'], source='shards')
    with pytest.raises(ValueError, match='`source` must be one of'):
        PersonImageDataset(data_root=src['folder'], source='tar')


def test_bytes_keys_are_read(tmp_path, make_images, write_luperson_lmdb):
    paths = make_images(tmp_path / 'imgs', ['a.jpg', 'b.jpg'], 32, 16)
    items = [(osp.basename(p), open(p, 'rb').read()) for p in paths]
    write_luperson_lmdb(str(tmp_path / 'lup'), items, bytes_keys=True)
    ds = PersonImageDataset(data_root=str(tmp_path / 'lup'), pipeline=LOAD)
    assert ds[1]['img_path'].endswith('lmdb[b.jpg]') and ds[1]['img'].shape == (32, 16, 3)


def _folder_pixels(folder):
    ds = PersonImageDataset(data_root=folder, pipeline=LOAD)
    return [ds[i]['img'] for i in range(len(ds))]


def test_lupersons_own_layout_loads_from_its_folder_or_the_environment(tmp_path, make_images,
                                                                      write_luperson_lmdb):
    """LUP/convert_lmdb.py writes lup_lmdb/ (the environment, data.mdb inside) and keys.pkl
    beside it, a plain list of str keys: found from the folder holding both, from lup_lmdb/
    itself (keys.pkl one level up), or named by data_prefix + ann_file; same pixels as the
    files."""
    paths = make_images(tmp_path / 'imgs', ['a.jpg', 'b.jpg', 'c.jpg'], 32, 16)
    items = [(osp.splitext(osp.basename(p))[0], open(p, 'rb').read()) for p in paths]
    root = write_luperson_lmdb(str(tmp_path / 'lup'), items, layout='lup')
    assert sorted(os.listdir(root)) == ['keys.pkl', 'lup_lmdb']
    assert osp.isfile(osp.join(root, 'lup_lmdb', 'data.mdb'))
    with open(osp.join(root, 'keys.pkl'), 'rb') as f:
        assert pickle.load(f) == ['a', 'b', 'c']  # the list itself, no dict
    env = osp.join(root, 'lup_lmdb')
    expected = _folder_pixels(str(tmp_path / 'imgs'))
    for kwargs in (dict(data_root=root), dict(data_root=env), dict(data_root=env + '/'),
                   dict(data_root=root, data_prefix='lup_lmdb', ann_file='keys.pkl'),
                   dict(data_root=root, source='lmdb')):
        ds = PersonImageDataset(pipeline=LOAD, **kwargs)
        assert ds._images.kind == 'lmdb', kwargs
        assert (ds._images.env_path, ds._images.keys_file) == (env, osp.join(root, 'keys.pkl'))
        samples = [_seeded(ds, i, 0) for i in range(3)]
        assert [s['img_path'] for s in samples] == [f'{env}[a]', f'{env}[b]', f'{env}[c]']
        assert all(np.array_equal(s['img'], e) for s, e in zip(samples, expected)), kwargs
    # without keys.pkl anywhere: both places named
    os.remove(osp.join(root, 'keys.pkl'))
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'LMDB key list not found for the environment {env}: looked for {env}/keys.pkl and '
            f'{root}/keys.pkl (or name it with ann_file)')):
        PersonImageDataset(data_root=env, source='lmdb')


def py2_pickle(obj, protocol: int) -> bytes:
    """``obj`` pickled as Python 2's ``pickle.dump`` writes it (protocol 0, its default, or 2):
    bytes are Python 2 ``str`` (``S'..'`` / ``U``/``T``), str is ``unicode`` (``V`` /
    ``X``), ints are ``I`` / ``K``/``M``, with the memo puts and batching Python 2 emits.
    Handles lists, dicts, bytes, str and ints, which is all a key list holds."""
    out, memo = [], [0]

    def put():
        n = memo[0]
        memo[0] += 1
        return b'p%d\n' % n if protocol == 0 else b'q' + bytes([n])

    def atom(value):
        if isinstance(value, bytes):
            if protocol == 0:  # repr() of a py2 str: non-ASCII bytes as \xNN escapes
                return b"S'" + ''.join(chr(c) if 32 <= c < 127 and c not in (39, 92) else
                                       '\\x%02x' % c for c in value).encode() + b"'\n" + put()
            head = b'U' + bytes([len(value)]) if len(value) < 256 else (
                b'T' + len(value).to_bytes(4, 'little'))
            return head + value + put()
        if isinstance(value, str):
            if protocol == 0:
                return b'V' + value.encode('raw_unicode_escape') + b'\n' + put()
            data = value.encode('utf-8')
            return b'X' + len(data).to_bytes(4, 'little') + data + put()
        if isinstance(value, int):
            if protocol == 0:
                return b'I%d\n' % value
            return b'K' + bytes([value]) if value < 256 else b'M' + value.to_bytes(2, 'little')
        if isinstance(value, (list, dict)):
            is_dict = isinstance(value, dict)
            if protocol == 0:
                head = (b'(d' if is_dict else b'(l') + put()
            else:
                head = (b'}' if is_dict else b']') + put()
            items = [atom(k) + atom(v) for k, v in value.items()] if is_dict else [
                atom(v) for v in value]  # memo ids after the container's, as Python 2 numbers
            one, batch = (b's', b'u') if is_dict else (b'a', b'e')
            # protocol 0: one APPEND / SETITEM per item; 2: one item likewise, more in a batch
            if protocol == 0 or len(items) == 1:
                return head + b''.join(item + one for item in items)
            return head + (b'(' + b''.join(items) + batch if items else b'')
        raise TypeError(type(value))

    out.append(b'\x80\x02' if protocol == 2 else b'')
    out.append(atom(obj))
    return b''.join(out) + b'.'


def test_py2_pickle_helper_writes_python2_opcodes():
    """The helper's bytes, checked against a hand-written Python 2 ``pickle.dumps`` output."""
    assert py2_pickle([b'00_01', u'x'], 0) == b"(lp0\nS'00_01'\np1\naVx\np2\na."
    assert py2_pickle({b'keys': [b'a'], b'pids': [7]}, 2) == (
        b'\x80\x02}q\x00(U\x04keysq\x01]q\x02U\x01aq\x03aU\x04pidsq\x04]q\x05K\x07au.')
    assert py2_pickle([b'a', 300], 2) == b'\x80\x02]q\x00(U\x01aq\x01M,\x01e.'


@pytest.mark.parametrize('layout', ['lup', 'nl'])
@pytest.mark.parametrize('protocol', [0, 2])
def test_python2_key_lists_of_either_layout_load(tmp_path, make_images, write_luperson_lmdb,
                                                 layout, protocol):
    """keys.pkl written by Python 2 (its str keys, one not ASCII; for LUPerson-NL's dict, its
    'keys'/'pids' names too): the keys are looked up byte for byte. Python 3's default
    (encoding='ASCII') cannot even read them."""
    names = ['00_00_0000_00000000', 'caf\u00e9_0001', '00_01_0003_00000002']
    paths = make_images(tmp_path / 'imgs', [f'{i}.jpg' for i in range(3)], 32, 16)
    items = [(name, open(p, 'rb').read()) for name, p in zip(names, paths)]
    root = write_luperson_lmdb(str(tmp_path / 'lup'), items, layout=layout)
    py2_keys = [name.encode('utf-8') for name in names]  # Python 2 str: bytes
    if layout == 'nl':  # LUPerson-NL: a dict; one unicode key, as py2 code may mix them
        data = py2_pickle({b'keys': py2_keys[:2] + [names[2]], b'pids': [0, 1, 300]}, protocol)
    else:
        data = py2_pickle(py2_keys, protocol)
    with open(osp.join(root, 'keys.pkl'), 'wb') as f:
        f.write(data)
    assert next(pickletools.genops(data))[0].name == ('PROTO' if protocol == 2 else 'MARK')
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)  # Python 3's default encoding='ASCII'
    ds = PersonImageDataset(data_root=root, pipeline=LOAD)
    env = ds._images.env_path
    assert [ds._images.keys[i] for i in range(3)] == names
    assert [ds._images.keys.raw(i) for i in range(3)] == py2_keys
    expected = _folder_pixels(str(tmp_path / 'imgs'))
    for i in range(3):
        sample = _seeded(ds, i, 0)
        assert sample['img_path'] == f'{env}[{names[i]}]'
        assert np.array_equal(sample['img'], expected[i])


def test_non_utf8_python2_keys_keep_their_bytes(tmp_path):
    """A Latin-1 Python 2 str key is not UTF-8: it still encodes back to its exact bytes."""
    from saip_mm.datasets.image_sources import PathArray, read_luperson_keys
    path = tmp_path / 'keys.pkl'
    path.write_bytes(py2_pickle([b'\xe9t\xe9_01', b'plain'], 2))
    keys = read_luperson_keys(str(path))
    assert keys == ['\udce9t\udce9_01', 'plain']
    assert PathArray(keys).raw(0) == b'\xe9t\xe9_01'


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_a_key_list_carrying_code_is_refused_without_running_it(tmp_path, make_sources):
    src = make_sources(tmp_path)
    marker = tmp_path / 'payload_ran'
    keys_file = osp.join(src['lmdb'], 'keys.pkl')
    with open(keys_file, 'wb') as f:
        pickle.dump(dict(keys=['p000', _Payload(marker)], pids=[0, 1]), f)
    with pytest.raises(UnsafePickleError, match=re.escape(keys_file) + r'.*global posix\.system'):
        PersonImageDataset(data_root=src['lmdb'])
    with pytest.raises(UnsafePickleError):
        load_plain_pickle(keys_file)
    assert not marker.exists()
    # a NumPy array needs a global too: refused with the same message, not loaded
    with open(keys_file, 'wb') as f:
        pickle.dump(dict(keys=np.array(['p000'])), f)
    with pytest.raises(UnsafePickleError, match='numpy'):
        PersonImageDataset(data_root=src['lmdb'])
    with open(keys_file, 'wb') as f:
        pickle.dump('p000', f)
    with pytest.raises(ValueError, match=re.escape(keys_file) + r': expected a list of keys '
                       r"\(LUPerson's convert_lmdb\.py\) or a dict with a `keys` list "
                       r'\(LUPerson-NL\), got str'):
        PersonImageDataset(data_root=src['lmdb'])
    with open(keys_file, 'wb') as f:
        pickle.dump(dict(keys=['p000', 'p001'], pids=[0]), f)
    with pytest.raises(ValueError, match=re.escape(keys_file) + ': 2 keys but 1 pids'):
        PersonImageDataset(data_root=src['lmdb'])


@pytest.mark.parametrize('protocol', [0, 2])
def test_python2_payloads_are_refused_without_running_them(tmp_path, make_sources, protocol):
    """Python 2's GLOBAL + REDUCE (``os.system`` pickles as ``posix.system``) and its INST
    opcode, in protocols 0 and 2: refused by name, nothing runs."""
    src = make_sources(tmp_path)
    marker = tmp_path / 'payload_ran'
    keys_file = osp.join(src['lmdb'], 'keys.pkl')
    command = f'touch {marker}'.encode()
    if protocol == 0:
        payloads = [b"cposix\nsystem\n(S'" + command + b"'\ntR.",
                    b"(S'" + command + b"'\niposix\nsystem\n."]  # INST: class + args in one
    else:
        payloads = [b'\x80\x02cposix\nsystem\nq\x00U' + bytes([len(command)]) + command
                    + b'q\x01\x85q\x02Rq\x03.']
    for payload in payloads:
        with open(keys_file, 'wb') as f:
            f.write(payload)
        with pytest.raises(UnsafePickleError, match=re.escape(
                f'{keys_file}: refusing to load the Python global posix.system')):
            PersonImageDataset(data_root=src['lmdb'])
        assert not marker.exists()


def _skip_messages(dataset, idx):
    records = LogRecords()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        np.random.seed(0)
        sample = dataset[idx]
    finally:
        logger.removeHandler(records)
    return sample, [m for m in records.messages if 'skipped corrupt' in m]


def _rewrite_lmdb(root, key, value):
    import lmdb
    close_lmdb_environments()  # this process read it: py-lmdb would refuse a second open
    env = lmdb.open(osp.join(root, 'lmdb'))
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key.encode())
        else:
            txn.put(key.encode(), value)
    env.close()


def test_lmdb_missing_key_and_undecodable_entry(tmp_path, make_sources):
    src = make_sources(tmp_path)
    env = osp.join(src['lmdb'], 'lmdb')
    _rewrite_lmdb(src['lmdb'], 'p002', None)
    # checked at start by default, naming the key
    with pytest.raises(MissingEntryError, match=r"1 of the 6 keys .* first: 'p002'"):
        PersonImageDataset(data_root=src['lmdb'])
    ds = PersonImageDataset(data_root=src['lmdb'], check_files=False, pipeline=LOAD)
    with pytest.raises(MissingEntryError, match=re.escape(f"no entry for key 'p002' in the LMDB "
                                                          f'{env}')) as err:
        ds[2]
    assert err.value.path == env + '[p002]' and isinstance(err.value, CorruptImageError)
    skipping = PersonImageDataset(data_root=src['lmdb'], check_files=False, skip_corrupt=True,
                                  pipeline=LOAD)
    sample, messages = _skip_messages(skipping, 2)
    assert sample['img_path'] != env + '[p002]' and skipping.num_skipped >= 1
    assert messages[0] == (f'PersonImageDataset: skipped corrupt image {env}[p002] '
                           '(1 skipped so far in this process)')

    _rewrite_lmdb(src['lmdb'], 'p002', b'\xff\xd8\xff truncated')
    ds = PersonImageDataset(data_root=src['lmdb'], pipeline=LOAD)
    with pytest.raises(CorruptEntryError, match=re.escape(
            f'cannot decode image entry (corrupt or not an image): {env}[p002]')):
        ds[2]
    skipping = PersonImageDataset(data_root=src['lmdb'], skip_corrupt=True, pipeline=LOAD)
    sample, messages = _skip_messages(skipping, 2)
    assert skipping.num_skipped == len(messages) >= 1 and sample['img'].shape == (32, 16, 3)


def _edit_index(folder, **changes):
    path = osp.join(folder, SHARD_INDEX)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for name, (i, value) in changes.items():
        arrays[name][i] = value
    with open(path, 'wb') as f:
        np.savez(f, **arrays)
    return arrays


def test_shard_undecodable_member_is_skippable(tmp_path, make_sources, shard_converter):
    src = make_sources(tmp_path)
    with open(osp.join(src['folder'], 'p003.jpg'), 'wb') as f:
        f.write(b'not a jpeg')
    out = str(tmp_path / 'with_corrupt')
    shard_converter.convert(src['folder'], out, shard_size=4, stream=open(os.devnull, 'w'))
    name = osp.join(out, 'shard-000000.tar') + '[p003.jpg]'
    ds = PersonImageDataset(data_root=out, pipeline=LOAD)
    with pytest.raises(CorruptEntryError, match=re.escape(name)):
        ds[3]
    skipping = PersonImageDataset(data_root=out, skip_corrupt=True, pipeline=LOAD)
    sample, messages = _skip_messages(skipping, 3)
    assert sample['img_path'] != name
    assert messages[0] == (f'PersonImageDataset: skipped corrupt image {name} '
                           '(1 skipped so far in this process)')


def test_shards_that_do_not_match_their_index_fail_naming_the_shard(tmp_path, make_sources):
    src = make_sources(tmp_path)
    shard0 = osp.join(src['shards'], 'shard-000000.tar')
    shard1 = osp.join(src['shards'], 'shard-000001.tar')
    ds = PersonImageDataset(data_root=src['shards'], pipeline=LOAD, skip_corrupt=True)
    ds[0]  # opens shard 0 in this process

    # truncated after the run started: the read names the shard and key; never skipped
    size = osp.getsize(shard1)
    with open(shard1, 'r+b') as f:
        f.truncate(1024)
    with pytest.raises(ShardIndexError, match=re.escape(f'shard {shard1} ends at byte') +
                       r".*key 'p00[45]\.jpg'"):
        ds[5]
    # at start: the shard's size differs from the index's record
    with pytest.raises(ShardIndexError, match=re.escape(f'shard {shard1} is 1024 bytes, its index')
                       + rf'.* recorded {size} \(truncated'):
        PersonImageDataset(data_root=src['shards'], skip_corrupt=True)
    with open(shard1, 'r+b') as f:
        f.truncate(size)  # zeros: same size, so only the per-read header check can tell
    with pytest.raises(ShardIndexError, match=re.escape(f'shard {shard1}: at byte') +
                       r" \d+, no tar header for key 'p005\.jpg'"):
        PersonImageDataset(data_root=src['shards'], pipeline=LOAD)[5]  # header in the zeros

    # an offset beyond the shard: at start, naming the key and the shard
    arrays = _edit_index(src['shards'], offset=(1, 10 ** 6))
    with pytest.raises(ShardIndexError, match=re.escape("1 entries of") +
                       r".*first: key 'p001\.jpg' at bytes 1000000\+\d+ of shard "
                       + re.escape(shard0)):
        PersonImageDataset(data_root=src['shards'])
    # a size that does not match the member's header
    offset1 = int(np.load(osp.join(src['shards'], SHARD_INDEX))['offset'][0])
    _edit_index(src['shards'], offset=(1, arrays['offset'][2]), size=(1, 100))
    ds = PersonImageDataset(data_root=src['shards'], pipeline=LOAD, skip_corrupt=True)
    with pytest.raises(ShardIndexError, match=re.escape(f'shard {shard0}: at byte') +
                       r" \d+, the member is 'p002\.jpg' \(\d+ bytes\), the index expects "
                       r"'p001\.jpg' \(100 bytes\) for key 'p001\.jpg'"):
        ds[1]
    # the wrong member (entry 1 pointing at entry 0's data)
    _edit_index(src['shards'], offset=(1, offset1), size=(1, int(arrays['size'][0])))
    with pytest.raises(ShardIndexError, match=r"the member is 'p000\.jpg' .* expects 'p001\.jpg'"):
        PersonImageDataset(data_root=src['shards'], pipeline=LOAD)[1]


def test_handles_are_opened_per_process(tmp_path, make_sources):
    """Read in the main process first (handles open there), then in 2 forked workers: each
    opens its own; the pickled dataset carries no handle."""
    src = make_sources(tmp_path)
    for kind in ('lmdb', 'shards'):
        ds = PersonImageDataset(data_root=src[kind], background=src[kind + '_bg'], pipeline=LOAD)
        np.random.seed(0)
        expected = [ds[i]['img'] for i in range(6)]
        if kind == 'shards':
            owner = ds._images._pid
            assert owner == os.getpid() and ds._images._files
            clone = pickle.loads(pickle.dumps(ds))
            assert clone._images._pid is None and not clone._images._files
        loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=pseudo_collate,
                            worker_init_fn=partial(worker_init_fn, num_workers=2, rank=0,
                                                   seed=0))
        got = [batch['img'][0] for batch in loader]
        assert all(np.array_equal(a, b) for a, b in zip(got, expected)), kind
        if kind == 'shards':
            assert ds._images._pid == owner  # the parent's files were left open


def test_lmdb_environment_opens_read_only_without_lock_once_per_process(tmp_path, make_sources,
                                                                        monkeypatch):
    import lmdb

    from saip_mm.datasets import image_sources
    src = make_sources(tmp_path)
    close_lmdb_environments()
    calls = []
    real_open = lmdb.open
    monkeypatch.setattr(lmdb, 'open', lambda path, **kw: calls.append(kw) or real_open(path, **kw))
    first = LmdbSource(src['lmdb'])
    second = LmdbSource(src['lmdb'])  # py-lmdb refuses a second open: the handle is shared
    assert first.read(0) == second.read(0)
    assert len(calls) == 1 and calls[0]['readonly'] and not calls[0]['lock'] and not calls[0][
        'readahead']
    pid = os.fork()
    if pid == 0:  # the parent closed its handle before the fork: the child opens its own
        os._exit(0 if first.read(1) and len(image_sources._lmdb_envs) == 1 else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert image_sources._lmdb_envs == {}  # closed in the parent, re-opened on the next read
    assert first.read(1) and len(calls) == 2


def test_background_paths_are_relative_to_the_dataset_data_root(tmp_path, make_sources):
    src = make_sources(tmp_path)
    root = src['list']  # persons/, frames/, persons.txt, frames.txt
    frames = {osp.join(root, f'frames/f00{i}.jpg') for i in range(3)}

    def backgrounds(**kwargs):
        ds = PersonImageDataset(data_root=root, ann_file='persons.txt', **kwargs)
        return {ds.get_background_path(i) for i in range(ds.num_backgrounds)}

    assert backgrounds(background=dict(ann_file='frames.txt')) == frames
    assert backgrounds(background='frames') == frames  # a folder, also relative
    assert backgrounds(background=osp.join(root, 'frames')) == frames  # absolute: as is
    # its own data_root wins (here: the LMDB of the same frames)
    lmdb_bg = backgrounds(background=dict(data_root=src['lmdb_bg']))
    assert lmdb_bg == {osp.join(src['lmdb_bg'], 'lmdb') + f'[f00{i}]' for i in range(3)}
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'image folder not found: {root}/nowhere; set `train_dataloader.dataset.background`: '
            f"relative background paths are relative to the dataset's data_root {root!r}")):
        backgrounds(background='nowhere')
    with pytest.raises(FileNotFoundError, match=re.escape(
            '(or `train_dataloader.dataset.background.data_root`): relative background paths '
            f"are relative to background.data_root '{tmp_path}'")):
        backgrounds(background=dict(data_root=str(tmp_path), ann_file='frames.txt'))
