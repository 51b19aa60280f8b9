"""openmim on this package, as a user runs it: from a folder outside the checkout.

``mim train saip_mm`` / ``mim test saip_mm`` find the config (by name or by its path in the
repository) and ``tools/{train,test}.py`` through the installed package's ``.mim`` folder; the
package must be installed the way ``tools/install.sh`` does it (develop mode). While developing
in a second checkout, put that checkout first on ``PYTHONPATH`` after running
``python setup.py egg_info`` there (mim then resolves that checkout). ``mim train mmpose
projects/pose/…``: tests/test_projects/test_data_root.py.
"""
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from mmengine.config import Config
from mmengine.runner import Runner

ROOT = Path(__file__).resolve().parents[2]
DEMO = 'configs/saip/saip_vit-tiny-p16_1xb32-demo_vtest-256x128.py'
TOY = 'toy_vit-tiny_1xb2-2iter_generated-32x32.py'
# The demo's ViT-Tiny with small heads (its own heads hold 65M parameters per copy): the test is
# about mim and the log, not the method.
SMALL_HEADS = ['model.csm_head.hidden_channels=64', 'model.csm_head.bottleneck_channels=16',
               'model.csm_head.out_channels=128', 'model.csm_head.loss.out_dim=128',
               'model.csr_head.embed_dims=32', 'model.csr_head.depth=1',
               'model.csr_head.num_heads=2', 'model.css_head.embed_dims=32',
               'model.css_head.num_heads=2']


def run_mim(args, cwd: Path, env=None, python: str = sys.executable, timeout: int = 400) -> str:
    """``python -m mim ARGS`` in ``cwd``; returns stdout + stderr, fails with its tail."""
    env = dict(env or os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.run([python, '-m', 'mim', *args], cwd=cwd, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, f'mim {" ".join(args)} failed:\n{proc.stdout[-6000:]}'
    return proc.stdout


def test_mim_train_saip_mm_demo_config_from_another_folder(person_folder, tmp_path):
    """The demo config by its repository path, 1 iteration on tiny crops; its log is short."""
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    log = run_mim(['train', 'saip_mm', DEMO, '--work-dir', 'work', '--cfg-options',
                   f'train_dataloader.dataset.data_root={person_folder}',
                   'train_dataloader.dataset.ann_file=', 'train_dataloader.dataset.background=None',
                   'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                   'train_dataloader.persistent_workers=False', 'train_cfg.max_iters=1',
                   'default_hooks.checkpoint=None', 'default_hooks.logger.interval=1',
                   'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
                   *SMALL_HEADS], cwd=elsewhere)
    # mim found the config and the training script in this checkout
    assert f'will use {ROOT / DEMO} instead' in log
    assert 'saip_mm/.mim/tools/train.py' in log
    assert 'Training finished successfully' in log
    # the iteration-based demo logs iterations, not epochs
    assert 'Iter(train) [1/1]' in log and 'Epoch(train)' not in log
    logs = list((elsewhere / 'work').glob('*/*.log'))
    assert len(logs) == 1
    text = logs[0].read_text()
    # the teacher is not in the optimizer's walk: one line, no per-tensor warnings
    assert 'is skipped since its requires_grad=False' not in text
    assert len(re.findall(r'teacher: [\d.]+M frozen parameters \(requires_grad=False\), not '
                          r'given to the optimizer', text)) == 1
    # weight init: one line per module group, no per-tensor table
    init_lines = re.findall(r'init (\w+) \((\w+)\): (\d+) tensors', text)
    assert [g for g, _, _ in init_lines] == ['backbone', 'csm_head', 'csr_head', 'css_head',
                                             'teacher']
    assert 'torch.Size(' not in text and 'Name of parameter - Initialization' not in text
    assert list((elsewhere / 'work').glob('*/vis_data/vis_image/saip_css_1.png'))


def _toy_images(root: Path) -> Path:
    path = ROOT / 'tools' / 'misc' / 'generate_toy_images.py'
    spec = importlib.util.spec_from_file_location('generate_toy_images', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate_toy_images(str(root), per_class=2, size=32, seed=0)
    return root


def test_mim_test_saip_mm_config_by_name(tmp_path):
    """``mim test saip_mm <config name>`` finds configs/toy/… and tools/test.py."""
    data = _toy_images(tmp_path / 'toy_images')
    cfg = Config.fromfile(str(ROOT / 'configs' / 'toy' / TOY))
    cfg.work_dir = str(tmp_path / 'train')
    cfg.train_dataloader.dataset.data_root = str(data)
    Runner.from_cfg(cfg).train()
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    log = run_mim(['test', 'saip_mm', TOY, '--checkpoint', str(tmp_path / 'train' / 'iter_2.pth'),
                   '--work-dir', 'test', '--cfg-options',
                   f'test_dataloader.dataset.data_root={data}'], cwd=elsewhere)
    assert f'will use {ROOT / "configs" / "toy" / TOY} instead' in log
    assert 'Testing finished successfully' in log
    assert re.search(r'Iter\(test\) \[2/2\]\s+accuracy/top1: \d+\.\d+', log), log[-3000:]


def test_mim_install_editable_in_a_fresh_venv(tmp_path):
    """``mim install -e .`` into a new venv that already sees the OpenMMLab stack: no mmcv
    download or rebuild, and the package then imports from the checkout."""
    venv = tmp_path / 'venv'
    subprocess.check_call([sys.executable, '-m', 'venv', '--without-pip', str(venv)])
    python = str(venv / 'bin' / 'python')
    site = subprocess.check_output(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        text=True).strip()
    # the stack of this environment (torch, mmcv with ops, mm*, mim, pip) is visible, not copied
    stack = sysconfig.get_paths()['purelib']
    Path(site, '_saip_test_stack.pth').write_text(f'import site; site.addsitedir({stack!r})\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    log = run_mim(['install', '-e', str(ROOT)], cwd=tmp_path, env=env, python=python)
    assert 'Successfully installed saip' in log
    assert not re.search(r'(Collecting|Downloading|Building wheel for) mmcv', log), log
    out = subprocess.check_output(
        [python, '-c', 'import os.path as osp, mmcv, saip_mm; from mmcv.ops import nms; '
         'print(osp.realpath(saip_mm.__file__)); print(mmcv.__version__, mmcv.__file__)'],
        cwd=tmp_path, env=env, text=True).split('\n')
    assert out[0] == str(ROOT / 'saip_mm' / '__init__.py')
    assert out[1].startswith('2.1.0 ' + stack)  # the installer's mmcv build, untouched
