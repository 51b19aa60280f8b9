"""Cross-resolution ReID (issue 33): queries down-sampled by r from their recorded size, the
gallery as recorded; online (ReID dataset + QueryDownsample + ReIDMetric) and offline
(reid_frozen_eval.py --query-downsample), on conftest's write_market1501_split (4 identities:
one 64x32 query each from camera 1, two gallery images from cameras 2 and 3)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmpretrain.registry import DATASETS
from saip_mm.datasets.transforms.query_downsample import mixed_query_factors
from saip_mm.evaluation import ReIDMetric
from saip_testlib import micro_runner
from test_reid_metric import GALLERY, QUERY  # noqa: I100  (the hand-computed example)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools' / 'analysis_tools'))
sys.path.insert(0, str(ROOT / 'tools' / 'model_converters'))
import reid_frozen_eval  # noqa: E402

DEMO = ROOT / 'configs' / 'saip' / 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'
ALL = (1, 2, 3, 4, 'mixed')
SUFFIXES = ('', '_r2', '_r3', '_r4', '_mixed')
RANKS = ('mAP', 'rank-1', 'rank-5', 'rank-10')
MICRO_ARCH = dict(embed_dims=32, num_layers=8, num_heads=2, feedforward_channels=64)
SMALL_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


@pytest.fixture(autouse=True)
def _mmpretrain_scope():
    """Registry lookups as the Runner makes them: another test may leave another library's
    default scope current (mmpose's has no Market1501Dataset)."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


# ------------------------------------------------------------------ the dataset

def _infos(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_dataset_emits_each_query_once_per_setting(market1501_split):
    root = str(market1501_split)
    plain = _infos(DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='test')))
    dataset = DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='test',
                                  query_downsample=['mixed', 2, 3, 4]))  # 1 is added, first
    cross = _infos(dataset)
    assert len(plain) == 12 and len(cross) == 12 + 4 * 4
    # today's data list first, in today's order (its sample indices unchanged) ...
    for before, now in zip(plain, cross):
        assert {k: now[k] for k in before} == before
    assert [c.get('query_setting') for c in cross[:12]] == ['r1'] * 4 + [None] * 8
    # ... then the queries again, once per other setting, with their factors
    extra = cross[12:]
    assert [c['query_setting'] for c in extra] == ['mixed'] * 4 + ['r2'] * 4 + ['r3'] * 4 + \
        ['r4'] * 4
    assert [c['img_path'] for c in extra] == [c['img_path'] for c in plain[:4]] * 4
    assert [c['downsample_factor'] for c in extra[4:]] == [2] * 4 + [3] * 4 + [4] * 4
    assert [c['downsample_factor'] for c in extra[:4]] == mixed_query_factors(4, seed=0) == \
        [4, 3, 3, 2]
    assert dataset.metainfo['query_settings'] == ('r1', 'mixed', 'r2', 'r3', 'r4')
    reseeded = _infos(DATASETS.build(dict(type='Market1501Dataset', data_root=root,
                                          split='query', query_downsample=['mixed'],
                                          mixed_seed=1)))
    assert [c['downsample_factor'] for c in reseeded] == [1] * 4 + [3, 3, 4, 4]
    with pytest.raises(ValueError, match="query_downsample needs query images"):
        DATASETS.build(dict(type='Market1501Dataset', data_root=root, split='gallery',
                            query_downsample=[2]))


def test_online_pipeline_sees_the_pixels_of_reid_frozen_eval(market1501_split):
    """The demo's val pipeline (LoadImageFromFile, QueryDownsample, Resize, and the data
    preprocessor's BGR->RGB and normalisation) and reid_frozen_eval's load_images give the same
    input at every setting; the gallery is as recorded in both."""
    cfg = Config.fromfile(str(DEMO)).val_dataloader.dataset
    cfg.data_root = str(market1501_split)
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # as the Runner builds it
        dataset = DATASETS.build(cfg)
    seen = set()
    for i in range(len(dataset)):
        info, packed = dataset.get_data_info(i), dataset[i]
        factor = info.get('downsample_factor', 1)
        online = packed['inputs'].flip(0).float()  # (3, 256, 128), BGR -> RGB
        online = (online - torch.tensor(reid_frozen_eval.MEAN)[:, None, None]) / \
            torch.tensor(reid_frozen_eval.STD)[:, None, None]
        offline = reid_frozen_eval.load_images([info['img_path']], (256, 128),
                                               None if info['split'] == 'gallery' else [factor])
        assert torch.equal(online, offline[0]), (i, info)
        assert packed['data_samples'].metainfo.get('query_setting') == info.get('query_setting')
        seen.add((info['split'], info.get('query_setting'), factor))
    assert seen == {('gallery', None, 1), ('query', 'r1', 1), ('query', 'r2', 2),
                    ('query', 'r3', 3), ('query', 'r4', 4), ('query', 'mixed', 2),
                    ('query', 'mixed', 3), ('query', 'mixed', 4)}
    # a shrunk query differs from its recorded version (the setting is not a no-op)
    r4 = dataset.get_data_info(20)
    assert r4['query_setting'] == 'r4' and r4['img_path'] == dataset.get_data_info(0)['img_path']
    assert not torch.equal(dataset[0]['inputs'], dataset[20]['inputs'])


# ------------------------------------------------------------------ the online metric
def _samples(query_feats=None, settings=('r1', )):
    """The hand-computed example of test_reid_metric.py: the gallery once, the queries once
    per setting (``query_feats``: setting -> features; default the example's)."""
    samples = [dict(pred_feature=torch.tensor([f]), pid=p, camid=c, split='gallery')
               for f, p, c in GALLERY]
    for setting in settings:
        feats = (query_feats or {}).get(setting, [f for f, _, _ in QUERY])
        for f, (_, p, c) in zip(feats, QUERY):
            samples.append(dict(pred_feature=torch.tensor([f]), pid=p, camid=c, split='query',
                                query_setting=setting))
    return samples


def _evaluate(samples, settings=None):
    metric = ReIDMetric(dist='euclidean')
    metric.dataset_meta = None if settings is None else dict(query_settings=settings)
    metric.process(None, samples)
    return metric.compute_metrics(metric.results)


def test_metric_reports_every_setting_and_r1_as_before():
    settings = ('r1', 'r2', 'r3', 'r4', 'mixed')
    plain = _evaluate([{k: v for k, v in s.items() if k != 'query_setting'}
                       for s in _samples()])
    # the example: query A AP 1/2 (hits at ranks 2 and 4), C AP 1 (rank 1), B no valid match
    assert plain['mAP'] == pytest.approx(75.0) and plain['rank-1'] == pytest.approx(50.0)
    # a feature that ignores the resolution: every setting scores what r = 1 scores
    same = _evaluate(_samples(settings=settings), settings)
    assert set(same) == {m + s for s in SUFFIXES for m in RANKS} | {
        'num_valid_queries', 'num_invalid_queries'}
    assert {m: same[m] for m in plain} == plain  # r = 1: today's numbers, exactly
    for suffix in SUFFIXES:
        assert [same[m + suffix] for m in RANKS] == [plain[m] for m in RANKS], suffix
    # a feature that moves at r = 2: query C (pid 2) at 0.12 now has g0 (pid 1, 0.10) before
    # its match g1 (0.20): AP 1/2, first hit at rank 2; A unchanged (AP 1/2, rank 2)
    moved = _evaluate(_samples({'r2': [0.00, 10.0, 0.12]}, ('r1', 'r2')), ('r1', 'r2'))
    assert moved['mAP_r2'] == pytest.approx(50.0) and moved['rank-1_r2'] == 0.0
    assert moved['rank-5_r2'] == pytest.approx(100.0)
    assert {m: moved[m] for m in plain} == plain


def test_metric_refuses_mixed_up_settings():
    # the dataset emitted two settings, but PackInputs dropped query_setting: every query
    # would rank as r = 1, the two settings mixed into one number
    lost = [{k: v for k, v in s.items() if k != 'query_setting'}
            for s in _samples(settings=('r1', 'r2'))]
    with pytest.raises(ValueError, match=r"list 'query_setting' in the val pipeline's "
                                         r'PackInputs\(meta_keys=...\)'):
        _evaluate(lost, ('r1', 'r2'))
    with pytest.raises(ValueError, match="no query of the setting 'r1'"):
        _evaluate(_samples(settings=('r2', )))


def test_online_validation_equals_reid_frozen_eval_at_every_setting(person_folder,
                                                                    market1501_split, tmp_path):
    """Two micro SAIP iterations validated with the demo's cross-resolution settings: the
    logged reid/mAP ... reid/rank-10_mixed equal reid_frozen_eval --query-downsample on the
    exported teacher; the best checkpoint is still chosen by reid/mAP."""
    from saip_to_backbone import convert
    work = tmp_path / 'work'
    micro_runner(work, person_folder, market1501_split, iters=2,
                 **{'val_dataloader.dataset.query_downsample': list(ALL)}).train()
    rows = [json.loads(line) for f in sorted(work.glob('*/vis_data/scalars.json'))
            for line in f.read_text().splitlines()]
    online = [r for r in rows if 'reid/mAP' in r][-1]
    convert(str(work / 'iter_2.pth'), str(tmp_path / 'backbone.pth'))
    report = reid_frozen_eval.evaluate_backbones(
        str(market1501_split), {'exported': str(tmp_path / 'backbone.pth')}, arch=MICRO_ARCH,
        batch_size=4, query_downsample=ALL)
    offline = report['results']['exported']
    for key in (m + s for s in SUFFIXES for m in RANKS):
        assert online[f'reid/{key}'] == pytest.approx(offline[key], abs=1e-3), key
    assert len(list(work.glob('best_reid_mAP_iter_*.pth'))) == 1


# ------------------------------------------------------------------ reid_frozen_eval
def test_frozen_eval_r1_is_todays_and_resolution_is_the_only_change(market1501_split,
                                                                    monkeypatch):
    root = str(market1501_split)
    today = reid_frozen_eval.evaluate_backbones(root, {'random': None}, arch=SMALL_ARCH,
                                                batch_size=4)
    assert today['query_settings'] == ['r1']
    cross = reid_frozen_eval.evaluate_backbones(root, {'random': None}, arch=SMALL_ARCH,
                                                batch_size=4, query_downsample=ALL)
    assert cross['query_settings'] == ['r1', 'r2', 'r3', 'r4', 'mixed']
    r1 = {k: v for k, v in cross['results']['random'].items() if k in today['results']['random']}
    assert r1 == today['results']['random']  # r = 1: today's numbers, exactly

    # with the resolution ignored (the down-sampling a no-op that records its calls), every
    # setting scores what r = 1 scores; only queries are shrunk, each by its setting's factor
    calls = []

    def record(img, factor):
        calls.append((img.shape[:2], factor))
        return img
    monkeypatch.setattr(reid_frozen_eval, 'downsample_image', record)
    ignored = reid_frozen_eval.evaluate_backbones(root, {'random': None}, arch=SMALL_ARCH,
                                                  batch_size=4, query_downsample=ALL)
    res = ignored['results']['random']
    for suffix in SUFFIXES:
        assert [res[m + suffix] for m in RANKS] == [today['results']['random'][m]
                                                   for m in RANKS], suffix
    assert [f for _, f in calls] == [2] * 4 + [3] * 4 + [4] * 4 + [4, 3, 3, 2]
    assert {shape for shape, _ in calls} == {(64, 32)}  # the recorded query size


def test_frozen_eval_command_line_writes_a_row_per_setting(market1501_split, tmp_path, capsys,
                                                          monkeypatch):
    build = reid_frozen_eval.build_backbone  # a 2-block ViT for speed (--arch takes a name)
    monkeypatch.setattr(reid_frozen_eval, 'build_backbone',
                        lambda arch, *args, **kwargs: build(SMALL_ARCH, *args, **kwargs))
    reid_frozen_eval.main([str(market1501_split), '--random-baseline',
                           '--query-downsample', '4', 'mixed', '--mixed-seed', '1',
                           '--batch-size', '8', '--out-dir', str(tmp_path)])
    report = json.loads((tmp_path / 'reid_frozen_eval.json').read_text())
    assert report['query_settings'] == ['r1', 'r4', 'mixed'] and report['mixed_seed'] == 1
    md = (tmp_path / 'reid_frozen_eval.md').read_text().splitlines()
    assert md[3] == '| backbone | queries | mAP | rank-1 | rank-5 | rank-10 | RankMe |'
    rows = [line.split(' | ')[:2] for line in md[5:]]
    assert rows == [['| random init', 'r = 1'], ['| random init', 'r = 4'],
                    ['| random init', 'mixed r in {2, 3, 4}']]
    assert 'mixed r in {2, 3, 4}' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='--query-downsample'):
        reid_frozen_eval.main([str(market1501_split), '--random-baseline',
                               '--query-downsample', 'half'])
