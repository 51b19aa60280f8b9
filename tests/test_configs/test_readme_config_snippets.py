"""The README's inheriting-config example builds what it says (values --cfg-options cannot
express: a list of backend dicts, a dict of collapse rules)."""
import re
from pathlib import Path

from mmengine.config import Config
from mmpretrain.registry import HOOKS, VISUALIZERS

import saip_mm  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def readme_config_blocks():
    """Every ```python block of the README that inherits a config (``_base_ = ...``)."""
    text = (ROOT / 'README.md').read_text()
    return [b for b in re.findall(r'```python\n(.*?)```', text, flags=re.S) if '_base_ =' in b]


def test_inheriting_config_example_builds_backends_and_rules(tmp_path):
    blocks = readme_config_blocks()
    assert blocks, 'the README lost its inheriting-config example'
    for block in blocks:
        base = re.search(r"_base_ = '([^']+)'", block).group(1)
        assert (ROOT / base).is_file(), base
        path = tmp_path / 'my_demo.py'
        path.write_text(block.replace(f"'{base}'", repr(str(ROOT / base))))
        cfg = Config.fromfile(str(path))
        backends = cfg.visualizer.vis_backends
        assert [b['type'] for b in backends] == ['LocalVisBackend', 'TensorboardVisBackend']
        visualizer = VISUALIZERS.build(dict(cfg.visualizer, name='readme_snippet',
                                            save_dir=str(tmp_path / 'vis')))
        assert [type(b).__name__ for b in visualizer._vis_backends.values()] == \
            ['LocalVisBackend', 'TensorboardVisBackend']
        health = HOOKS.build(cfg.custom_hooks[1])
        assert health.collapse_rules == {'cosine_student': ('>', 0.995)}
        assert health.on_collapse == 'stop'
        # the other hooks are the demo's own, unchanged
        demo = Config.fromfile(str(ROOT / base))
        assert [h for i, h in enumerate(cfg.custom_hooks) if i != 1] == \
            [h for i, h in enumerate(demo.custom_hooks) if i != 1]
        assert HOOKS.build(dict(cfg.custom_hooks[1], collapse_rules={})).collapse_rules == {}
