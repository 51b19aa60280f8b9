import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner import load_checkpoint
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'model_converters' / 'saip_to_backbone.py'


@pytest.fixture(scope='module')
def pretrain_ckpt(tmp_path_factory):
    """A full SAIP checkpoint as the Runner writes it (state_dict + meta), ViT-Tiny backbone."""
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='SAIP', backbone=dict(type='SAIPViT', arch='tiny'),
        csm_head=dict(type='CSMHead', out_channels=256), csr_head=None, css_head=None))
    model.init_weights()
    with torch.no_grad():  # make student and teacher differ so the choice is visible
        for p in model.backbone.parameters():
            p.add_(0.01)
    path = tmp_path_factory.mktemp('ckpt') / 'epoch_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1, iter=10)), path)
    return path, model


@pytest.mark.parametrize('source', ['teacher', 'student'])
def test_converted_backbone_loads_into_stock_vit(pretrain_ckpt, tmp_path, source):
    path, model = pretrain_ckpt
    out = tmp_path / f'{source}.pth'
    res = subprocess.run([sys.executable, str(TOOL), str(path), str(out), '--source', source],
                         capture_output=True, text=True, check=True)
    assert 'backbone tensors' in res.stdout and 'ln_inter' in res.stdout
    ckpt = torch.load(out, weights_only=True)
    assert all(k.startswith('backbone.') for k in ckpt['state_dict'])
    stock = VisionTransformer(arch='deit-tiny', img_size=(256, 128), out_type='cls_token',
                              norm_cfg=dict(type='LN', eps=1e-6))
    stock.init_cfg = dict(type='Pretrained', checkpoint=str(out), prefix='backbone.')
    stock.init_weights()
    # strict load of the very same file: no missing and no unexpected keys
    load_checkpoint(stock, str(out), revise_keys=[(r'^backbone\.', '')], strict=True)
    saip_backbone = model.teacher['backbone'] if source == 'teacher' else model.backbone
    x = torch.randn(2, 3, 256, 128)
    stock.eval(), saip_backbone.eval()
    with torch.no_grad():
        torch.testing.assert_close(stock(x)[-1], saip_backbone(x)['last'][:, 0],
                                   atol=1e-5, rtol=1e-4)


def test_wrong_checkpoint_and_no_overwrite(tmp_path, pretrain_ckpt):
    bad = tmp_path / 'bad.pth'
    torch.save(dict(state_dict={'head.fc.weight': torch.zeros(2, 2)}), bad)
    res = subprocess.run([sys.executable, str(TOOL), str(bad), str(tmp_path / 'o.pth')],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert 'no SAIP teacher backbone' in res.stderr and 'bad.pth' in res.stderr
    existing = tmp_path / 'exists.pth'
    existing.write_bytes(b'user data')
    res = subprocess.run([sys.executable, str(TOOL), str(pretrain_ckpt[0]), str(existing)],
                         capture_output=True, text=True)
    assert res.returncode != 0 and '--force' in res.stderr
    assert existing.read_bytes() == b'user data'
