import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from mmpretrain.structures import DataSample
from saip_mm.evaluation import ReIDMetric, reid_metrics

# 1-D features with Euclidean distance: the ranking is readable by eye.
#            feat   pid  cam
GALLERY = [(0.10, 1, 1),  # g0: same identity and camera as query A -> removed for A
           (0.20, 2, 2),  # g1
           (0.30, 1, 2),  # g2: A's first valid match
           (0.35, -1, 2),  # g3: junk -> ignored
           (0.40, 0, 3),  # g4: distractor -> a negative
           (0.50, 1, 3),  # g5: A's second match
           (10.1, 3, 1)]  # g6: query B's only image of its identity, same camera -> removed
QUERY = [(0.00, 1, 1),  # A: ranking g0 (removed) g1 g2* g3 (junk) g4 g5*
         (10.0, 3, 1),  # B: no valid match
         (0.21, 2, 1)]  # C: ranking g1* g2 g0 ...


def split(rows):
    feats, pids, cams = zip(*rows)
    return torch.tensor(feats)[:, None], list(pids), list(cams)


def test_hand_computed_protocol():
    res = reid_metrics(*split(QUERY), *split(GALLERY), dist='euclidean')
    # A: hits at ranks 2 and 4 of the kept list -> AP = (1/2 + 2/4) / 2 = 0.5, first hit 2
    # C: hit at rank 1 -> AP = 1;  B has no valid match and is left out
    assert res['mAP'] == pytest.approx(75.0)
    assert res['rank-1'] == pytest.approx(50.0)
    assert res['rank-5'] == pytest.approx(100.0)
    assert res['rank-10'] == pytest.approx(100.0)
    assert (res['num_valid_queries'], res['num_invalid_queries']) == (2, 1)


def test_junk_is_a_negative_when_not_declared_junk():
    res = reid_metrics(*split(QUERY[:1]), *split(GALLERY), dist='euclidean', junk_pids=())
    # g3 counts as a negative: hits at ranks 2 and 5 -> (1/2 + 2/5) / 2
    assert res['mAP'] == pytest.approx(45.0)


def test_all_queries_without_match_give_nan_with_warning():
    with pytest.warns(UserWarning, match='none of the 1 queries'):
        res = reid_metrics(*split(QUERY[1:2]), *split(GALLERY), dist='euclidean')
    assert math.isnan(res['mAP']) and math.isnan(res['rank-1'])
    assert (res['num_valid_queries'], res['num_invalid_queries']) == (0, 1)


def reference_reid(qf, qp, qc, gf, gp, gc):
    """Loop-by-loop Market-1501 protocol with cosine distance, for comparison."""
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    aps, r1 = [], []
    for i in range(len(qf)):
        order = np.argsort(1 - gf @ qf[i], kind='stable')
        kept = [j for j in order if not (gp[j] == qp[i] and gc[j] == qc[i]) and gp[j] != -1]
        good = [gp[j] == qp[i] for j in kept]
        if not any(good):
            continue
        hits = np.flatnonzero(good)
        aps.append(np.mean([(n + 1) / (r + 1) for n, r in enumerate(hits)]))
        r1.append(hits[0] == 0)
    return 100 * np.mean(aps), 100 * np.mean(r1)


def test_matches_reference_with_chunking():
    rng = np.random.RandomState(0)
    qf, gf = rng.randn(23, 8), rng.randn(57, 8)
    qp, qc = rng.randint(0, 6, 23), rng.randint(1, 4, 23)
    gp, gc = rng.randint(-1, 6, 57), rng.randint(1, 4, 57)
    ref_map, ref_r1 = reference_reid(qf, qp, qc, gf, gp, gc)
    res = reid_metrics(qf, qp, qc, gf, gp, gc, dist='cosine', chunk_size=5)
    assert res['mAP'] == pytest.approx(ref_map, abs=1e-4)
    assert res['rank-1'] == pytest.approx(ref_r1, abs=1e-4)


def test_metric_reads_any_model_predictions():
    """An Evaluator fed DataSamples carrying `pred_feature` (the ReIDHead's field) + metainfo."""
    samples = []
    for (feat, pid, cam), role in [(r, 'query') for r in QUERY] + [(r, 'gallery') for r in GALLERY]:
        sample = DataSample(metainfo=dict(pid=pid, camid=cam, split=role))
        sample.set_field(torch.tensor([feat, 1.0]), 'pred_feature')
        samples.append(sample)
    evaluator = Evaluator(ReIDMetric(dist='euclidean'))
    evaluator.process(samples[:4])
    evaluator.process(samples[4:])
    res = evaluator.evaluate(len(samples))
    assert res['reid/mAP'] == pytest.approx(75.0) and res['reid/rank-1'] == pytest.approx(50.0)

    metric = ReIDMetric()
    with pytest.raises(KeyError, match='meta_keys'):
        metric.process(None, [dict(pred_feature=torch.ones(2), pid=1, camid=1)])


def test_non_finite_features_are_refused_not_ranked():
    """A NaN/inf feature (a zero std, a diverged model) ranks arbitrarily into a number that
    save_best would keep; the metric refuses it, counting the rows and naming the causes."""
    samples = []
    for (feat, pid, cam), role in [(r, 'query') for r in QUERY] + [(r, 'gallery') for r in GALLERY]:
        samples.append(dict(pred_feature=torch.tensor([feat, 1.0]), pid=pid, camid=cam,
                            split=role))
    samples[1]['pred_feature'] = torch.tensor([math.nan, 1.0])  # a query
    samples[4]['pred_feature'] = torch.tensor([math.inf, math.inf])  # gallery g1
    samples[5]['pred_feature'] = torch.tensor([-math.inf, 0.0])  # gallery g2
    metric = ReIDMetric()
    metric.process(None, samples)
    with pytest.raises(ValueError) as err:
        metric.compute_metrics(metric.results)
    msg = str(err.value)
    assert msg.startswith('ReIDMetric: 1 of 3 query features and 2 of 7 gallery features are '
                          'not finite')
    assert 'model.data_preprocessor.std' in msg and 'diverged model' in msg
    # the function too (reid_frozen_eval ranks through it)
    qf, q_pids, q_cams = split(QUERY)
    gf, g_pids, g_cams = split(GALLERY)
    gf[3, 0] = math.nan
    with pytest.raises(ValueError, match='reid_metrics: 0 of 3 query features and 1 of 7 '
                                         'gallery features are not finite'):
        reid_metrics(qf, q_pids, q_cams, gf, g_pids, g_cams)
