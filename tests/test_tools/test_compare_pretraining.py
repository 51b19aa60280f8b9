"""tools/analysis_tools/compare_pretraining.py: aggregation, ablation switches, end to end."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def tool():
    path = ROOT / 'tools' / 'analysis_tools' / 'compare_pretraining.py'
    spec = importlib.util.spec_from_file_location('compare_pretraining_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(method, seed, mAP, rank1, wall=10.0):
    return dict(method=method, seed=seed, iters=2, batch=2, images_seen=4, wall_s=wall,
                metrics={'mAP': mAP, 'rank-1': rank1, 'rank-5': 50.0, 'rank-10': 60.0})


def test_mean_std_and_markdown_rows(tool):
    runs = [_run('saip', 0, 30.0, 40.0, 10.0), _run('saip', 1, 34.0, 44.0, 14.0),
            _run('random', 0, 20.0, 25.0, 0.0)]
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
    assert md[2] == ('| saip | 2 | 2 | 4 | 12.0 | 2 | 32.0 ± 2.83 | 42.0 ± 2.83 | '
                     '50.0 ± 0.00 | 60.0 ± 0.00 |')
    assert md[3] == ('| random | 2 | 2 | 4 | 0.0 | 1 | 20.0 ± n/a | 25.0 ± n/a | '
                     '50.0 ± n/a | 60.0 ± n/a |')


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


def test_end_to_end_two_methods_two_seeds_and_resume(tool, person_folder, market1501_split,
                                                     tmp_path, capsys):
    split = market1501_split
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
    for name in ('compare.md', 'compare.json', 'compare.png'):
        assert (work / name).is_file() and (work / name).stat().st_size > 0, name
    assert not list(work.glob('saip-csm/seed*/train/iter_*.pth'))  # exported, then removed
    assert (work / 'saip-csm' / 'seed0' / 'backbone.pth').is_file()
    data = json.loads((work / 'compare.json').read_text())
    assert [(r['method'], r['seed']) for r in data['runs']] == [
        ('saip-csm', 0), ('saip-csm', 1), ('random', 0), ('random', 1)]
    for r in data['runs']:
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in r['metrics'].values()), r
    assert data['aggregates']['saip-csm']['images_seen'] == 4
    assert data['aggregates']['random']['images_seen'] == 0
    assert data['runs'][0]['wall_s'] > 0
    assert {'platform', 'cpu_count', 'torch_threads', 'torch_version'} <= set(data['machine'])
    assert '--methods saip-csm random' in data['command']
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


def test_refuses_foreign_non_empty_work_dir(tool, tmp_path):
    work = tmp_path / 'mine'
    work.mkdir()
    (work / 'notes.txt').write_text('user data')
    with pytest.raises(SystemExit, match='is not empty and was not made by compare_pretraining'):
        tool.prepare_work_dir(work, resume=False)
    tool.prepare_work_dir(work, resume=True)  # accepted, nothing removed
    assert (work / 'notes.txt').read_text() == 'user data'
