"""Text -> image Rank-k / mAP / mINP against values worked out by hand."""
import math

import pytest
import torch

from saip_mm.evaluation import TextPersonRetrievalMetric, text_to_image_metrics

# Gallery identities: identity 1 and identity 2 have two images each, identity 3 one.
GALLERY_PIDS = [1, 2, 1, 3, 2]
SIMILARITY = torch.tensor([
    # q0 (identity 1): ranking g1 .9, g2 .5, g3 .5 (tie, gallery order), g0 .2, g4 .1
    #   identities by rank 2 1 3 1 2 -> hits at ranks 2 and 4
    #   AP = (1/2 + 2/4) / 2 = 0.5; INP = 2 hits / last hit at rank 4 = 0.5
    [0.2, 0.9, 0.5, 0.5, 0.1],
    # q1 (identity 2): g0, g2, g4 tie at .7 (kept in gallery order), then g1 .3, g3 0
    #   identities by rank 1 1 2 2 3 -> hits at ranks 3 and 4
    #   AP = (1/3 + 2/4) / 2 = 5/12; INP = 2 / 4 = 0.5
    [0.7, 0.3, 0.7, 0.0, 0.7],
    # q2 (identity 3): its only image g3 first -> AP = 1, INP = 1
    [0.1, 0.2, 0.3, 0.8, 0.4],
])
QUERY_PIDS = [1, 2, 3]


def test_hand_computed_ranks_map_minp():
    res = text_to_image_metrics(SIMILARITY, QUERY_PIDS, GALLERY_PIDS, topk=(1, 2, 3, 10))
    assert res['rank-1'] == pytest.approx(100 / 3)  # q2 only
    assert res['rank-2'] == pytest.approx(200 / 3)  # + q0 (first hit at rank 2)
    assert res['rank-3'] == pytest.approx(100)  # + q1 (first hit at rank 3)
    assert res['rank-10'] == pytest.approx(100)  # k beyond the gallery size
    assert res['mAP'] == pytest.approx(100 * (0.5 + 5 / 12 + 1) / 3)
    assert res['mINP'] == pytest.approx(100 * (0.5 + 0.5 + 1) / 3)
    assert res['num_valid_queries'] == 3 and res['num_invalid_queries'] == 0


def test_ties_keep_gallery_order():
    """Reordering tied gallery items changes the ranking as documented (stable sort)."""
    perm = [0, 1, 3, 2, 4]  # swap the tied g2 / g3 of q0
    res = text_to_image_metrics(SIMILARITY[:1, perm], [1], [GALLERY_PIDS[i] for i in perm],
                                topk=(1, 2))
    # identities by rank 2 3 1 1 2 -> hits at ranks 3, 4: AP = (1/3 + 2/4) / 2, INP = 2/4
    assert res['rank-2'] == 0
    assert res['mAP'] == pytest.approx(100 * 5 / 12)
    assert res['mINP'] == pytest.approx(50)


def test_query_without_gallery_identity_is_left_out():
    sim = torch.cat([SIMILARITY, torch.tensor([[0.9, 0.1, 0.1, 0.1, 0.1]])])
    res = text_to_image_metrics(sim, QUERY_PIDS + [9], GALLERY_PIDS, topk=(1, ))
    assert res['num_valid_queries'] == 3 and res['num_invalid_queries'] == 1
    assert res['rank-1'] == pytest.approx(100 / 3)
    with pytest.warns(UserWarning, match='none of the 1 queries'):
        res = text_to_image_metrics(sim[3:], [9], GALLERY_PIDS, topk=(1, ))
    assert math.isnan(res['mAP']) and math.isnan(res['rank-1'])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r'similarity must be \(3, 4\)'):
        text_to_image_metrics(SIMILARITY, QUERY_PIDS, GALLERY_PIDS[:4])


def test_metric_ranks_every_caption_against_every_image():
    """Two images (identities 1, 2), three captions. Captions of image 0: one points at
    image 0, one at image 1 (wrong); the caption of image 1 points at image 1.
    Caption 1 ranks image 1 first, image 0 second: AP = 1/2, INP = 1/2."""
    e0, e1 = torch.tensor([1., 0.]), torch.tensor([0., 1.])
    samples = [dict(image_feature=e0, text_features=torch.stack([e0, 2 * e1]), pid=1),
               dict(image_feature=3 * e1, text_features=e1[None], pid=2)]
    for chunk_size in (1024, 2):  # the second ranks the captions in two chunks
        metric = TextPersonRetrievalMetric(topk=(1, 2), chunk_size=chunk_size)
        metric.process({}, samples)
        res = metric.compute_metrics(metric.results)
        assert res['rank-1'] == pytest.approx(200 / 3)
        assert res['rank-2'] == pytest.approx(100)
        assert res['mAP'] == pytest.approx(100 * (1 + 0.5 + 1) / 3)
        assert res['mINP'] == pytest.approx(100 * (1 + 0.5 + 1) / 3)
        assert res['num_valid_queries'] == 3


def test_metric_names_missing_fields():
    metric = TextPersonRetrievalMetric()
    with pytest.raises(KeyError, match=r"lacks \['text_features'\]"):
        metric.process({}, [dict(image_feature=torch.ones(2), pid=1)])


def test_non_finite_embeddings_are_refused_not_ranked():
    e0, e1 = torch.tensor([1., 0.]), torch.tensor([0., 1.])
    metric = TextPersonRetrievalMetric()
    metric.process({}, [dict(image_feature=e0, text_features=torch.stack([e0, e1]), pid=1),
                        dict(image_feature=torch.tensor([math.nan, 1.]),
                             text_features=torch.tensor([[math.inf, 0.]]), pid=2)])
    with pytest.raises(ValueError) as err:
        metric.compute_metrics(metric.results)
    msg = str(err.value)
    assert msg.startswith('TextPersonRetrievalMetric: 1 of 2 image features and 1 of 3 '
                          'caption features are not finite')
    assert 'model.data_preprocessor.std' in msg and 'diverged model' in msg
    similarity = SIMILARITY.clone()
    similarity[2, 1] = math.nan
    with pytest.raises(ValueError, match='text_to_image_metrics: 1 of 3 query similarity rows'):
        text_to_image_metrics(similarity, QUERY_PIDS, GALLERY_PIDS)
