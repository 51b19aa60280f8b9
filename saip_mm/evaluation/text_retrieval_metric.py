"""Text → image person retrieval metrics: Rank-k, mAP and mINP (the CUHK-PEDES protocol)."""
import math
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmpretrain.registry import METRICS
from .finite import check_finite


def text_to_image_metrics(similarity: torch.Tensor,
                          query_pids: Sequence[int],
                          gallery_pids: Sequence[int],
                          topk: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """Rank-k, mAP and mINP of text queries against an image gallery, from similarities.

    Each query (a caption) ranks the whole gallery (every test image) by decreasing similarity;
    the correct matches are the images of the caption's identity (all of them, not only the
    image the caption was written for). Ties keep the gallery order (a stable sort), as the
    reference implementations' sort does in practice; nothing is removed from the ranking.

    - Rank-k: share of queries with a correct match among the first k;
    - AP: mean of the precision at the rank of each correct match; mAP its mean over queries;
    - INP (Ye et al., 2021): number of correct matches / rank of the last (hardest) correct
      match; mINP its mean over queries.

    A query whose identity has no image in the gallery is left out and counted in
    ``num_invalid_queries`` (never the case in the released splits); with none valid the
    metrics are NaN, with a warning. A non-finite similarity raises a ValueError counting the
    queries (rows) that hold one.

    Args:
        similarity (Tensor): (Q, G) query × gallery similarities, larger is more similar.
        query_pids (Sequence[int]): (Q, ) query identities.
        gallery_pids (Sequence[int]): (G, ) gallery identities.
        topk (Sequence[int]): ranks k reported. Defaults to (1, 5, 10).

    Returns:
        dict: ``rank-k``, ``mAP`` and ``mINP`` in percent, ``num_valid_queries`` and
        ``num_invalid_queries``.
    """
    sim = torch.as_tensor(similarity, dtype=torch.float32)
    q_pids = torch.as_tensor(np.asarray(query_pids), dtype=torch.long)
    g_pids = torch.as_tensor(np.asarray(gallery_pids), dtype=torch.long)
    if sim.dim() != 2 or sim.shape != (len(q_pids), len(g_pids)):
        raise ValueError(f'similarity must be ({len(q_pids)}, {len(g_pids)}) for '
                         f'{len(q_pids)} queries and {len(g_pids)} gallery items, got '
                         f'{tuple(sim.shape)}')
    check_finite('text_to_image_metrics', ('query similarity rows', sim))
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices
    matches = g_pids[order] == q_pids[:, None]  # (Q, G) correct match at each rank
    num_matches = matches.sum(dim=1)
    valid = num_matches > 0
    num_invalid = int((~valid).sum())
    results: Dict[str, float] = {}
    topk = tuple(int(k) for k in topk)
    if not valid.any():
        warnings.warn(f'text-to-image evaluation: none of the {len(q_pids)} queries has an '
                      f'image of its identity in the gallery; the metrics are NaN')
        results.update({f'rank-{k}': math.nan for k in topk})
        results.update(mAP=math.nan, mINP=math.nan)
    else:
        matches, num_matches = matches[valid], num_matches[valid].float()
        ranks = torch.arange(1, matches.size(1) + 1, dtype=torch.float32)  # 1-based
        hits = matches.float()
        precision = hits.cumsum(dim=1) / ranks
        ap = (precision * hits).sum(dim=1) / num_matches
        first_rank = torch.where(matches, ranks, torch.full_like(ranks, math.inf)).min(1).values
        last_rank = (hits * ranks).max(dim=1).values
        inp = num_matches / last_rank
        results.update(
            {f'rank-{k}': (first_rank <= k).float().mean().item() * 100 for k in topk})
        results.update(mAP=ap.mean().item() * 100, mINP=inp.mean().item() * 100)
    results['num_valid_queries'] = len(q_pids) - num_invalid
    results['num_invalid_queries'] = num_invalid
    return results


@METRICS.register_module()
class TextPersonRetrievalMetric(BaseMetric):
    """Text → image retrieval: every caption of the test split against every test image.

    Each data sample is one image with its captions, as the text-person datasets give them
    outside the training split, after :class:`~saip_mm.models.TextPersonRetriever`'s
    ``predict``. It must hold ``image_feature`` (C, ), ``text_features`` (n, C) and ``pid``.
    The similarity is the cosine of the embeddings; the protocol is the one of
    :func:`text_to_image_metrics`. A non-finite embedding (NaN/inf: a zero std in the data
    preprocessor, a diverged model) raises a ValueError counting them instead of ranking
    them. Metric names (prefix ``t2i``): ``t2i/rank-1``,
    ``t2i/rank-5``, ``t2i/rank-10``, ``t2i/mAP``, ``t2i/mINP`` (percent), and
    ``t2i/num_valid_queries``, ``t2i/num_invalid_queries``.

    Args:
        topk (Sequence[int]): ranks k reported. Defaults to (1, 5, 10).
        chunk_size (int): queries ranked at a time (bounds memory to chunk_size × gallery).
            Defaults to 1024.
        collect_device (str): 'cpu' or 'gpu' for collecting results across processes.
            Defaults to 'cpu'.
        prefix (str, optional): prefix of the metric names. Defaults to 't2i'.
    """
    default_prefix: Optional[str] = 't2i'

    def __init__(self,
                 topk: Sequence[int] = (1, 5, 10),
                 chunk_size: int = 1024,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)
        self.chunk_size = chunk_size

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep each image's embedding, its captions' embeddings and its identity."""
        for sample in data_samples:
            missing = [k for k in ('image_feature', 'text_features', 'pid') if k not in sample]
            if missing:
                raise KeyError(
                    f'TextPersonRetrievalMetric: data sample lacks {missing} (has '
                    f'{sorted(sample)}). The model must set image_feature / text_features '
                    f'(TextPersonRetriever.predict); `pid` and `captions` come from the '
                    f'dataset and must be listed in PackInputs(meta_keys=...).')
            text = torch.as_tensor(sample['text_features']).detach().cpu().float()
            self.results.append(dict(
                image=torch.as_tensor(sample['image_feature']).detach().cpu().float().flatten(),
                text=text.reshape(-1, text.shape[-1]), pid=int(sample['pid'])))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Rank the images for every caption; Rank-k, mAP, mINP."""
        if not results:
            raise ValueError('TextPersonRetrievalMetric: no samples to evaluate')
        images = torch.stack([r['image'] for r in results])
        captions = torch.cat([r['text'] for r in results])
        check_finite('TextPersonRetrievalMetric', ('image features', images),
                     ('caption features', captions))
        gallery = F.normalize(images, dim=1)
        g_pids = [r['pid'] for r in results]
        queries = F.normalize(captions, dim=1)
        q_pids = [r['pid'] for r in results for _ in range(len(r['text']))]
        parts = []
        for start in range(0, len(queries), self.chunk_size):
            stop = start + self.chunk_size
            parts.append(text_to_image_metrics(queries[start:stop] @ gallery.t(),
                                               q_pids[start:stop], g_pids, self.topk))
        metrics = _merge(parts)
        if metrics['num_invalid_queries']:
            MMLogger.get_current_instance().warning(
                f"TextPersonRetrievalMetric: {metrics['num_invalid_queries']} of {len(queries)} "
                f'captions have no image of their identity in the gallery and are left out')
        return metrics


def _merge(parts: List[Dict[str, float]]) -> Dict[str, float]:
    """Combine the metrics of query chunks (weighted by their valid queries)."""
    valid = sum(p['num_valid_queries'] for p in parts)
    merged: Dict[str, float] = {}
    for key in parts[0]:
        if key.startswith('num_'):
            merged[key] = sum(p[key] for p in parts)
        elif valid == 0:
            merged[key] = math.nan
        else:
            merged[key] = sum(p[key] * p['num_valid_queries'] for p in parts
                              if p['num_valid_queries']) / valid
    return merged
