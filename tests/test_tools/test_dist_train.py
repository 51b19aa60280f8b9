"""Every pretraining config in configs/saip/ trains in 2-process DDP (tools/train.py
--launcher pytorch over gloo, the code path of tools/dist_train.sh CONFIG 2).

Each config gets the small model of the wiring tests, batch 2 per process and 2 iterations; one
torchrun runs them all (tests/dist_train_testlib.py). The ablations and the distillation-only
config used to stop at step 2 ("Expected to have finished reduction in the prior iteration"):
their unused backbone modules had no gradient.
"""
from pathlib import Path

import pytest
import torch

from dist_train_testlib import rehearsal_config, run_jobs, write_teacher_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.name for p in (ROOT / 'configs' / 'saip').glob('*.py'))
LN_INTER = {'backbone.ln_inter.weight', 'backbone.ln_inter.bias'}


def modules_of(params):
    """``backbone.layers.2.attn.qkv.weight`` → ``backbone.layers.2``; ``backbone.ln1.bias`` →
    ``backbone.ln1``."""
    return {'.'.join(n.split('.')[:3]) if n.startswith('backbone.layers.') else n.rsplit('.', 1)[0]
            for n in params}


@pytest.fixture(scope='module')
def rehearsals(tmp_path_factory, person_folder):
    tmp = tmp_path_factory.mktemp('dist_configs')
    teacher = write_teacher_checkpoint(tmp / 'teacher.pth')
    jobs = []
    for name in CONFIGS:
        config = rehearsal_config(ROOT / 'configs' / 'saip' / name, tmp / name, person_folder,
                                  teacher)
        jobs.append(dict(name=name, argv=[str(config), '--work-dir', str(tmp / 'work' / name)]))
    return run_jobs(jobs, tmp / 'out', port=29631)


@pytest.mark.parametrize('config', CONFIGS)
def test_config_trains_two_iterations_in_two_processes(rehearsals, config):
    ranks = rehearsals[config]
    assert [r['error'] for r in ranks] == [None, None]
    assert [r['iter'] for r in ranks] == [2, 2]
    assert ranks[0]['weights'] == ranks[1]['weights']  # DDP kept the replicas equal
    frozen = set(ranks[0]['frozen'])
    if config.startswith(('saip-csm_', 'kd_')):  # no CSR, no CSS: nothing reads `inter`
        assert frozen == LN_INTER
    elif config.startswith(('saip-csr_', 'saip-css_', 'saip-csr-css_')):  # no CSM, no KD
        # the blocks after `inter` (block 2 of 4) and the final norm: 2 x 12 tensors + 2
        assert modules_of(frozen) == {'backbone.layers.2', 'backbone.layers.3', 'backbone.ln1'}
        assert len(frozen) == 26
    else:
        assert frozen == set()
    # every process's random states in the checkpoint, each its own (diff_rank_seed)
    ckpt = torch.load(Path(ranks[0]['work_dir']) / 'iter_2.pth', map_location='cpu')
    states = ckpt['rng_states']
    assert len(states) == 2 and torch.equal(ckpt['rng_state']['torch'], states[0]['torch'])
    assert not torch.equal(states[0]['torch'], states[1]['torch'])
