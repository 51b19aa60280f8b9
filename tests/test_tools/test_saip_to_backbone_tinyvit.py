"""tools/model_converters/saip_to_backbone.py on a SAIP TinyViT-5M checkpoint: the output loads
strictly into mmpretrain's stock TinyViT."""
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.runner import load_checkpoint
import saip_mm  # noqa: F401  (registers SAIP)
from mmpretrain.models import TinyViT
from mmpretrain.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'model_converters' / 'saip_to_backbone.py'


def test_tinyvit_export_loads_strictly_into_stock_tinyvit(tmp_path):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='SAIP', backbone=dict(type='SAIPTinyViT', arch='5m'),
        csm_head=dict(type='CSMHead', in_channels=320, out_channels=256,
                      loss=dict(type='CSMLoss', attn_loss_weight=0.0)),
        csr_head=None, css_head=dict(type='CSSHead', in_channels=160, embed_dims=32,
                                     num_heads=2)))
    model.init_weights()
    teacher = model.teacher['backbone']
    with torch.no_grad():  # student and teacher differ; buffers are not at their init values
        for p in model.backbone.parameters():
            p.add_(0.01)
        for name, b in teacher.named_buffers():
            if name.endswith(('running_mean', 'running_var')):
                b.uniform_(0.5, 1.5)
    src = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1, iter=10)), src)
    out = tmp_path / 'saip_tinyvit-5m.pth'
    res = subprocess.run([sys.executable, str(TOOL), str(src), str(out)],
                         capture_output=True, text=True, cwd=str(ROOT))
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'ln_inter.weight' in res.stdout  # the pretraining-only norm is dropped

    stock = TinyViT(arch='5m', img_size=(256, 128))  # the stock classification layout
    load_checkpoint(stock, str(out), revise_keys=[(r'^backbone\.', '')], strict=True)
    expected = {k: v for k, v in teacher.state_dict().items() if not k.startswith('ln_inter.')}
    state = stock.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    # the stock output is the pooled feature SAIP's CSM learned on
    x = torch.randn(2, 3, 256, 128)
    stock.eval()
    teacher.eval()
    with torch.no_grad():
        torch.testing.assert_close(stock(x)[0], teacher(x)['last'][:, 0], rtol=1e-4, atol=1e-5)
