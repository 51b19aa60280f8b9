import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.runner import load_checkpoint
import saip_mm  # noqa: F401  (registers SAIP)
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


def _convert_module():
    return SimpleNamespace(**runpy.run_path(str(TOOL)))  # the CLI's code path, in-process


def test_anchor_grid_in_meta_and_img_size_resize(pretrain_ckpt, tmp_path):
    from mmpretrain.models.utils import resize_pos_embed
    path, model = pretrain_ckpt
    convert = _convert_module().convert
    anchor_out, pose_out = tmp_path / 'anchor.pth', tmp_path / 'pose.pth'
    report = convert(str(path), str(anchor_out))
    assert report['grid'] == (16, 8) and report['resized'] is None
    anchor = torch.load(anchor_out, weights_only=True)
    assert anchor['meta']['pos_embed_grid'] == [16, 8]
    report = convert(str(path), str(pose_out), img_size=(256, 192))
    assert report['resized'] == dict(src_grid=(16, 8), dst_grid=(16, 12))
    pose = torch.load(pose_out, weights_only=True)
    assert pose['meta']['pos_embed_grid'] == [16, 12] and pose['meta']['img_size'] == [256, 192]
    expected = resize_pos_embed(anchor['state_dict']['backbone.pos_embed'], (16, 8), (16, 12),
                                mode='bicubic', num_extra_tokens=1)
    assert torch.equal(pose['state_dict']['backbone.pos_embed'], expected)
    # a stock ViT at 256x192 loads it as is, strictly (no resize left to do)
    stock = VisionTransformer(arch='deit-tiny', img_size=(256, 192), out_type='featmap',
                              norm_cfg=dict(type='LN', eps=1e-6))
    load_checkpoint(stock, str(pose_out), revise_keys=[(r'^backbone\.', '')], strict=True)
    assert torch.equal(stock.pos_embed, expected)
    with pytest.raises(ValueError, match=r'pos_embed holds 128 patch positions, not the 16x16 '
                                         r'grid of --anchor 256 256'):
        convert(str(path), str(tmp_path / 'x.pth'), anchor=(256, 256))


def test_non_finite_backbone_is_refused(pretrain_ckpt, tmp_path):
    path, model = pretrain_ckpt
    state = model.state_dict()
    state['teacher.backbone.layers.3.attn.qkv.weight'] = state[
        'teacher.backbone.layers.3.attn.qkv.weight'].clone()
    state['teacher.backbone.layers.3.attn.qkv.weight'][0, :5] = float('nan')
    diverged = tmp_path / 'epoch_7.pth'
    torch.save(dict(state_dict=state), diverged)
    out = tmp_path / 'out.pth'
    with pytest.raises(ValueError) as info:
        _convert_module().convert(str(diverged), str(out))
    assert str(info.value) == (
        f'{diverged}: non-finite weights in teacher.backbone.layers.3.attn.qkv.weight (5 of '
        f'110592 values are NaN or inf): the run that wrote it diverged; convert an earlier '
        f'checkpoint instead (nothing was written)')
    assert not out.exists()
    # the student is finite: exporting it is allowed
    _convert_module().convert(str(diverged), str(out), source='student')


def test_unreadable_checkpoints_name_the_file(pretrain_ckpt, tmp_path):
    truncated = tmp_path / 'epoch_2.pth'
    truncated.write_bytes(Path(pretrain_ckpt[0]).read_bytes()[:4096])
    text = tmp_path / 'notes.pth'
    text.write_text('hello, this is not a checkpoint\n')
    tool = _convert_module()
    with pytest.raises(SystemExit) as info:  # the CLI: the message, no traceback
        tool.main([str(truncated), str(tmp_path / 'o.pth')])
    assert info.value.code == (
        f'error: {truncated} cannot be read as a PyTorch checkpoint: it is a truncated or '
        f'damaged zip archive (4096 bytes; an interrupted save or copy?)')
    convert = tool.convert
    from saip_mm.utils.checkpoint_io import CheckpointReadError
    with pytest.raises(CheckpointReadError, match=(
            rf"{text} cannot be read as a PyTorch checkpoint: it is a text file \(starts with "
            rf"b'hello, this '\), not a checkpoint")):
        convert(str(text), str(tmp_path / 'o.pth'))
    assert not (tmp_path / 'o.pth').exists()


def test_dst_equal_to_src_is_refused_even_with_force(pretrain_ckpt, tmp_path):
    import shutil
    src = tmp_path / 'epoch_300.pth'
    shutil.copy(pretrain_ckpt[0], src)
    before = src.read_bytes()
    with pytest.raises(ValueError, match='is the input checkpoint'):
        _convert_module().convert(str(src), str(src), force=True)
    dst = f'{tmp_path}/./epoch_300.pth'  # the same file under another spelling
    with pytest.raises(SystemExit) as info:
        _convert_module().main([str(src), dst, '--force'])
    assert info.value.code == (
        f'error: the output {dst} is the input checkpoint {src}: refusing to replace it '
        f'(also with --force); choose another output path')
    assert src.read_bytes() == before


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_exported_file_keeps_the_umask_mode(pretrain_ckpt, tmp_path, umask):
    """The write-aside file of mkstemp is 0600; the exported backbone must end up like every
    other new file (0644 under the usual umask 022), or teammates cannot read it."""
    import os
    import stat
    old = os.umask(umask)
    try:
        _convert_module().convert(str(pretrain_ckpt[0]), str(tmp_path / 'b.pth'))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / 'b.pth').stat().st_mode) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name != 'b.pth']  # no temporary left
