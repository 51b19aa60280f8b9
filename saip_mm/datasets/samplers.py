"""P×K identity sampler for metric learning: each batch holds P identities with K images each."""
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmpretrain.registry import DATA_SAMPLERS


def _sample_pids(dataset) -> List[int]:
    if hasattr(dataset, 'get_pids'):
        return list(dataset.get_pids())
    pids = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if 'pid' in info:
            pids.append(int(info['pid']))
        elif 'gt_label' in info:
            pids.append(int(np.asarray(info['gt_label']).reshape(-1)[0]))
        else:
            raise KeyError(f'IdentitySampler: sample {i} has neither `pid` nor `gt_label`')
    return pids


def num_pk_batches(chunks_per_identity: Sequence[int], num_identities: int) -> int:
    """The most batches of ``num_identities`` distinct identities the chunks can fill.

    An identity cannot appear twice in a batch, so one with more chunks than there are batches
    contributes only as many chunks as there are batches. This is the largest ``N`` with
    ``sum_i min(c_i, N) >= N * P``; the fixed-point iteration from ``sum_i c_i // P`` only
    decreases and stops there.

    Args:
        chunks_per_identity (Sequence[int]): ``c_i``, chunks of K images of each identity.
        num_identities (int): ``P``.

    Returns:
        int: ``N``.
    """
    counts = np.asarray(chunks_per_identity, dtype=np.int64)
    n = int(counts.sum()) // num_identities
    while n > 0:
        fill = int(np.minimum(counts, n).sum()) // num_identities
        if fill >= n:
            return n
        n = fill
    return 0


@DATA_SAMPLERS.register_module()
class IdentitySampler(Sampler):
    """Yield batches of ``P`` identities × ``K`` images (the P×K sampling of batch-hard triplet).

    Per epoch, each identity's images are shuffled and cut into chunks of ``K`` (an identity
    with fewer than ``K`` images gives one chunk drawn with replacement; a remainder shorter
    than ``K`` is dropped). The chunks, grouped by identity in a random identity order, are
    dealt round-robin into ``N`` batches: chunk ``j`` goes to batch ``j mod N``. An identity's
    chunks are consecutive and at most ``N`` (see :func:`num_pk_batches`), so they land in
    different batches: every batch has ``P`` distinct identities. The batch order is shuffled.
    ``N`` depends only on the dataset, so the epoch length is fixed.

    Distributed: all processes draw the same global batches (same seed and epoch); process
    ``r`` of ``W`` takes batches ``r, r + W, ...``, so each gets whole identities (all ``K``
    images of a chunk in one process) and the same number of batches (``N`` is rounded down to
    a multiple of ``W``).

    The dataloader's ``batch_size`` must equal ``num_identities * num_instances`` (per
    process). Identities come from the dataset's ``get_pids()``, else each sample's ``pid``,
    else its ``gt_label``.

    Args:
        dataset (Dataset): the training dataset.
        num_identities (int): ``P``, identities per batch. Defaults to 16 (BoT: 16 × 4 = 64).
        num_instances (int): ``K``, images per identity. Defaults to 4.
        shuffle (bool): shuffle; False gives a deterministic order (for debugging).
            Defaults to True.
        seed (int, optional): random seed, the same on every process; None draws one and
            broadcasts it from rank 0. Defaults to None.
        rank (int, optional): this process's rank; None asks ``torch.distributed``.
        world_size (int, optional): number of processes; None asks ``torch.distributed``.
    """

    def __init__(self,
                 dataset,
                 num_identities: int = 16,
                 num_instances: int = 4,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        if num_identities < 1 or num_instances < 1:
            raise ValueError(f'num_identities and num_instances must be >= 1, got '
                             f'{num_identities} and {num_instances}')
        dist_rank, dist_world = get_dist_info()
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'rank {self.rank} outside world size {self.world_size}')
        self.dataset = dataset
        self.num_identities = num_identities
        self.num_instances = num_instances
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0

        self.index_by_pid: Dict[int, List[int]] = defaultdict(list)
        for idx, pid in enumerate(_sample_pids(dataset)):
            self.index_by_pid[pid].append(idx)
        self.pids = sorted(self.index_by_pid)
        chunks = [max(1, len(self.index_by_pid[p]) // num_instances) for p in self.pids]
        num_batches = num_pk_batches(chunks, num_identities)
        self.num_batches = num_batches - num_batches % self.world_size
        if self.num_batches == 0:
            raise ValueError(
                f'IdentitySampler: {len(self.pids)} identities ({sum(chunks)} chunks of '
                f'{num_instances} images) cannot fill {self.world_size} batch(es) of '
                f'{num_identities} distinct identities; lower num_identities.')

    @property
    def batch_size(self) -> int:
        """Images per batch and process, P×K."""
        return self.num_identities * self.num_instances

    def _chunks(self, rng: np.random.RandomState) -> List[List[int]]:
        """All chunks of K indices, grouped by identity, identities in (random) order."""
        pids = list(self.pids)
        if self.shuffle:
            rng.shuffle(pids)
        chunks = []
        k = self.num_instances
        for pid in pids:
            idxs = np.asarray(self.index_by_pid[pid])
            if len(idxs) < k:  # too few images: draw K with replacement
                idxs = rng.choice(idxs, k, replace=True) if self.shuffle else np.resize(idxs, k)
            elif self.shuffle:
                idxs = rng.permutation(idxs)
            own = [idxs[i * k:(i + 1) * k].tolist() for i in range(len(idxs) // k)]
            chunks += own[:self.num_batches]  # more would put the identity twice in a batch
        return chunks

    def global_batches(self, epoch: Optional[int] = None) -> List[List[int]]:
        """The batches of all processes for ``epoch`` (default: the current one)."""
        rng = np.random.RandomState((self.seed + (self.epoch if epoch is None else epoch))
                                    % 2**32)
        chunks = self._chunks(rng)[:self.num_batches * self.num_identities]
        batches = [[] for _ in range(self.num_batches)]
        for j, chunk in enumerate(chunks):
            batches[j % self.num_batches] += chunk
        order = rng.permutation(self.num_batches) if self.shuffle else range(self.num_batches)
        return [batches[b] for b in order]

    def __iter__(self) -> Iterator[int]:
        for batch in self.global_batches()[self.rank::self.world_size]:
            yield from batch

    def __len__(self) -> int:
        return self.num_batches // self.world_size * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (called by MMEngine's ``DistSamplerSeedHook``)."""
        self.epoch = epoch
