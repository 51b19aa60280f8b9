"""Shared fixtures for the foundation tests: repo paths, a generated image folder, tool runs."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys
from typing import Callable, List

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_CONFIG = osp.join(REPO_ROOT, 'configs', 'toy', 'toy_vit-tiny_1xb2-2iter_generated-32x32.py')


def _load_generator():
    path = osp.join(REPO_ROOT, 'tools', 'misc', 'generate_toy_images.py')
    spec = importlib.util.spec_from_file_location('generate_toy_images', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_toy_images


@pytest.fixture(scope='session')
def toy_image_root(tmp_path_factory) -> str:
    """2 classes x 2 PNGs of 32x32: exactly two batches of 2 for the toy config."""
    root = str(tmp_path_factory.mktemp('toy_images'))
    _load_generator()(root, per_class=2, size=32, seed=0)
    return root


def _run_tool(args: List[str], cwd: str, timeout: float = 240) -> str:
    """Run ``python <args>`` with this interpreter; return stdout+stderr, fail with the log."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.run([sys.executable] + args, cwd=cwd, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        pytest.fail(f'{" ".join(args)} exited with {proc.returncode}:\n{proc.stdout[-6000:]}')
    return proc.stdout


@pytest.fixture(scope='session')
def run_tool() -> Callable[..., str]:
    """``run_tool(args, cwd)``: run a script with this interpreter, return its output."""
    return _run_tool


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope='session')
def toy_config() -> str:
    return TOY_CONFIG
