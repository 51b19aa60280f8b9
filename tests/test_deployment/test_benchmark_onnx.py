"""tools/deployment/benchmark_onnx.py in its quick mode on tiny models."""
import json

import pytest

from deploy_testlib import load_tool

benchmark_tool = load_tool('benchmark_onnx')
ENGINES = ['PyTorch eager', 'ONNX fp32', 'ONNX int8 (dynamic)']


def test_quick_int8_and_reid_map(tiny_models, person_crops, tmp_path, capsys):
    """Latency rows for every engine, batch and thread; int8 size, output change and ReID mAP
    on a Market-1501-layout split; the same ranking (mAP) from PyTorch and ONNX fp32."""
    out_dir = tmp_path / 'bench'
    report = benchmark_tool.main([
        '--config', str(tiny_models.reid.config), '--checkpoint',
        str(tiny_models.reid.checkpoint), '--quick', '--int8', '--reid-data',
        str(person_crops), '--out-dir', str(out_dir)])
    rows = report['latency']
    assert [(r['engine'], r['threads'], r['batch']) for r in rows] == [
        (e, 1, b) for b in (1, 2) for e in ENGINES]
    for r in rows:
        assert 0 < r['median_ms'] <= r['p90_ms']
        assert r['images_per_s'] == pytest.approx(r['batch'] / r['median_ms'] * 1e3)
    models = report['models']
    assert set(models) == {'ONNX fp32', 'ONNX int8 (dynamic)', 'PyTorch fp32'}
    assert models['ONNX fp32']['max_abs_diff'] <= 1e-4
    assert models['ONNX fp32']['min_cosine'] > 0.99999
    # int8 weights: a smaller file whose embeddings still point the same way, but not exactly
    assert models['ONNX int8 (dynamic)']['size_mib'] < models['ONNX fp32']['size_mib']
    assert 1e-4 < models['ONNX int8 (dynamic)']['max_abs_diff']
    assert models['ONNX int8 (dynamic)']['min_cosine'] > 0.9
    for name in models:  # 4 queries, 8 gallery images
        assert 0 <= models[name]['reid']['mAP'] <= 100
    assert models['ONNX fp32']['reid'] == pytest.approx(models['PyTorch fp32']['reid'], abs=1e-6)
    assert 'ReID mAP: frozen features, cosine kNN' in report['reid_note']
    assert '(4 query, 8 gallery images)' in report['reid_note']
    assert 'int8 changes mAP by' in report['reid_note']

    saved = json.loads((out_dir / 'benchmark_onnx.json').read_text())
    assert saved['latency'] == rows
    markdown = (out_dir / 'benchmark_onnx.md').read_text()
    assert '| engine | threads | batch | median ms | p90 ms | images/s |' in markdown
    assert markdown.count('| ONNX int8 (dynamic) |') == 3  # two latency rows, one model row
    assert markdown in capsys.readouterr().out


def test_quick_without_demo_split_skips_only_the_map(tiny_models, tmp_path):
    """No demo split: latency and int8 figures are there, the report says the mAP is skipped."""
    missing = tmp_path / 'no_vtest' / 'reid'
    report = benchmark_tool.main([
        '--config', str(tiny_models.backbone.config), '--kind', 'backbone', '--quick', '--int8',
        '--reid-data', str(missing), '--out-dir', str(tmp_path / 'bench')])
    assert len(report['latency']) == 6
    assert 'random weights' in report['model']
    assert report['reid_note'] == (
        f'ReID mAP: skipped, no demo split at {missing} (build it with `make demo`, or pass '
        f'--reid-data DIR with query/ and bounding_box_test/).')
    assert all('reid' not in m for m in report['models'].values())
