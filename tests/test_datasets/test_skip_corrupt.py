"""PersonImageDataset(skip_corrupt=True) skips undecodable images and logs each one."""
import re

import numpy as np
import pytest
from mmengine.logging import MMLogger

from saip_mm.datasets import PersonImageDataset
from saip_mm.datasets.transforms.loading import CorruptImageError
from saip_testlib import LogRecords


@pytest.fixture
def folders(tmp_path, make_images):
    make_images(tmp_path / 'persons', ['a.png', 'c.png'])
    (tmp_path / 'persons' / 'b.png').write_bytes(b'not a png')  # index 1 (sorted)
    make_images(tmp_path / 'backgrounds', ['bg.png'])
    return tmp_path


def _dataset(root, **kwargs):
    return PersonImageDataset(data_root=str(root / 'persons'),
                              background=str(root / 'backgrounds'),
                              pipeline=[dict(type='LoadPersonImage')], **kwargs)


def test_default_stops_with_the_path(folders):
    corrupt = str(folders / 'persons' / 'b.png')
    with pytest.raises(CorruptImageError, match=re.escape(corrupt)) as err:
        _dataset(folders)[1]
    assert isinstance(err.value, ValueError) and err.value.path == corrupt


def test_skip_corrupt_logs_each_file_and_a_count(folders):
    corrupt = str(folders / 'persons' / 'b.png')
    ds = _dataset(folders, skip_corrupt=True)
    records = LogRecords()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        np.random.seed(0)
        sample = ds[1]
        assert sample['img_path'] != corrupt and sample['img'].shape == (48, 24, 3)
        assert ds.num_skipped >= 1
        first = ds.num_skipped
        ds[1]
    finally:
        logger.removeHandler(records)
    assert ds.num_skipped >= first + 1
    expected = [f'PersonImageDataset: skipped corrupt image {corrupt} '
                f'({n} skipped so far in this process)' for n in range(1, ds.num_skipped + 1)]
    assert [m for m in records.messages if 'skipped corrupt' in m] == expected
    assert ds[0]['img_path'] == str(folders / 'persons' / 'a.png')  # good images load as usual
