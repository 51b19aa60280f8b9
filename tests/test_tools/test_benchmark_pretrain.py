"""benchmark_pretrain.py: what runs the authors' step (their code is not in this repository):
the timm 0.3.2 stand-in and the loading of single definitions from their training script."""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from saip_testlib import load_tool

ROOT = Path(__file__).resolve().parents[2]
TIMM_NAMES = ('timm', 'timm.models', 'timm.models.vision_transformer', 'timm.models.layers')


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis_tools/benchmark_pretrain.py', 'benchmark_pretrain_tool')


def test_timm032_stand_in_block_is_a_pre_norm_vit_block(tool):
    saved = {name: sys.modules.get(name) for name in TIMM_NAMES}
    try:
        tool._install_timm032_stand_in()
        from timm.models.layers import to_2tuple
        from timm.models.vision_transformer import Block
    finally:  # the real timm (other tests use it) comes back
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    torch.manual_seed(0)
    block = Block(16, 4, 4., qkv_bias=True, qk_scale=None).eval()  # the SAIPv1 decoders' call
    x = torch.randn(2, 5, 16)
    h = block.norm1(x)
    q, k, v = block.attn.qkv(h).reshape(2, 5, 3, 4, 4).permute(2, 0, 3, 1, 4)
    attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 16)
    x1 = x + block.attn.proj(attn)
    expected = x1 + block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(x1))))
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    assert to_2tuple(3) == (3, 3) and to_2tuple((2, 1)) == (2, 1)


def test_definitions_runs_only_the_named_classes(tool, tmp_path):
    script = tmp_path / 'main_pretrain.py'
    script.write_text('import tensorboard_that_is_not_installed\n'
                      'assert False, "module level code must not run"\n'
                      'class CSMLoss:\n'
                      '    def value(self):\n'
                      '        return torch.ones(2).sum()\n'
                      'def other():\n'
                      '    raise RuntimeError\n')
    found = tool._definitions(script, ['CSMLoss'], dict(torch=torch))
    assert found['CSMLoss']().value() == 2
    with pytest.raises(SystemExit, match='defines no'):
        tool._definitions(script, ['get_grad_norm_'], {})
