"""The OpenMMLab model index (model-index.yml and a metafile.yml per config folder).

``mim search saip_mm``, run as a user runs it (from another folder, through the develop install
that ``tools/install.sh`` makes), lists one model per config; each metafile entry agrees with
its config (batch, schedule, objectives, parameters), and its only results are measured ones.
"""
import json
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from modelindex.load_model_index import load

ROOT = Path(__file__).resolve().parents[2]
MIM_DIR = ROOT / 'saip_mm' / '.mim'  # where mim reads model-index.yml and the configs
OBJECTIVES = {'CSM': 'csm_head', 'CSR': 'csr_head', 'CSS': 'css_head'}
KD = 'Cross-scale Distillation (frozen ViT-B/16 teacher)'
# The measured results the metafiles may carry, with the README row they come from.
MEASURED = {'saip_vit-tiny-p16_1xb32-demo_vtest-256x128': '| SAIP demo pretraining (EMA teacher) |'}


def config_files():
    """Every runnable config: configs/<folder>/*.py and projects/<task>/configs/*.py."""
    files = sorted(ROOT.glob('configs/*/*.py')) + sorted(ROOT.glob('projects/*/configs/*.py'))
    return [f.relative_to(ROOT).as_posix() for f in files]


def model_name(config: str) -> str:
    """The index's name of a config: its file name, ``saip_``-prefixed unless it starts so."""
    stem = Path(config).stem
    return stem if stem.startswith('saip') else f'saip_{stem}'


@pytest.fixture(scope='module')
def index():
    return load(str(ROOT / 'model-index.yml'))


@pytest.fixture(scope='module')
def mim_search(tmp_path_factory):
    """``mim search saip_mm --json``, from a folder outside the checkout: {name: fields}."""
    folder = tmp_path_factory.mktemp('elsewhere')
    proc = subprocess.run([sys.executable, '-m', 'mim', 'search', 'saip_mm', '--json',
                           'search.json'], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    columns = json.loads((folder / 'search.json').read_text())
    models = {}
    for field, values in columns.items():
        for name, value in values.items():
            if value is not None:
                models.setdefault(name, {})[field] = value
    return models


def test_mim_search_lists_every_config(mim_search):
    assert (MIM_DIR / 'model-index.yml').resolve() == ROOT / 'model-index.yml'
    expected = {model_name(c): c for c in config_files()}
    saip_configs = [c for c in expected.values() if c.startswith('configs/saip/')]
    assert len(saip_configs) >= 14 and len(expected) >= 34  # the glob found the configs
    missing = sorted(set(expected) - set(mim_search))
    assert not missing, f'configs with no metafile entry: {[expected[n] for n in missing]}'
    assert set(mim_search) == set(expected), f'entries with no config: ' \
        f'{sorted(set(mim_search) - set(expected))}'
    for name, fields in mim_search.items():
        assert name.startswith('saip')
        assert fields['config'] == expected[name]
        assert (MIM_DIR / fields['config']).is_file()  # as `mim download` resolves it
        assert 'weight' not in fields  # no checkpoint is published


def test_metafiles_agree_with_their_configs(index):
    import saip_mm  # noqa: F401  (registers the backbones)
    from mmpretrain.registry import MODELS
    readmes = {c.name: c.readme for c in index.collections}
    names = {m.name for m in index.models}
    params = {}
    for model in index.models:
        name = model.name
        meta, config = model.metadata.data, model.config
        assert (ROOT / config).is_file(), f'{name}: {config} does not exist'
        cfg = Config.fromfile(str(ROOT / config), import_custom_modules=False)
        gpus = int(re.search(r'_(\d+)xb\d+', Path(config).stem).group(1))
        accumulation = cfg.optim_wrapper.get('accumulative_counts', 1)
        assert meta['Batch Size'] == gpus * cfg.train_dataloader.batch_size * accumulation, name
        if 'Epochs' in meta:
            assert meta['Epochs'] == cfg.train_cfg.max_epochs, name
        else:
            assert meta['Iterations'] == cfg.train_cfg.max_iters, name
        if config.startswith('configs/saip/'):
            arch = meta['Architecture']
            for objective, head in OBJECTIVES.items():
                assert (objective in arch) == (cfg.model.get(head) is not None), (name, objective)
            assert (KD in arch) == (cfg.model.get('distill_head') is not None), name
            backbone = cfg.model.backbone
            key = (backbone.type, str(backbone.arch))
            if key not in params:
                built = MODELS.build(backbone)
                params[key] = sum(p.numel() for p in built.parameters())
            assert meta['Parameters'] == params[key], name
        for downstream in model.data.get('Downstream', []):
            assert downstream in names, f'{name}: downstream {downstream} is not in the index'
        # README paths from the repository root, as in mmpretrain's metafiles
        assert (ROOT / readmes[model.in_collection]).is_file(), name
    # the three backbones of the README's table: 5.51M, 21.64M, 5.07M parameters
    assert sorted(round(p / 1e6, 2) for p in params.values()) == [5.07, 5.51, 21.64]


def test_results_are_the_measured_ones(index):
    models = {m.name: m for m in index.models}
    with_results = {name for name, m in models.items() if m.results}
    assert with_results == set(MEASURED), 'a result without a measurement to point at'
    readme = (ROOT / 'README.md').read_text()
    for name, row_start in MEASURED.items():
        row = next(line for line in readme.splitlines() if line.startswith(row_start))
        # the row's numbers (a `queries` column, `r = 1`, may precede them): mAP, rank-1, -5, -10
        measured = [float(v) for v in row.strip('|').split('|')[1:]
                    if v.strip().replace('.', '', 1).isdigit()]
        (result, ) = models[name].results
        assert result.task == 'Person Re-identification' and result.dataset == 'vtest'
        assert list(result.metrics.values()) == measured


@pytest.mark.parametrize('mode', ['symlink', 'copy'])
def test_setup_puts_the_index_in_mim(tmp_path, mode):
    """setup.py's .mim step (develop installs: symlinks; wheels: copies) includes the index."""
    for name in ('setup.py', 'model-index.yml'):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / 'configs' / 'saip').mkdir(parents=True)
    shutil.copy(ROOT / 'configs' / 'saip' / 'metafile.yml', tmp_path / 'configs' / 'saip')
    (tmp_path / 'saip_mm').mkdir()
    runpy.run_path(str(tmp_path / 'setup.py'))['add_mim_extension'](mode)
    mim = tmp_path / 'saip_mm' / '.mim'
    assert (mim / 'model-index.yml').read_text() == (ROOT / 'model-index.yml').read_text()
    assert (mim / 'model-index.yml').is_symlink() == (mode == 'symlink')
    assert (mim / 'configs' / 'saip' / 'metafile.yml').is_file()
