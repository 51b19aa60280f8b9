"""saip_mm.utils is below saip_mm.models: no module of it imports saip_mm.models.

Read from the source with ``ast`` (importing would not tell: ``import saip_mm`` imports the
models anyway), so imports inside functions and relative imports count too.
"""
import ast
from pathlib import Path
from typing import Iterator, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
UTILS = ROOT / 'saip_mm' / 'utils'


def package_of(path: Path) -> str:
    """The package relative imports of a file start from: its folder, for ``__init__.py`` too."""
    return '.'.join(path.relative_to(ROOT).parts[:-1])


def imported_modules(source: str, package: str) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, relative ones resolved
    against ``package``; ``from a import b`` gives ``a`` and ``a.b`` (b may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                module = f'{base}.{node.module}' if node.module else base
            else:
                module = node.module or ''
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f'{module}.{alias.name}'
        elif (isinstance(node, ast.Call) and node.args
              and getattr(node.func, 'attr', getattr(node.func, 'id', None)) in (
                  'import_module', '__import__')
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def is_models(module: str) -> bool:
    return module == 'saip_mm.models' or module.startswith('saip_mm.models.')


def test_checker_sees_relative_nested_and_dynamic_imports():
    source = ('import os\n'
              'from ..x import y\n'
              'def f():\n'
              '    from ...models.utils import pretrained\n'
              '    from saip_mm import models\n'
              "    importlib.import_module('saip_mm.models.backbones')\n"
              '    from .checkpoint_io import read_checkpoint\n')
    found = list(imported_modules(source, 'saip_mm.utils.sub'))
    assert (2, 'saip_mm.utils.x') in found
    assert [m for _, m in found if is_models(m)] == [
        'saip_mm.models.utils', 'saip_mm.models.utils.pretrained', 'saip_mm.models',
        'saip_mm.models.backbones']
    assert (7, 'saip_mm.utils.sub.checkpoint_io') in found
    assert package_of(UTILS / 'vit_checkpoint.py') == package_of(UTILS / '__init__.py') == \
        'saip_mm.utils'


def test_utils_do_not_import_models():
    files = sorted(UTILS.rglob('*.py'))
    assert UTILS / 'vit_checkpoint.py' in files and UTILS / 'pos_embed_grid.py' in files
    offenders = [f'{path.relative_to(ROOT)}:{line}: imports {module}'
                 for path in files
                 for line, module in imported_modules(path.read_text(), package_of(path))
                 if is_models(module)]
    assert not offenders, ('saip_mm.utils must not import saip_mm.models (move the shared code '
                           'into saip_mm.utils instead):\n' + '\n'.join(offenders))


def test_grid_rules_are_one_function_importable_from_both_places():
    from saip_mm.models.utils import PretrainedCheckpointError as from_models
    from saip_mm.models.utils.pretrained import resolve_pos_embed_grid as from_loader
    from saip_mm.utils import vit_checkpoint
    from saip_mm.utils.pos_embed_grid import PretrainedCheckpointError, resolve_pos_embed_grid
    assert from_loader is resolve_pos_embed_grid is vit_checkpoint.resolve_pos_embed_grid
    assert from_models is PretrainedCheckpointError
    # the converter's wording of the shared rule: a non-square grid needs --src-grid
    with pytest.raises(vit_checkpoint.ViTLayoutError,
                       match=r'x\.pth: cannot tell the patch grid.*pass --src-grid H W'):
        vit_checkpoint.source_grid(128, path='x.pth')
    assert vit_checkpoint.source_grid(128, src_grid=(16, 8)) == ((16, 8), '--src-grid')
    assert vit_checkpoint.source_grid(196)[0] == (14, 14)
