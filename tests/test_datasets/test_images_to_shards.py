"""tools/dataset_converters/images_to_shards.py: index and shards agree, plain tar layout,
atomic output that follows the umask, no overwrite without --force."""
import io
import os
import os.path as osp
import stat
import tarfile

import numpy as np
import pytest

from saip_mm.datasets.image_sources import SHARD_INDEX, PathArray


def _index(out):
    with np.load(osp.join(out, SHARD_INDEX), allow_pickle=False) as npz:
        index = {k: npz[k] for k in npz.files}
    keys = PathArray.from_buffers(index['key_bytes'], index['key_ends'])
    return index, [keys[i] for i in range(len(keys))]


def _members(path):
    with tarfile.open(path) as tar:
        return [(m.name, m.offset_data, m.size, tar.extractfile(m).read())
                for m in tar.getmembers()]


def test_index_matches_the_shards_member_by_member(tmp_path, make_sources, shard_converter):
    src = make_sources(tmp_path)
    out = str(tmp_path / 'out')
    summary = shard_converter.convert(src['folder'], out, shard_size=4, stream=io.StringIO())
    assert summary['images'] == 6 and summary['shards'] == 2 and summary['input'] == 'folder'
    index, keys = _index(out)
    assert list(index['shard_names']) == ['shard-000000.tar', 'shard-000001.tar']
    assert keys == [f'p{i:03d}.jpg' for i in range(6)]
    assert index['shard'].tolist() == [0, 0, 0, 0, 1, 1]
    members = _members(osp.join(out, 'shard-000000.tar')) + _members(
        osp.join(out, 'shard-000001.tar'))
    # plain tar, read sequentially (as WebDataset does): one <key>.jpg member per image, in
    # order, at the indexed offset and size, holding the source file's bytes unchanged
    for i, (name, offset, size, data) in enumerate(members):
        assert name == keys[i] and offset == index['offset'][i] and size == index['size'][i]
        with open(osp.join(src['folder'], keys[i]), 'rb') as f:
            assert data == f.read()
    for name, size in zip(index['shard_names'], index['shard_bytes']):
        assert osp.getsize(osp.join(out, name)) == size
    # fixed member metadata: the same input gives byte-identical shards
    again = str(tmp_path / 'again')
    shard_converter.convert(src['folder'], again, shard_size=4, stream=io.StringIO())
    for name in index['shard_names']:
        with open(osp.join(out, name), 'rb') as a, open(osp.join(again, name), 'rb') as b:
            assert a.read() == b.read()


def test_list_file_and_lmdb_inputs(tmp_path, make_sources, shard_converter):
    src = make_sources(tmp_path)
    listed = shard_converter.convert(osp.join(src['list'], 'frames.txt'), str(tmp_path / 'l'),
                                     stream=io.StringIO())
    assert listed['input'] == 'list'
    assert _index(str(tmp_path / 'l'))[1] == ['frames/f000.jpg', 'frames/f001.jpg',
                                              'frames/f002.jpg']
    lup = shard_converter.convert(src['lmdb'], str(tmp_path / 'lup'), shard_size=5,
                                  stream=io.StringIO())
    assert lup['input'] == 'lmdb' and lup['shards'] == 2
    index, keys = _index(str(tmp_path / 'lup'))
    assert keys == [f'p{i:03d}' for i in range(6)]  # LMDB keys as they are ...
    # ... and the members get the format's extension (WebDataset groups fields by it)
    assert [m[0] for m in _members(str(tmp_path / 'lup' / 'shard-000000.tar'))] == [
        f'p{i:03d}.jpg' for i in range(5)]
    with open(osp.join(src['list'], 'bad.txt'), 'w') as f:
        f.write('../outside.jpg\n')
    open(osp.join(src['list'], '..', 'outside.jpg'), 'wb').close()
    with pytest.raises(ValueError, match='not a path inside its root'):
        shard_converter.convert(osp.join(src['list'], 'bad.txt'), str(tmp_path / 'bad'),
                                stream=io.StringIO())


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_no_overwrite_without_force_and_modes_follow_the_umask(tmp_path, make_sources,
                                                               shard_converter, umask_022,
                                                               capsys):
    src = make_sources(tmp_path)
    out = str(tmp_path / 'out')
    shard_converter.main([src['folder'], out, '--shard-size', '4'])
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755
    files = sorted(os.listdir(out))
    assert files == ['shard-000000.tar', 'shard-000001.tar', SHARD_INDEX]
    assert {stat.S_IMODE(os.stat(osp.join(out, f)).st_mode) for f in files} == {0o644}
    assert 'train_dataloader.dataset.data_root=' + out in capsys.readouterr().out

    before = {f: os.stat(osp.join(out, f)).st_ino for f in files}
    with pytest.raises(SystemExit, match=f'error: {out} exists: pass --force'):
        shard_converter.main([src['folder_bg'], out])
    assert {f: os.stat(osp.join(out, f)).st_ino for f in os.listdir(out)} == before

    shard_converter.main([src['folder_bg'], out, '--force'])
    assert sorted(os.listdir(out)) == ['shard-000000.tar', SHARD_INDEX]
    assert _index(out)[1] == ['f000.jpg', 'f001.jpg', 'f002.jpg']
    assert not [p for p in os.listdir(tmp_path) if p.startswith('out.')]  # no .partial / .old

    with pytest.raises(SystemExit, match='holds the input'):
        shard_converter.main([src['folder'], osp.dirname(src['folder']), '--force'])


def test_an_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, make_sources,
                                                               shard_converter, monkeypatch):
    src = make_sources(tmp_path)
    out = str(tmp_path / 'out')
    seen = []
    real = shard_converter._read_files

    def interrupted(paths, keys):
        for i, item in enumerate(real(paths, keys)):
            if i == 5:
                # mid-run: shards are being written beside `out`, under a name that is not
                # `out`, and the index (the last file written) is not there yet
                seen.append(sorted(os.listdir(out + '.partial')))
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(shard_converter, '_read_files', interrupted)
    with pytest.raises(KeyboardInterrupt):
        shard_converter.convert(src['folder'], out, shard_size=4, stream=io.StringIO())
    assert seen == [['shard-000000.tar', 'shard-000001.tar']]
    assert not osp.exists(out) and not osp.exists(out + '.partial')

    # a killed run's leftover (no cleanup ran) is removed by the next run
    os.makedirs(out + '.partial')
    open(osp.join(out + '.partial', 'shard-000000.tar'), 'wb').close()
    monkeypatch.setattr(shard_converter, '_read_files', real)
    shard_converter.convert(src['folder'], out, shard_size=4, stream=io.StringIO())
    assert not osp.exists(out + '.partial') and len(_index(out)[1]) == 6
