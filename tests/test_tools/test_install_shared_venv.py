"""tools/install.sh with a venv shared by two checkouts: the develop install follows the
checkout the script runs from.

The venv is a cheap one that sees this environment's stack through a path line (torch, mmcv,
mim... are not reinstalled), and holds its own develop install; /work/main's ``.venv`` is never
written. Clone A is installed into it first; then ``SAIP_VENV=<venv> tools/install.sh`` from
clone B finds the stamp up to date, and must still move the develop install to B.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copy_checkout(dst: Path) -> Path:
    """The working tree as git sees it (tracked and new files; no .venv, no build outputs)."""
    files = subprocess.check_output(['git', 'ls-files', '-co', '--exclude-standard', '-z'],
                                    cwd=ROOT, text=True).split('\0')
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():  # a file deleted in the working tree is still listed by git
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst.resolve()


def cheap_venv(path: Path) -> Path:
    """A venv without pip that imports this environment's packages, but not its .pth files
    (so not /work/main's develop install): its own develop install decides where saip_mm is."""
    subprocess.check_call([sys.executable, '-m', 'venv', '--without-pip', str(path)])
    python = path / 'bin' / 'python'
    site = subprocess.check_output(
        [str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        text=True).strip()
    # 'zz': after the venv's own easy-install.pth, so a develop install comes first
    Path(site, 'zz_saip_test_stack.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    return python


def neutral_import(python: Path, cwd: Path) -> list:
    """Where saip_mm and mim's notion of it resolve, from a folder outside every checkout."""
    code = ('import os.path as osp, saip_mm; from mim.utils import get_installed_path; '
            'print(osp.realpath(saip_mm.__file__)); '
            'print(osp.realpath(get_installed_path("saip_mm")))')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return subprocess.check_output([str(python), '-c', code], cwd=cwd, env=env,
                                   text=True).split()[-2:]


def test_install_sh_moves_a_shared_venvs_develop_install_to_its_checkout(tmp_path):
    """About 45 s on 2 cores: install.sh runs twice from B with its real verification (mmcv
    ops, the whole stack imported, mim's lookup), plus the develop install of A."""
    a = copy_checkout(tmp_path / 'clone_a')
    b = copy_checkout(tmp_path / 'clone_b')
    venv = tmp_path / 'shared_venv'
    python = cheap_venv(venv)
    neutral = tmp_path / 'elsewhere'
    neutral.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    # Clone A installed first, as `SAIP_VENV=<venv> tools/install.sh` in A leaves it.
    # (the script itself fails unless saip_mm and mim then resolve to A from /)
    subprocess.run([str(python), str(a / 'tools' / 'misc' / 'install_develop.py')], cwd=a,
                   env=env, check=True, capture_output=True, text=True)
    # The stamp install.sh writes at its end, computed by install.sh's own function.
    stamp = subprocess.check_output(
        ['bash', '-c', 'set -euo pipefail; eval "$(sed -n "/^stamp_inputs() {/,/^}/p" '
         'tools/install.sh)"; ROOT="$PWD" stamp_inputs'], cwd=b, text=True).strip()
    assert re.fullmatch(r'[0-9a-f]{64}', stamp), stamp
    (venv / '.saip_mm_stamp').write_text(stamp + '\n')

    def install_sh_from_b() -> str:
        # PIP_NO_INDEX: a wrong stamp would start a full install; make it fail fast instead.
        proc = subprocess.run(['tools/install.sh'], cwd=b, timeout=300, text=True,
                              env=dict(env, SAIP_VENV=str(venv), PIP_NO_INDEX='1'),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert '[install] step: venv' not in proc.stdout  # the up-to-date path, nothing built
        return proc.stdout

    out = install_sh_from_b()
    # both paths named, then the develop install moved to B
    assert (f'saip_mm in {venv} is the develop install of {a}, not of this checkout ({b}): '
            f'reinstalling it for {b}.') in out, out
    assert f'its develop install now points to {b} (it pointed to {a})' in out, out
    assert neutral_import(python, neutral) == [str(b / 'saip_mm' / '__init__.py'),
                                               str(b / 'saip_mm')]
    site = Path(subprocess.check_output(
        [str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        text=True).strip())
    assert (site / 'saip_mm.egg-link').read_text().splitlines()[0] == str(b)
    assert str(a) not in (site / 'easy-install.pth').read_text().splitlines()

    # a second run from B: nothing to move, nothing reinstalled
    again = install_sh_from_b()
    assert 'up to date: nothing rebuilt, nothing reinstalled' in again
    assert 'develop install of' not in again and 'replacing' not in again
