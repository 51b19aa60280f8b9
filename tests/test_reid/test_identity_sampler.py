import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from saip_mm.datasets.samplers import IdentitySampler, num_pk_batches

ROOT = Path(__file__).resolve().parents[2]


class PidList:
    """The part of a ReID dataset the sampler uses."""

    def __init__(self, pids):
        self.pids = list(pids)

    def __len__(self):
        return len(self.pids)

    def get_pids(self):
        return self.pids


# identity -> number of images: fewer than K, exactly K, and many (capped per batch count)
COUNTS = {10: 1, 11: 2, 12: 5, 13: 4, 14: 3, 15: 7, 16: 2, 17: 9}
DATASET = PidList([pid for pid, n in COUNTS.items() for _ in range(n)])


def batches_of(sampler):
    flat = list(sampler)
    assert len(flat) == len(sampler)
    size = sampler.batch_size
    assert len(flat) % size == 0
    return [flat[i:i + size] for i in range(0, len(flat), size)]


def check_pk(batch, p, k):
    pids = [DATASET.pids[i] for i in batch]
    counts = Counter(pids)
    assert len(counts) == p and set(counts.values()) == {k}, counts
    # the K images of an identity are consecutive in the batch
    assert all(len(set(pids[i:i + k])) == 1 for i in range(0, len(pids), k))


def test_num_pk_batches():
    assert num_pk_batches([5, 1, 1], 2) == 2  # 3 would need identity 0 twice in a batch
    assert num_pk_batches([2, 2, 2], 3) == 2
    assert num_pk_batches([4], 2) == 0


def test_every_batch_has_p_identities_times_k_images():
    sampler = IdentitySampler(DATASET, num_identities=3, num_instances=2, seed=3)
    # chunks of 2: 1+1+2+2+1+3+1+4 = 15 -> 5 batches of 3 identities
    assert sampler.num_batches == 5 and len(sampler) == 30
    batches = batches_of(sampler)
    for batch in batches:
        check_pk(batch, 3, 2)
    # images of identities with >= K images are not repeated within an epoch
    flat = [i for b in batches for i in b if COUNTS[DATASET.pids[i]] >= 2]
    assert len(flat) == len(set(flat))
    # deterministic for a seed and epoch; another epoch reshuffles
    again = IdentitySampler(DATASET, num_identities=3, num_instances=2, seed=3)
    assert batches_of(again) == batches
    again.set_epoch(1)
    assert batches_of(again) != batches


def test_two_ranks_split_whole_identity_batches():
    kwargs = dict(num_identities=2, num_instances=2, seed=7)
    ranks = [IdentitySampler(DATASET, rank=r, world_size=2, **kwargs) for r in range(2)]
    single = IdentitySampler(DATASET, **kwargs)
    # 15 chunks -> 7 batches of 2 identities -> 6 (a multiple of the 2 processes), 3 per rank
    assert [len(s) for s in ranks] == [12, 12]
    per_rank = [batches_of(s) for s in ranks]
    for batches in per_rank:
        for batch in batches:
            check_pk(batch, 2, 2)
    # the ranks share out one global sequence of batches
    global_batches = ranks[0].global_batches()
    assert global_batches == ranks[1].global_batches()
    assert per_rank[0] == global_batches[0::2] and per_rank[1] == global_batches[1::2]
    assert len(single) == 6 * 4 + 4  # alone, the 7th batch is kept


def test_too_few_identities():
    with pytest.raises(ValueError, match='lower num_identities'):
        IdentitySampler(PidList([1, 1, 2, 2]), num_identities=3, num_instances=2, seed=0)


SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch.distributed as dist
    dist.init_process_group('gloo')
    sys.path.insert(0, sys.argv[1])
    from saip_mm.datasets.samplers import IdentitySampler

    class PidList:
        def __init__(self, pids): self.pids = pids
        def __len__(self): return len(self.pids)
        def get_pids(self): return self.pids

    pids = json.loads(sys.argv[2])
    sampler = IdentitySampler(PidList(pids), num_identities=2, num_instances=2)  # seed broadcast
    sampler.set_epoch(3)
    with open(os.path.join(sys.argv[3], f'rank{dist.get_rank()}.json'), 'w') as f:
        json.dump(dict(indices=list(sampler), seed=sampler.seed), f)
    dist.destroy_process_group()
''')


# A real 2-process gloo run (about 15 s on 2 cores); the rank logic alone is also covered by
# test_two_ranks_split_whole_identity_batches.
def test_under_torchrun_with_two_processes(tmp_path):
    script = tmp_path / 'sampler_dist.py'
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
         str(script), str(ROOT), json.dumps(DATASET.pids),
         str(tmp_path)],
        check=True, capture_output=True, text=True, env=env, timeout=120)
    out = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in range(2)]
    assert out[0]['seed'] == out[1]['seed']  # one seed for both processes
    sizes = [len(o['indices']) for o in out]
    assert sizes == [12, 12]
    batches = [[o['indices'][i:i + 4] for i in range(0, 12, 4)] for o in out]
    for rank_batches in batches:
        for batch in rank_batches:
            check_pk(batch, 2, 2)
    reference = IdentitySampler(DATASET, num_identities=2, num_instances=2, seed=out[0]['seed'],
                                rank=1, world_size=2)
    reference.set_epoch(3)
    assert list(reference) == out[1]['indices']
