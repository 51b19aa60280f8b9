"""tools/analysis_tools/preflight.py: the go/no-go rehearsal of a pretraining config."""
import json
import textwrap
from pathlib import Path

import pytest
from mmengine.config import Config

from saip_testlib import load_tool

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / 'configs' / 'saip' / 'saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'


@pytest.fixture(scope='module')
def preflight():
    return load_tool('tools/analysis_tools/preflight.py', 'saip_preflight_tool')


def micro_demo_config(path: Path, model_type: str = 'SAIP', imports: str = "'saip_mm'") -> Path:
    """The demo config (its hooks, online validation, optimizer, schedule) with a micro ViT
    and its heads and no DataLoader workers: what the test is about is the wiring. The batch
    stays the demo's 16 in the file; the tests shrink it with --cfg-options, as users do."""
    path.write_text(textwrap.dedent(f'''
        _base_ = '{DEMO}'
        custom_imports = dict(imports=[{imports}], allow_failed_imports=False)
        model = dict(
            type='{model_type}',
            backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=4, num_heads=2,
                                    feedforward_channels=64), inter_index=1),
            csm_head=dict(in_channels=32, hidden_channels=64, bottleneck_channels=16,
                          out_channels=128, loss=dict(out_dim=128)),
            csr_head=dict(in_channels=32, embed_dims=32, depth=1, num_heads=2),
            css_head=dict(in_channels=32, embed_dims=32, num_heads=2))
        train_dataloader = dict(num_workers=0, persistent_workers=False,
                                dataset=dict(ann_file='', background=None))
        val_dataloader = dict(batch_size=4)
    '''))
    return path


def test_rehearsal_config_keeps_the_config_and_shrinks_the_schedule(preflight, tmp_path):
    cfg = Config.fromfile(str(DEMO))
    out = preflight.rehearsal_config(cfg, str(tmp_path / 'run'), iters=4, half=2,
                                     validate=True)
    assert out.train_cfg == dict(type='IterBasedTrainLoop', max_iters=4, val_interval=4)
    assert out.default_hooks.checkpoint.interval == 2
    assert out.default_hooks.checkpoint.max_keep_ckpts == -1
    assert out.randomness.deterministic is True and out.randomness.seed == 0
    hooks = {h['type']: h for h in out.custom_hooks}
    assert hooks['SAIPHealthHook']['interval'] == 1
    assert hooks['TrainingCurvesHook']['loss_interval'] == 1
    assert hooks['SAIPVisualizationHook']['interval'] == 4  # 20 in the demo: within the run
    assert hooks['PreflightProbeHook'] == dict(type='PreflightProbeHook',
                                               out_dir=str(tmp_path / 'run'), max_iters=4)
    # the model, optimizer and data are the config's own
    assert out.model == cfg.model and out.optim_wrapper == cfg.optim_wrapper
    assert out.train_dataloader == cfg.train_dataloader
    resumed = preflight.rehearsal_config(cfg, str(tmp_path / 'r'), 4, 2, validate=False)
    assert resumed.val_cfg is None and resumed.default_hooks.checkpoint.save_best is None


def test_stock_backbone_config_builds_for_every_shipped_arch(preflight):
    """SAIPViT's arch names ('tiny', 'small') are not all stock names: the export check gives
    the stock VisionTransformer the same dimensions."""
    from mmengine.registry import MODELS
    for arch, width in (('tiny', 192), ('small', 384), ('deit-small', 384)):
        cfg = preflight.stock_backbone_cfg(dict(type='SAIPViT', arch=arch, inter_index=6),
                                           'unused.pth')
        cfg.pop('init_cfg')
        stock = MODELS.build(cfg)
        assert stock.embed_dims == width and stock.patch_resolution == (16, 8)
    tiny = preflight.stock_backbone_cfg(
        dict(type='SAIPTinyViT', arch='5m', inter_stage=2), 'x.pth')
    assert tiny['type'] == 'mmpretrain.TinyViT' and 'inter_stage' not in tiny


def test_first_error_is_the_line_the_process_died_of(preflight):
    log = textwrap.dedent('''
        Traceback (most recent call last):
          File "x.py", line 1, in <module>
        ValueError: the first
        During handling of the above exception, another exception occurred:
        torch.distributed.DistBackendError: the last one
        [rank1]: waiting
    ''')
    assert preflight.first_error(log) == 'torch.distributed.DistBackendError: the last one'


def test_preflight_passes_on_the_demo_config(preflight, tmp_path, person_folder,
                                             market1501_split, capsys):
    """Two 2-process rehearsal runs (4 iterations, then 2 resumed) with validation and the
    export: about a minute on 2 cores, the cost of the command it tests."""
    config = micro_demo_config(tmp_path / 'demo_micro.py')
    work = tmp_path / 'preflight'
    status = preflight.main([
        str(config), '--ranks', '2', '--iters', '4', '--samples', '8', '--work-dir', str(work),
        '--cfg-options', 'train_dataloader.batch_size=2',
        f'train_dataloader.dataset.data_root={person_folder}',
        f'val_dataloader.dataset.data_root={market1501_split}'])
    out = capsys.readouterr().out
    report = json.loads((work / 'preflight.json').read_text())
    checks = {c['check']: c for c in report['checks']}
    assert status == 0, out[-4000:]
    assert report['verdict'] == 'GO'
    assert [c['check'] for c in report['checks']] == [
        'config', 'train data', 'val data', 'model', 'train', 'gradients', 'losses',
        'health + curves', 'checkpoint', 'resume', 'validation', 'export']
    assert all(c['status'] == 'GO' for c in report['checks']), report['checks']
    assert checks['train data']['detail'].startswith(
        'PersonImageDataset: 8 samples; 8 sampled entries decode')
    assert 'equal on all 2 rank(s)' in checks['resume']['detail']
    assert 'reid/mAP' in checks['validation']['detail']
    assert 'stock mmpretrain.VisionTransformer' in checks['export']['detail']
    # per-rank figures and the memory estimate at the demo config's own batch (16)
    assert any(line.startswith('rank 1: median step') for line in report['resources'])
    assert any("config's batch 16" in line for line in report['resources'])
    assert '| resume | GO |' in out
    # a second preflight into the same folder needs --force; a foreign folder is refused
    assert preflight.main([str(config), '--work-dir', str(work)]) == 2
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('keep')
    assert preflight.main([str(config), '--work-dir', str(foreign)]) == 2
    assert (foreign / 'notes.txt').read_text() == 'keep'


def test_preflight_names_missing_validation_data(preflight, tmp_path, person_folder, capsys):
    config = micro_demo_config(tmp_path / 'demo_micro.py')
    work = tmp_path / 'preflight'
    missing = tmp_path / 'no_market1501'
    status = preflight.main([
        str(config), '--work-dir', str(work), '--samples', '4', '--cfg-options',
        'train_dataloader.batch_size=2', f'train_dataloader.dataset.data_root={person_folder}',
        f'val_dataloader.dataset.data_root={missing}'])
    report = json.loads((work / 'preflight.json').read_text())
    checks = {c['check']: c for c in report['checks']}
    assert status == 1 and report['verdict'] == 'NO-GO'
    assert checks['train data']['status'] == 'GO'
    assert checks['val data']['status'] == 'NO-GO'
    assert str(missing) in checks['val data']['detail'] + checks['val data']['fix']
    assert 'val_cfg=None' in checks['val data']['fix']
    assert checks['train']['status'] == 'n/a'  # nothing was launched
    assert not (work / 'run_full').exists()


def test_preflight_names_a_parameter_without_gradient(preflight, tmp_path, person_folder,
                                                      monkeypatch):
    """A model with a parameter no loss uses: DDP stops at the second step; preflight names
    the parameter from what the first step recorded (one 2-process run, about 20 s)."""
    (tmp_path / 'unused_param_model.py').write_text(textwrap.dedent('''
        import torch.nn as nn
        from mmpretrain.registry import MODELS
        from saip_mm.models import SAIP

        @MODELS.register_module()
        class SAIPWithUnused(SAIP):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.forgotten = nn.Linear(4, 4)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    config = micro_demo_config(tmp_path / 'unused.py', model_type='SAIPWithUnused',
                               imports="'saip_mm', 'unused_param_model'")
    work = tmp_path / 'preflight'
    status = preflight.main([
        str(config), '--ranks', '2', '--samples', '4', '--work-dir', str(work),
        '--cfg-options', 'train_dataloader.batch_size=2',
        f'train_dataloader.dataset.data_root={person_folder}',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None'])
    report = json.loads((work / 'preflight.json').read_text())
    checks = {c['check']: c for c in report['checks']}
    assert status == 1
    assert checks['train']['status'] == 'NO-GO'
    assert 'forgotten.bias, forgotten.weight' in checks['train']['detail']
    assert 'find_unused_parameters' in checks['train']['fix']
