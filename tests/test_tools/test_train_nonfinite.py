"""A non-finite loss stops tools/train.py before the step; the last good checkpoint stays."""
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'tests' / 'data' / 'configs' / 'saip_micro_toy.py'


def _train(work: Path, data_root: Path, *options: str, resume: bool = False):
    cmd = [sys.executable, str(ROOT / 'tools' / 'train.py'), str(CONFIG), '--work-dir', str(work)]
    if resume:
        cmd.append('--resume')
    cmd += ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}', *options]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(person_folder, tmp_path):
    work = tmp_path / 'work'
    first = _train(work, person_folder, 'train_cfg.max_iters=2')
    assert first.returncode == 0, first.stderr[-3000:]
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')

    # Resume with a normalisation std of 1e-30: the views become huge, the loss NaN.
    broken = _train(work, person_folder, 'train_cfg.max_iters=4',
                    'train_dataloader.dataset.pipeline.1.std=[1e-30,1e-30,1e-30]', resume=True)
    assert broken.returncode != 0
    assert 'FloatingPointError: SAIP: non-finite loss at iteration 3: loss_csm=nan' in \
        broken.stderr, broken.stderr[-3000:]
    assert 'Stopped before the optimizer step and the teacher update' in broken.stderr
    # No checkpoint of the broken state; the newest is still the last good one, all finite.
    assert not (work / 'iter_3.pth').exists()
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    state = torch.load(work / 'iter_2.pth', map_location='cpu')['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
