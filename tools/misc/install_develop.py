"""Install this checkout into the running Python environment in develop mode (editable).

Usage: ``python tools/misc/install_develop.py`` (``tools/install.sh`` runs it).

Why not ``pip install -e .``: pip now makes a PEP 660 editable install, which keeps the
package's metadata in site-packages and its code in the checkout. ``mim train saip_mm CONFIG``
(openmim 0.3.9) looks for ``<metadata location>/saip_mm/.mim/tools/train.py``, that is
``site-packages/saip_mm/…``, which does not exist, and fails. Develop mode, the layout
``setup.py develop`` used to write, keeps the metadata in the checkout (``saip_mm.egg-info``)
and points site-packages at it (``saip_mm.egg-link`` and a line in ``easy-install.pth``); mim,
``pkg_resources``, ``importlib.metadata`` and pip (``pip list``, ``pip uninstall saip_mm``) all
read it. The code is imported from the checkout, so edits take effect without reinstalling.

One environment holds one develop install. Run from another checkout of this project, the
script replaces the first one: the egg-link is rewritten and the other checkout's line leaves
``easy-install.pth`` (otherwise, being first in the file, it would keep winning the import).

Dependencies are not installed here (``tools/install.sh`` installs the verified stack first).
"""
import os
import os.path as osp
import runpy
import subprocess
import sys
import sysconfig
from typing import Optional

# real path: compared with where Python imports saip_mm from
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__))))
NAME = 'saip_mm'


def site_packages() -> str:
    """The running environment's site-packages (``purelib``)."""
    return sysconfig.get_paths()['purelib']


def remove_other_install(site: str) -> None:
    """Uninstall a non-develop install (wheel or PEP 660 editable) of the package, if any."""
    if any(n.startswith(f'{NAME}-') and n.endswith('.dist-info') for n in os.listdir(site)):
        subprocess.check_call([sys.executable, '-m', 'pip', 'uninstall', '-y', '-q', NAME])


def is_checkout(path: str) -> bool:
    """A folder that holds this project (its ``setup.py`` and ``saip_mm`` package)."""
    return (osp.isfile(osp.join(path, 'setup.py'))
            and osp.isfile(osp.join(path, NAME, '__init__.py')))


def previous_checkout(site: str) -> Optional[str]:
    """The checkout the current egg-link points to, if any."""
    link = osp.join(site, f'{NAME}.egg-link')
    if not osp.isfile(link):
        return None
    with open(link) as f:
        lines = f.read().splitlines()
    return osp.realpath(lines[0]) if lines and lines[0].strip() else None


def write_develop_links(site: str) -> None:
    """``saip_mm.egg-link`` → the checkout, and only this checkout in ``easy-install.pth``."""
    with open(osp.join(site, f'{NAME}.egg-link'), 'w') as f:
        f.write(f'{ROOT}\n.')
    pth = osp.join(site, 'easy-install.pth')
    lines = open(pth).read().splitlines() if osp.exists(pth) else []

    def checkout_of(line: str) -> Optional[str]:  # a .pth path line is relative to its folder
        if not line.strip() or line.startswith(('#', 'import ', 'import\t')):
            return None
        path = osp.realpath(osp.join(site, line.strip()))
        return path if is_checkout(path) else None

    # Another checkout of this project listed here would still be imported: drop it.
    kept = [line for line in lines if checkout_of(line) in (None, ROOT)]
    if ROOT not in map(checkout_of, kept):
        kept.append(ROOT)
    if kept != lines:
        with open(pth, 'w') as f:
            f.write('\n'.join(kept) + '\n')


def check() -> str:
    """In a fresh interpreter: the package and mim's notion of its folder are this checkout."""
    code = ('import os.path as osp, saip_mm; from mim.utils import get_installed_path; '
            'print(osp.dirname(saip_mm.__file__)); print(get_installed_path("saip_mm"))')
    out = subprocess.check_output([sys.executable, '-c', code], cwd=os.sep, text=True,
                                  env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
    package, mim_path = out.split()[-2:]
    expected = osp.join(ROOT, NAME)
    if osp.realpath(package) != expected or osp.realpath(mim_path) != expected:
        raise SystemExit(f'develop install of {ROOT} failed: from {os.sep}, saip_mm imports '
                         f'from {package} and mim looks in {mim_path}; another *.pth file in '
                         f'{site_packages()} may list that checkout first')
    return expected


def main() -> None:
    site = site_packages()
    previous = previous_checkout(site)
    if previous is not None and previous != ROOT:
        print(f'[install] replacing the develop install of {previous} with {ROOT} in {site}')
    remove_other_install(site)
    # metadata in the checkout, and saip_mm/.mim/{configs,tools,projects} as symlinks
    subprocess.check_call([sys.executable, 'setup.py', '-q', 'egg_info'], cwd=ROOT)
    runpy.run_path(osp.join(ROOT, 'setup.py'))['add_mim_extension']('symlink')
    write_develop_links(site)
    print(f'[install] {NAME} in develop mode from {check()}')


if __name__ == '__main__':
    main()
