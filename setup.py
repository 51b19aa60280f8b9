"""Install saip_mm; ships configs/, tools/, projects/ and model-index.yml in saip_mm/.mim so
that `mim train saip_mm` and `mim search saip_mm` work."""
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def get_version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'saip_mm', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname: str) -> list:
    """Read requirement lines, following `-r` includes, skipping comments."""
    reqs = []
    with open(osp.join(HERE, fname)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(line[3:].strip())
            else:
                reqs.append(line)
    return reqs


def add_mim_extension(mode: str = '') -> None:
    """Make configs/, tools/, projects/ and model-index.yml visible as saip_mm/.mim/… (the
    OpenMMLab convention: mim finds configs, scripts and the model index there).

    Args:
        mode (str): 'symlink' or 'copy'; by default chosen from the setup command: editable
            installs get symlinks, wheels and sdists copies. Defaults to ''.
    """
    if mode:
        pass
    elif 'develop' in sys.argv or any(a.startswith('editable') for a in sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'install', 'build'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 'saip_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'projects', 'model-index.yml'):
        src, dst = osp.join(HERE, name), osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if not osp.exists(src):
            continue
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), dst)
                continue
            except OSError:
                warnings.warn(f'could not symlink {src}; copying instead')
        if osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='saip_mm',
        version=get_version(),
        description='SAIP: scale-aware image pretraining for lightweight human-centric ViTs, '
        'as an OpenMMLab (mmpretrain) plugin',
        long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(
            osp.join(HERE, 'README.md')) else '',
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools', 'projects')),
        include_package_data=True,
        package_data={'saip_mm': ['.mim/configs/**/*', '.mim/tools/**/*', '.mim/projects/**/*',
                                  '.mim/model-index.yml']},
        python_requires='>=3.9',
        install_requires=parse_requirements('requirements/runtime.txt') +
        parse_requirements('requirements/mminstall.txt'),
        extras_require={
            'all': parse_requirements('requirements/optional.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
            'mim': parse_requirements('requirements/mminstall.txt'),
            'deploy': parse_requirements('requirements/deploy.txt'),
        },
        zip_safe=False)
