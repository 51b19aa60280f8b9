"""tools/train.py writes an error raised inside training to the run's log file, not only the
console; skipped corrupt images are logged there too."""
import shutil
from pathlib import Path

import pytest

from saip_mm.datasets.transforms.loading import CorruptImageError

ROOT = Path(__file__).resolve().parents[2]
MICRO = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'


def _train(train_tool, work: Path, data: Path, *options: str) -> None:
    """``tools/train.py MICRO`` in this process; a unique experiment name keeps the loggers
    of the runs apart."""
    train_tool.main([str(MICRO), '--work-dir', str(work), '--cfg-options',
                     f'train_dataloader.dataset.data_root={data}',
                     f'experiment_name={work.parent.name}', *options])


def _log_text(work: Path) -> str:
    logs = sorted(work.glob('*/*.log'))
    assert len(logs) == 1, logs
    return logs[0].read_text()


def test_a_data_error_reaches_the_log_file(train_tool, tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    corrupt = data / 'person_000.jpg'
    corrupt.write_bytes(b'truncated download')
    work = tmp_path / 'work'
    with pytest.raises(CorruptImageError):
        _train(train_tool, work, data)
    log = _log_text(work)
    assert 'Checkpoints will be saved to' in log  # the run's log, up to the failure ...
    assert 'Training stopped by an exception:' in log  # ... then the error, with traceback
    assert 'Traceback (most recent call last)' in log
    assert ('CorruptImageError: cannot decode image file (corrupt or not an image): '
            f'{corrupt}') in log


def test_skipped_corrupt_images_reach_the_log_file(train_tool, person_folder, tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    shutil.copy(person_folder / 'person_000.jpg', data / 'a_good.jpg')
    corrupt = data / 'b_corrupt.jpg'
    corrupt.write_bytes(b'truncated download')
    work = tmp_path / 'work'
    # batch 2 of a 2-image dataset: the first batch asks for the corrupt image
    _train(train_tool, work, data, 'train_dataloader.dataset.skip_corrupt=True',
           f'train_dataloader.dataset.background={person_folder}', 'train_cfg.max_iters=1')
    assert (f'PersonImageDataset: skipped corrupt image {corrupt} '
            '(1 skipped so far in this process)') in _log_text(work)
