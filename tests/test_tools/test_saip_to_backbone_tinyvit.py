"""tools/model_converters/saip_to_backbone.py on a SAIP TinyViT-5M checkpoint: the output loads
strictly into mmpretrain's stock TinyViT."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.runner import load_checkpoint
from mmpretrain.models import TinyViT

from saip_testlib import tinyvit_saip

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'model_converters' / 'saip_to_backbone.py'


def test_tinyvit_export_loads_strictly_into_stock_tinyvit(tmp_path):
    model = tinyvit_saip()
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


def test_tinyvit_export_carries_the_trained_batchnorm_statistics(tmp_path):
    """Train-mode student forwards (what a training step's forwards do to the BatchNorm
    statistics), the teacher update SAIPTeacherHook makes after each optimiser step, then the
    export: the stock TinyViT's statistics are the trained ones, not the initial mean 0 /
    var 1. Catches: update_teacher not copying the student's buffers into the teacher (the
    exported backbone)."""
    model = tinyvit_saip()  # no init_weights: it changes no BatchNorm buffer
    initial = {k: v.clone() for k, v in model.teacher['backbone'].named_buffers()
               if k.endswith(('running_mean', 'running_var'))}
    model.train()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(2):
            model.backbone(2.0 * torch.randn(2, 3, 96, 48, generator=gen) + 0.5)
    model.update_teacher()
    trained = {k: v.clone() for k, v in model.backbone.named_buffers() if k in initial}
    src = tmp_path / 'iter_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=1)), src)
    out = tmp_path / 'saip_tinyvit-5m.pth'
    # The tool in this process (its main() is what the command line runs).
    spec = importlib.util.spec_from_file_location('saip_to_backbone_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([str(src), str(out)])

    stock = TinyViT(arch='5m', img_size=(256, 128))
    load_checkpoint(stock, str(out), revise_keys=[(r'^backbone\.', '')], strict=True)
    exported = stock.state_dict()
    assert len(trained) > 30
    for key, value in trained.items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=0, msg=key)
        # the forwards moved every statistic away from its initial value
        assert not torch.equal(value, initial[key]), key
