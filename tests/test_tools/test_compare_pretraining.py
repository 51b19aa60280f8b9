"""tools/analysis_tools/compare_pretraining.py: aggregation, ablation switches, end to end."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from saip_testlib import load_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis_tools/compare_pretraining.py', 'compare_pretraining_tool')


def _run(method, seed, mAP, rank1, wall=10.0, rankme=None, curves=None):
    metrics = {'mAP': mAP, 'rank-1': rank1, 'rank-5': 50.0, 'rank-10': 60.0}
    if rankme is not None:
        metrics['rankme'] = rankme
    return dict(method=method, seed=seed, iters=2, batch=2, images_seen=4, wall_s=wall,
                metrics=metrics, curves=curves or {})


def test_mean_std_and_markdown_rows(tool):
    runs = [_run('saip', 0, 30.0, 40.0, 10.0, rankme=20.0),
            _run('saip', 1, 34.0, 44.0, 14.0, rankme=22.0),
            _run('random', 0, 20.0, 25.0, 0.0)]  # a result from before RankMe was recorded
    agg = tool.aggregate(runs)
    assert list(agg) == ['saip', 'random']
    assert agg['saip']['mAP']['mean'] == pytest.approx(32.0)
    assert agg['saip']['mAP']['std'] == pytest.approx(math.sqrt(8))  # ddof=1: 2.828
    assert agg['saip']['wall_s']['mean'] == pytest.approx(12.0)
    assert agg['random']['mAP']['std'] is None
    assert tool.format_mean_std(agg['saip']['mAP']) == '32.0 ± 2.83'
    assert tool.format_mean_std(agg['random']['mAP']) == '20.0 ± n/a'
    md = tool.to_markdown(agg).splitlines()
    assert md[0].startswith('| method | iterations | batch | images seen | mean wall s |')
    assert md[0].endswith('| rank-10 | RankMe |')
    assert md[2] == ('| saip | 2 | 2 | 4 | 12.0 | 2 | 32.0 ± 2.83 | 42.0 ± 2.83 | '
                     '50.0 ± 0.00 | 60.0 ± 0.00 | 21.0 ± 1.41 |')
    assert md[3] == ('| random | 2 | 2 | 4 | 0.0 | 1 | 20.0 ± n/a | 25.0 ± n/a | '
                     '50.0 ± n/a | 60.0 ± n/a | n/a |')


def test_cross_resolution_table(tool):
    """Every setting's metrics are averaged like the others; a run recorded before the
    cross-resolution evaluation reads n/a; no run with them, no second table."""
    cross = {f'{m}_{s}': v for s, v in (('r2', 28.0), ('r3', 26.0), ('r4', 20.0),
                                         ('mixed', 24.0)) for m in tool.METRICS}
    runs = [_run('saip', 0, 30.0, 40.0), _run('saip', 1, 34.0, 44.0),
            _run('random', 0, 20.0, 25.0)]  # random: recorded before
    for run, shift in zip(runs[:2], (0.0, 2.0)):
        run['metrics'].update({k: v + shift for k, v in cross.items()})
    agg = tool.aggregate(runs)
    assert agg['saip']['mAP_r4']['mean'] == pytest.approx(21.0)
    assert agg['saip']['mAP_r4']['std'] == pytest.approx(math.sqrt(2))
    assert agg['random']['mAP_r4'] is None
    md = tool.to_markdown(agg).splitlines()
    at = md.index('| method | r = 1 mAP | r = 1 rank-1 | r = 2 mAP | r = 2 rank-1 | r = 3 mAP | '
                  'r = 3 rank-1 | r = 4 mAP | r = 4 rank-1 | mixed mAP | mixed rank-1 |')
    assert md[at - 2].startswith('Cross-resolution: queries shrunk r times')
    assert md[at + 2] == ('| saip | 32.0 ± 2.83 | 42.0 ± 2.83 | 29.0 ± 1.41 | 29.0 ± 1.41 | '
                          '27.0 ± 1.41 | 27.0 ± 1.41 | 21.0 ± 1.41 | 21.0 ± 1.41 | 25.0 ± 1.41 | '
                          '25.0 ± 1.41 |')
    assert md[at + 3] == '| random | 20.0 ± n/a | 25.0 ± n/a |' + ' n/a |' * 8
    assert 'Cross-resolution' not in tool.to_markdown(tool.aggregate(runs[2:]))


def test_mean_curve_and_curve_figure(tool, tmp_path):
    """Curves are averaged over the seeds that recorded each iteration; runs without curves
    (random init) appear as their final mAP; no curve at all draws nothing."""
    runs = [_run('saip', 0, 30.0, 40.0, curves={'val/reid/mAP': [[1, 10.0], [2, 20.0]]}),
            _run('saip', 1, 34.0, 44.0, curves={'val/reid/mAP': [[1, 14.0], [2, 30.0]],
                                                'health/rankme_teacher': [[2, 3.0]]}),
            _run('random', 0, 20.0, 25.0)]
    assert tool.mean_curve(runs, 'val/reid/mAP') == [[1, 12.0], [2, 25.0]]
    assert tool.mean_curve(runs, 'health/rankme_teacher') == [[2, 3.0]]
    assert tool.plot_curves(runs, str(tmp_path / 'curves.png'))
    assert (tmp_path / 'curves.png').stat().st_size > 1000
    assert not tool.plot_curves(runs[2:], str(tmp_path / 'none.png'))
    assert not (tmp_path / 'none.png').exists()


@pytest.mark.parametrize('method,kept', [
    ('saip-csm', (True, False, False)), ('saip-csr', (False, True, False)),
    ('saip-css', (False, False, True)), ('saip-csm-csr', (True, True, False)),
    ('saip-csm-css', (True, False, True)), ('saip-csr-css', (False, True, True))])
def test_ablation_heads_read_from_config_files(tool, method, kept, tmp_path):
    assert tool.ablation_heads(method) == dict(zip(tool.HEADS, kept))
    # applied on the CPU preset's base (demo config): only the heads differ
    settings = dict(tool.PRESETS['cpu'], data_root=str(tmp_path), background=None)
    cfg = tool.build_run_config(method, 3, settings)
    for head, keep in zip(tool.HEADS, kept):
        assert (cfg.model[head] is not None) == keep, head
    assert cfg.model.n_local == 4 and cfg.train_dataloader.batch_size == 16
    assert cfg.train_cfg.max_iters == 20 and cfg.randomness.seed == 3
    assert cfg.param_scheduler[1]['end'] == 20


def write_faint_identity_split(root: Path, num_ids: int = 4) -> Path:
    """A Market-1501-layout split where identity is a faint colour cast on noise: frozen
    features of different weights (seeds, training) score differently on it, unlike the
    clean-colour split of conftest.py where every ViT scores 100."""
    rng = np.random.default_rng(0)
    for pid in range(1, num_ids + 1):
        color = rng.integers(0, 256, 3)
        for cam, folder in ((1, 'query'), (2, 'bounding_box_test'), (3, 'bounding_box_test')):
            img = rng.integers(0, 256, (64, 32, 3)).astype(np.float64)
            img[12:60, 6:26] = 0.8 * img[12:60, 6:26] + 0.2 * color
            path = root / folder / f'{pid:04d}_c{cam}s1_{pid * 100 + cam:06d}_00.jpg'
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), img.astype(np.uint8))
    return root


def test_end_to_end_two_methods_two_seeds_and_resume(tool, person_folder, tmp_path, capsys):
    split = write_faint_identity_split(tmp_path / 'reid')
    work = tmp_path / 'cmp'
    argv = ['--preset', 'cpu', '--data-root', str(person_folder), '--background',
            str(person_folder), '--eval-root', str(split), '--work-dir', str(work),
            '--methods', 'saip-csm', 'random', '--seeds', '0', '1', '--iters', '2',
            '--batch', '2', '--cfg-options', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'model.csm_head.hidden_channels=64', 'model.csm_head.bottleneck_channels=32',
            'model.csm_head.out_channels=256', 'model.csm_head.loss.out_dim=256']
    report = tool.main(argv)
    out = capsys.readouterr().out
    assert 'run 1/4 saip-csm seed 0 ... ETA after the first run' in out
    assert 'run 2/4 saip-csm seed 1 ... ETA' in out
    for name in ('compare.md', 'compare.json', 'compare.png', 'compare_curves.png'):
        assert (work / name).is_file() and (work / name).stat().st_size > 0, name
    assert not list(work.glob('saip-csm/seed*/train/iter_*.pth'))  # exported, then removed
    assert (work / 'saip-csm' / 'seed0' / 'backbone.pth').is_file()
    data = json.loads((work / 'compare.json').read_text())
    assert [(r['method'], r['seed']) for r in data['runs']] == [
        ('saip-csm', 0), ('saip-csm', 1), ('random', 0), ('random', 1)]
    # A row is the frozen-feature evaluation of its own backbone under its own seed: an
    # independent reid_frozen_eval.evaluate_backbones of seed 1's rows (the random init under
    # seed 1, the exported teacher of the seed-1 run) gives the very same numbers. (One call,
    # a few seconds: seed 1 because a seed lost on the way would read as seed 0.)
    import reid_frozen_eval  # on sys.path once the tool is imported (next to it)
    random1, saip1 = data['runs'][3], data['runs'][1]
    assert (random1['method'], random1['seed'], saip1['method'], saip1['seed']) == (
        'random', 1, 'saip-csm', 1)
    independent = reid_frozen_eval.evaluate_backbones(
        str(split), {'random': None, 'saip': saip1['backbone']}, seed=1,
        query_downsample=tool.QUERY_DOWNSAMPLE)['results']
    for row, name in ((random1, 'random'), (saip1, 'saip')):
        keys = tool.METRICS + tool.CROSS_METRICS  # every cross-resolution setting too
        assert {m: row['metrics'][m] for m in keys} == {
            m: float(independent[name][m]) for m in keys}, (row, independent)
    for r in data['runs']:
        assert r['eval'] == dict(data_root=str(split), num_query=4, num_gallery=8,
                                 num_identities=4)
        assert all(math.isfinite(r['metrics'][m]) for m in tool.METRICS), r
    # the seed reaches the random init: seeds 0 and 1 score differently on this split
    assert data['runs'][2]['metrics']['mAP'] != random1['metrics']['mAP']
    for method, rows in (('saip-csm', data['runs'][:2]), ('random', data['runs'][2:])):
        for m in tool.METRICS:  # the table's means are those of the rows
            assert data['aggregates'][method][m]['mean'] == pytest.approx(
                (rows[0]['metrics'][m] + rows[1]['metrics'][m]) / 2)
    assert data['aggregates']['saip-csm']['images_seen'] == 4
    assert data['aggregates']['random']['images_seen'] == 0
    # SAIP runs validate online at every iteration of their 2 (CURVE_POINTS caps at one per
    # iteration) and keep the curve; the last point is the exported teacher's frozen mAP
    for r in data['runs'][:2]:
        assert [p[0] for p in r['curves']['val/reid/mAP']] == [1, 2]
        assert r['curves']['val/reid/mAP'][-1][1] == pytest.approx(r['metrics']['mAP'],
                                                                   abs=1e-3)
        assert [p[0] for p in r['curves']['health/rankme_teacher']] == [1, 2]
        assert [p[0] for p in r['curves']['val/reid/mAP_mixed']] == [1, 2]  # the demo's
    for r in data['runs']:
        assert 1 <= r['metrics']['rankme'] <= 15  # 15 evaluation images: at most 15
    assert data['runs'][2]['curves'] == {}
    assert data['runs'][0]['wall_s'] > 0
    assert {'platform', 'cpu_count', 'torch_threads', 'torch_version'} <= set(data['machine'])
    assert '--methods saip-csm random' in data['command']
    # mixed precision where this machine runs it natively (tools/train.py --amp), recorded
    precision = tool.training_precision()
    assert data['settings']['precision'] == data['runs'][0]['training']['precision'] == precision
    run_log = (work / 'saip-csm' / 'seed0' / 'run.log').read_text()
    assert ('CPUAmpOptimWrapper' in run_log) == (precision == 'bf16')
    md = (work / 'compare.md').read_text().splitlines()
    rows = [line for line in md if line.startswith('| saip-csm') or line.startswith('| random')]
    assert rows[0].startswith('| saip-csm | 2 | 2 | 4 | ')
    assert rows[1].startswith('| random | 0 | 0 | 0 | 0.0 | 2 | ')
    assert report['aggregates'].keys() == {'saip-csm', 'random'}

    # the same work dir again: every finished run is skipped, the table is rewritten
    stamp = (work / 'saip-csm' / 'seed0' / 'result.json').stat().st_mtime_ns
    tool.main(argv + ['--resume'])
    out = capsys.readouterr().out
    assert out.count('done before, skipped') == 4
    assert (work / 'saip-csm' / 'seed0' / 'result.json').stat().st_mtime_ns == stamp
    assert json.loads((work / 'compare.json').read_text())['runs'] == data['runs']

    # ... but not under another budget: the table would mix 2- and 3-iteration runs
    longer = [a if a != '2' or argv[i - 1] != '--iters' else '3' for i, a in enumerate(argv)]
    with pytest.raises(SystemExit, match=r'saip-csm/seed0/result.json: a finished run with '
                                         r'iters=2, but this comparison asks for iters=3'):
        tool.main(longer)


def test_finished_run_from_another_split_or_recipe_is_refused(tool, tmp_path):
    settings = dict(iters=2, batch=2, eval_root='data/vtest/reid', lr=2.5e-4, n_local=4,
                    data_root='data/vtest/persons.txt', background='data/vtest/frames.txt')
    done = dict(_run('saip', 0, 30.0, 40.0), eval=dict(data_root='data/other/reid'),
                training=tool.training_record('saip', settings, []))
    path = tmp_path / 'result.json'
    with pytest.raises(SystemExit, match='evaluated on data/other/reid'):
        tool.check_finished_run(done, settings, path)
    done['eval']['data_root'] = 'data/vtest/reid'
    assert tool.check_finished_run(done, settings, path) is done
    # Another learning rate, other --cfg-options, or a run that recorded nothing: refused.
    with pytest.raises(SystemExit, match=r"trained with \{'lr': 0.00025\}, but this comparison "
                                         r"trains with \{'lr': 0.001\}"):
        tool.check_finished_run(done, dict(settings, lr=1e-3), path)
    with pytest.raises(SystemExit, match='cfg_options'):
        tool.check_finished_run(done, settings, path, ['model.mask_ratio=0.5'])
    with pytest.raises(SystemExit, match='not recorded'):
        tool.check_finished_run({k: v for k, v in done.items() if k != 'training'}, settings,
                                path)
    random = dict(_run('random', 0, 20.0, 25.0), iters=0, batch=0, training={},
                  eval=dict(data_root='data/vtest/reid'))
    assert tool.check_finished_run(random, dict(settings, lr=1e-3), path) is random


def test_precision_setting_and_runs_recorded_before_it(tool, monkeypatch, tmp_path):
    from saip_mm.engine.optimizers import cpu_amp_optim_wrapper
    monkeypatch.setattr(cpu_amp_optim_wrapper.torch.cpu, 'get_capabilities',
                        lambda: {'avx512_bf16': True})
    assert tool.parse_args([]).settings['precision'] == 'bf16'
    assert tool.parse_args(['--no-amp']).settings['precision'] == 'fp32'
    monkeypatch.setattr(cpu_amp_optim_wrapper.torch.cpu, 'get_capabilities',
                        lambda: {'avx2': True})  # bf16 would be emulated: float32
    assert tool.parse_args([]).settings['precision'] == 'fp32'
    # a result written before precision was recorded trained in float32
    settings = dict(iters=2, batch=2, eval_root='data/vtest/reid', lr=2.5e-4, n_local=4,
                    data_root='data/vtest/persons.txt', background=None, precision='fp32')
    old = tool.training_record('saip', settings, [])
    del old['precision']
    done = dict(_run('saip', 0, 30.0, 40.0), eval=dict(data_root='data/vtest/reid'),
                training=old)
    path = tmp_path / 'result.json'
    assert tool.check_finished_run(done, settings, path) is done
    with pytest.raises(SystemExit, match=r"trained with \{'precision': 'fp32'\}, but this "
                                         r"comparison trains with \{'precision': 'bf16'\}"):
        tool.check_finished_run(done, dict(settings, precision='bf16'), path)


def test_refuses_foreign_non_empty_work_dir(tool, tmp_path):
    work = tmp_path / 'mine'
    work.mkdir()
    (work / 'notes.txt').write_text('user data')
    with pytest.raises(SystemExit, match='is not empty and was not made by compare_pretraining'):
        tool.prepare_work_dir(work, resume=False)
    tool.prepare_work_dir(work, resume=True)  # accepted, nothing removed
    assert (work / 'notes.txt').read_text() == 'user data'


@pytest.fixture(scope='module')
def converted_teacher(tmp_path_factory):
    """A small ViT-S-layout teacher (2 blocks, 256x128 input) as to_mmpretrain_vit.py writes it."""
    import timm
    import torch
    from saip_mm.utils.vit_checkpoint import convert_vit
    torch.manual_seed(0)
    vit = timm.create_model('vit_small_patch16_224', pretrained=False, depth=2,
                            img_size=(256, 128), num_classes=0)
    out, _ = convert_vit({'model': vit.state_dict()}, arch=None, src_grid=(16, 8))
    path = tmp_path_factory.mktemp('teacher') / 'teacher_vit-s.pth'
    torch.save(out, path)
    return path


@pytest.mark.parametrize('method,heads', [('saip-kd', (True, True, True)),
                                          ('kd', (False, False, False))])
def test_distillation_methods_take_the_teacher_from_the_file(tool, converted_teacher, method,
                                                             heads, tmp_path):
    """saip-kd / kd: the heads of their configs, the config's distillation settings, and a
    teacher whose shape and input size are read from --teacher (not the config's ViT-B)."""
    settings = dict(tool.PRESETS['cpu'], data_root=str(tmp_path), background=None,
                    teacher=str(converted_teacher))
    cfg = tool.build_run_config(method, 0, settings)
    for head, keep in zip(tool.HEADS, heads):
        assert (cfg.model[head] is not None) == keep, head
    kd = cfg.model.distill_head
    assert kd.teacher_checkpoint == str(converted_teacher)
    assert kd.teacher.arch == dict(embed_dims=384, num_layers=2, num_heads=6,
                                   feedforward_channels=1536)
    assert tuple(kd.teacher.img_size) == (256, 128) and kd.teacher.patch_size == 16
    assert kd.loss.relation_weight == 1.0 and kd.student_channels == 192
    assert tool.training_record(method, settings, [])['teacher'] == str(converted_teacher)


def test_distillation_methods_need_a_teacher(tool, converted_teacher, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(['--methods', 'saip', 'kd'])
    assert '--methods kd distil from a teacher' in capsys.readouterr().err
    assert 'kd' not in tool.parse_args([]).methods  # default: all methods but the teacher's
    args = tool.parse_args(['--teacher', str(converted_teacher)])
    assert args.methods[-2:] == ['saip-kd', 'kd']
