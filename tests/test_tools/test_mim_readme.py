"""The README's mim commands work where the README says they do.

Each command of the README's mim block is given to mim's own command line, in this process,
from the folder its comment names (``# from any folder``: a fresh temporary folder; ``# from
the checkout root``: the checkout, and from a temporary folder with the config's absolute
path, the alternative the README gives). mim's config search runs for real; the script it then
starts is recorded instead of run (a dry run), and the config it would get must parse.
"""
import importlib
import re
import shlex
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest
from click.testing import CliRunner
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / 'README.md'


def readme_mim_commands() -> List[Tuple[str, List[str]]]:
    """(where, argv) of each command of the README's mim block; ``where`` from the comment
    line above it."""
    text = README.read_text()
    start = text.index('```bash', text.index('The same through [mim]'))
    block = text[start + len('```bash'):text.index('```', start + 3)].replace('\\\n', ' ')
    commands, where = [], None
    for line in block.splitlines():
        line = line.strip()
        if line.startswith('# from '):
            where = line[len('# from '):]
        elif line.startswith('mim '):
            assert where, f'{README}: mim command without a "# from ..." line above it: {line}'
            commands.append((where, shlex.split(line.split(' #')[0])[1:]))
    return commands


def dry_mim(argv: List[str], cwd: Path, monkeypatch) -> Tuple[object, List[List[str]]]:
    """mim ARGV from ``cwd``; the commands mim would start are returned, not run."""
    from mim.cli import cli
    started = []

    def record(cmd, *args, **kwargs):
        started.append(list(cmd))
        return 0

    with monkeypatch.context() as m:
        m.setattr(subprocess, 'check_call', record)
        m.chdir(cwd)
        result = CliRunner().invoke(cli, argv)
    return result, started


def started_config(started: List[List[str]], package_dir: Path) -> Path:
    """The config mim gives to the package's script (the argument after ``.../train.py``)."""
    assert len(started) == 1, started
    cmd = started[0]
    script = next(i for i, a in enumerate(cmd) if re.search(r'tools/(train|test)\.py$', a))
    assert Path(cmd[script]).is_relative_to(package_dir), cmd  # the package's own script
    assert Path(cmd[script]).is_file(), cmd
    return Path(cmd[script + 1])


def package_dir(name: str) -> Path:
    return Path(importlib.import_module(name).__file__).parent


def test_readme_mim_block_is_annotated():
    commands = readme_mim_commands()
    assert [(w, a[:2]) for w, a in commands] == [
        ('any folder', ['train', 'saip_mm']), ('any folder', ['test', 'saip_mm']),
        ('the checkout root (elsewhere: the config\'s absolute path)', ['train', 'mmpose'])]


@pytest.mark.parametrize('index', range(3))
def test_readme_mim_command_finds_a_config_where_documented(index, tmp_path, monkeypatch):
    where, argv = readme_mim_commands()[index]
    package, config = argv[1], argv[2]
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    runs = []
    if where == 'any folder':
        runs.append((argv, elsewhere))
    else:
        assert where.startswith('the checkout root'), where
        runs.append((argv, ROOT))
        absolute = [str(ROOT / config) if a == config else a for a in argv]
        runs.append((absolute, elsewhere))
    for args, cwd in runs:
        result, started = dry_mim(args, cwd, monkeypatch)
        assert result.exit_code == 0, (f'mim {shlex.join(args)} from {cwd}:\n{result.output}'
                                       f'{result.exception!r}')
        found = started_config(started, package_dir(package))
        if not found.is_absolute():
            found = cwd / found
        # the config of this checkout, as the README means it
        assert found.resolve().name == Path(config).name
        assert found.resolve().is_relative_to(ROOT), found
        cfg = Config.fromfile(str(found))
        assert cfg.get('model'), f'{found} has no model'
    if where != 'any folder':
        # as the README warns: from elsewhere, the relative path is looked up in mmpose only
        result, started = dry_mim(argv, elsewhere, monkeypatch)
        assert result.exit_code != 0 and not started
        assert "can not find the config file in codebase mmpose" in str(result.exception)
