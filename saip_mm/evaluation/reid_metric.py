"""Person re-identification retrieval metrics: mAP and CMC rank-k (Market-1501 protocol)."""
import math
import warnings
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmpretrain.registry import METRICS
from .finite import check_finite

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]


def _as_tensor(x: ArrayLike, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def pairwise_distance(query_feats: torch.Tensor, gallery_feats: torch.Tensor,
                      dist: str = 'cosine') -> torch.Tensor:
    """Distances between every query and every gallery feature.

    Args:
        query_feats (Tensor): (Q, C).
        gallery_feats (Tensor): (G, C).
        dist (str): ``'cosine'`` (1 - cosine similarity) or ``'euclidean'``.
            Defaults to 'cosine'.

    Returns:
        Tensor: (Q, G), smaller is more similar.
    """
    if dist == 'cosine':
        return 1 - F.normalize(query_feats, dim=1) @ F.normalize(gallery_feats, dim=1).t()
    if dist == 'euclidean':
        return torch.cdist(query_feats, gallery_feats)
    raise ValueError(f"dist must be 'cosine' or 'euclidean', got {dist!r}")


def reid_metrics(query_feats: ArrayLike,
                 query_pids: ArrayLike,
                 query_camids: ArrayLike,
                 gallery_feats: ArrayLike,
                 gallery_pids: ArrayLike,
                 gallery_camids: ArrayLike,
                 dist: str = 'cosine',
                 topk: Sequence[int] = (1, 5, 10),
                 junk_pids: Sequence[int] = (-1, ),
                 chunk_size: int = 256) -> Dict[str, float]:
    """mAP and CMC rank-k of a query set against a gallery, standard Market-1501 protocol.

    For each query the gallery is ranked by distance, then these gallery entries are removed
    from its ranking (neither matches nor negatives):

    - same identity *and* same camera as the query (an identical view is not re-identification);
    - junk images, whose identity is in ``junk_pids`` (Market-1501's ``-1``).

    Distractors (Market-1501's identity ``0``) stay in the gallery as negatives. A query with
    no remaining gallery entry of its identity has no valid match: it is left out of mAP and
    CMC and counted in ``num_invalid_queries``. If no query is valid, mAP and rank-k are NaN
    and a warning says why.

    Non-finite features raise a ValueError (naming how many rows) instead of giving a number.

    AP is the non-interpolated average precision (mean of the precision at each correct match),
    as in the common ReID toolkits; CMC is single-gallery-shot-free ("all matches count").
    Ties in distance keep the gallery order.

    Args:
        query_feats (Tensor | ndarray): (Q, C) query features.
        query_pids (Sequence[int]): (Q, ) query identities.
        query_camids (Sequence[int]): (Q, ) query cameras.
        gallery_feats (Tensor | ndarray): (G, C) gallery features.
        gallery_pids (Sequence[int]): (G, ) gallery identities.
        gallery_camids (Sequence[int]): (G, ) gallery cameras.
        dist (str): ``'cosine'`` or ``'euclidean'``. Defaults to 'cosine'.
        topk (Sequence[int]): CMC ranks reported. Defaults to (1, 5, 10).
        junk_pids (Sequence[int]): gallery identities ignored. Defaults to (-1, ).
        chunk_size (int): queries ranked at a time (bounds memory to chunk_size x G).
            Defaults to 256.

    Returns:
        dict: ``mAP`` and ``rank-k`` in percent, ``num_valid_queries`` and
        ``num_invalid_queries``.
    """
    qf = _as_tensor(query_feats, torch.float32)
    gf = _as_tensor(gallery_feats, torch.float32)
    q_pids, q_cams = _as_tensor(query_pids, torch.long), _as_tensor(query_camids, torch.long)
    g_pids, g_cams = _as_tensor(gallery_pids, torch.long), _as_tensor(gallery_camids, torch.long)
    if qf.dim() != 2 or gf.dim() != 2 or qf.size(1) != gf.size(1):
        raise ValueError(f'features must be (Q, C) and (G, C), got {tuple(qf.shape)} and '
                         f'{tuple(gf.shape)}')
    if not len(q_pids) == len(q_cams) == len(qf):
        raise ValueError(f'{len(qf)} query features, {len(q_pids)} pids, {len(q_cams)} camids')
    if not len(g_pids) == len(g_cams) == len(gf):
        raise ValueError(f'{len(gf)} gallery features, {len(g_pids)} pids, {len(g_cams)} camids')
    check_finite('reid_metrics', ('query features', qf), ('gallery features', gf))
    topk = tuple(int(k) for k in topk)
    g_junk = torch.isin(g_pids, torch.as_tensor(list(junk_pids), dtype=torch.long))

    aps: List[torch.Tensor] = []
    cmc_hits = {k: [] for k in topk}
    num_invalid = 0
    for start in range(0, len(qf), chunk_size):
        stop = min(start + chunk_size, len(qf))
        order = pairwise_distance(qf[start:stop], gf, dist).argsort(dim=1, stable=True)
        pids, cams = g_pids[order], g_cams[order]  # (c, G) gallery identity/camera by rank
        match = pids == q_pids[start:stop, None]
        keep = ~((match & (cams == q_cams[start:stop, None])) | g_junk[order])
        hits = match & keep
        num_hits = hits.sum(dim=1)
        valid = num_hits > 0
        num_invalid += int((~valid).sum())
        if not valid.any():
            continue
        hits, keep, num_hits = hits[valid], keep[valid], num_hits[valid]
        # 1-based rank of each kept entry once removed entries are taken out
        rank = keep.long().cumsum(dim=1)
        cum_hits = hits.long().cumsum(dim=1)
        precision = cum_hits.float() / rank.clamp(min=1).float()
        aps.append((precision * hits).sum(dim=1) / num_hits.float())
        first_hit_rank = torch.where(hits, rank, torch.full_like(rank, rank.size(1) + 1))
        first_hit_rank = first_hit_rank.min(dim=1).values
        for k in topk:
            cmc_hits[k].append(first_hit_rank <= k)

    num_valid = len(qf) - num_invalid
    results: Dict[str, float] = {}
    if num_valid == 0:
        warnings.warn(f'ReID evaluation: none of the {len(qf)} queries has a valid match in the '
                      f'gallery (same identity seen by another camera); mAP and CMC are NaN.')
        results['mAP'] = math.nan
        results.update({f'rank-{k}': math.nan for k in topk})
    else:
        results['mAP'] = torch.cat(aps).mean().item() * 100
        results.update(
            {f'rank-{k}': torch.cat(cmc_hits[k]).float().mean().item() * 100 for k in topk})
    results['num_valid_queries'] = num_valid
    results['num_invalid_queries'] = num_invalid
    return results


@METRICS.register_module()
class ReIDMetric(BaseMetric):
    """Retrieval metrics for person ReID (mAP, CMC rank-k), from per-sample feature vectors.

    Works with any model whose ``predict`` returns data samples carrying a feature vector
    (for :class:`saip_mm.models.ReIDHead`, the BNNeck feature). Each data sample must hold:

    - ``feat_key`` (default ``pred_feature``): the (C, ) feature;
    - ``pid`` and ``camid``: identity and camera (ints);
    - ``split``: ``'query'`` or ``'gallery'``.

    The ReID datasets provide ``pid``, ``camid`` and ``split``; the config's ``PackInputs``
    must list them in ``meta_keys``. The protocol is the one of :func:`reid_metrics` (same
    identity and camera removed, junk identity ``-1`` ignored, distractors ``0`` kept as
    negatives, queries without a valid match left out and counted). A non-finite feature
    (NaN/inf: a zero std in the data preprocessor, a diverged model) raises a ValueError that
    counts them, rather than ranking them into a number.

    Cross-resolution evaluation: when the dataset emits each query once per setting (the ReID
    datasets' ``query_downsample``; each query sample carries ``query_setting``, ``'r1'``,
    ``'r2'`` ... ``'mixed'``, which ``PackInputs(meta_keys=...)`` must list), every setting's
    queries are ranked against the one gallery on their own, and the metrics of a setting other
    than r = 1 carry its name: ``mAP_r2``, ``rank-1_r2`` ... ``mAP_mixed`` (logged as
    ``reid/mAP_r2`` ...). r = 1 keeps the plain names (``reid/mAP``: what ``save_best`` keeps,
    the same number as without the other settings); ``num_valid_queries`` and
    ``num_invalid_queries`` are reported once, as they depend on identities and cameras
    only. A query without ``query_setting`` counts as r = 1. Doing it in one pass, rather than
    one evaluator per setting, embeds the gallery once.

    Args:
        dist (str): ``'cosine'`` or ``'euclidean'``. Defaults to 'cosine'.
        topk (Sequence[int]): CMC ranks reported. Defaults to (1, 5, 10).
        feat_key (str): data sample field holding the feature. Defaults to 'pred_feature'.
        junk_pids (Sequence[int]): gallery identities ignored. Defaults to (-1, ).
        collect_device (str): 'cpu' or 'gpu' for collecting results across processes.
            Defaults to 'cpu'.
        prefix (str, optional): prefix of the metric names. Defaults to 'reid'.
    """
    default_prefix: Optional[str] = 'reid'

    def __init__(self,
                 dist: str = 'cosine',
                 topk: Sequence[int] = (1, 5, 10),
                 feat_key: str = 'pred_feature',
                 junk_pids: Sequence[int] = (-1, ),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if dist not in ('cosine', 'euclidean'):
            raise ValueError(f"dist must be 'cosine' or 'euclidean', got {dist!r}")
        self.dist = dist
        self.topk = tuple(topk)
        self.feat_key = feat_key
        self.junk_pids = tuple(junk_pids)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each sample's feature, identity, camera and query/gallery role."""
        for sample in data_samples:
            missing = [k for k in (self.feat_key, 'pid', 'camid', 'split') if k not in sample]
            if missing:
                raise KeyError(
                    f'ReIDMetric: data sample lacks {missing} (has {sorted(sample)}). The model '
                    f'must set `{self.feat_key}`; `pid`, `camid` and `split` come from the ReID '
                    f'dataset and must be listed in PackInputs(meta_keys=...).')
            if sample['split'] not in ('query', 'gallery'):
                raise ValueError(f"ReIDMetric: split must be 'query' or 'gallery', got "
                                 f"{sample['split']!r} for {sample.get('img_path', 'a sample')}")
            feat = sample[self.feat_key]
            feat = feat.detach().cpu().float().flatten() if isinstance(feat, torch.Tensor) \
                else torch.as_tensor(np.asarray(feat), dtype=torch.float32).flatten()
            is_query = sample['split'] == 'query'
            self.results.append(
                dict(feat=feat, pid=int(sample['pid']), camid=int(sample['camid']),
                     is_query=is_query,
                     setting=(sample.get('query_setting') or 'r1') if is_query else None))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Rank the gallery for every query and compute mAP / CMC, per query setting."""
        query = [r for r in results if r['is_query']]
        gallery = [r for r in results if not r['is_query']]
        if not query or not gallery:
            raise ValueError(f'ReIDMetric needs both query and gallery samples, got '
                             f'{len(query)} query and {len(gallery)} gallery samples. Evaluate '
                             f"on the dataset's split='test' (query + gallery).")
        query_feats = torch.stack([r['feat'] for r in query])
        gallery_feats = torch.stack([r['feat'] for r in gallery])
        check_finite('ReIDMetric', ('query features', query_feats),
                     ('gallery features', gallery_feats))
        settings = self._query_settings(query)
        g_pids, g_cams = [r['pid'] for r in gallery], [r['camid'] for r in gallery]
        metrics: Dict[str, float] = {}
        for setting in settings:
            rows = [i for i, r in enumerate(query) if r['setting'] == setting]
            result = reid_metrics(
                query_feats[rows], [query[i]['pid'] for i in rows],
                [query[i]['camid'] for i in rows], gallery_feats, g_pids, g_cams,
                dist=self.dist, topk=self.topk, junk_pids=self.junk_pids)
            if setting == 'r1':
                metrics.update(result)
                if result['num_invalid_queries']:
                    MMLogger.get_current_instance().warning(
                        f"ReIDMetric: {result['num_invalid_queries']} of {len(rows)} queries "
                        f'have no valid gallery match and are left out of mAP/CMC.')
            else:
                metrics.update({f'{key}_{setting}': value for key, value in result.items()
                                if not key.startswith('num_')})
        return metrics

    def _query_settings(self, query: List[dict]) -> List[str]:
        """The settings of the queries, r = 1 first; checked against the dataset's
        ``query_settings`` (a sample that lost its ``query_setting`` would be ranked as r = 1
        and mix the settings into one number)."""
        seen = list(dict.fromkeys(r['setting'] for r in query))
        expected = (self.dataset_meta or {}).get('query_settings')
        if expected and sorted(seen) != sorted(expected):
            raise ValueError(
                f'ReIDMetric: the dataset emits the queries for the settings {list(expected)} '
                f'(its query_downsample), but the data samples carry {seen}; list '
                f"'query_setting' in the val pipeline's PackInputs(meta_keys=...)")
        if 'r1' not in seen:
            raise ValueError(f"ReIDMetric: no query of the setting 'r1' (as recorded) among "
                             f'{seen}; r = 1 gives the plain metric names (reid/mAP)')
        return ['r1'] + [s for s in seen if s != 'r1']
