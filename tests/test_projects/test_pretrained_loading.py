"""saip_mm.models.utils.pretrained: strict SAIP backbone loading into a stock mmpretrain ViT.

(Kept next to the project tests: they share the SAIP checkpoints made by the converter.)
"""
import pytest
import torch
from mmpretrain.models import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed

from saip_mm.models.utils.pretrained import (PretrainedCheckpointError, load_pretrained_backbone,
                                             resolve_pos_embed_grid)


def vit(img_size=(256, 192), arch='deit-tiny', **kwargs):
    return VisionTransformer(arch=arch, img_size=img_size, out_type='featmap',
                             norm_cfg=dict(type='LN', eps=1e-6), **kwargs)


def stored(path):
    state = torch.load(path, weights_only=True)['state_dict']
    return {k[len('backbone.'):]: v for k, v in state.items()}


def test_pose_grid_resized_in_2d_and_everything_else_loaded(saip_checkpoints):
    model = vit((256, 192))
    report = load_pretrained_backbone(model, str(saip_checkpoints.tiny), src_grid=(16, 8))
    src = stored(saip_checkpoints.tiny)
    expected = resize_pos_embed(src['pos_embed'], (16, 8), (16, 12), 'bicubic', 1)
    state = model.state_dict()
    assert expected.shape == (1, 193, 192)
    torch.testing.assert_close(state['pos_embed'], expected, rtol=0, atol=0)
    for name, value in src.items():
        if name != 'pos_embed':
            assert torch.equal(state[name], value), name
    assert sorted(report['loaded']) == sorted(state)
    assert report['resized']['pos_embed']['src_grid'] == (16, 8)
    assert report['resized']['pos_embed']['dst_grid'] == (16, 12)
    assert report['dropped'] == []


def test_grid_from_checkpoint_meta(saip_checkpoints, tmp_path):
    ckpt = torch.load(saip_checkpoints.tiny, weights_only=True)
    ckpt['meta']['pos_embed_grid'] = [16, 8]
    path = tmp_path / 'with_meta.pth'
    torch.save(ckpt, path)
    model = vit((256, 192))
    report = load_pretrained_backbone(model, str(path))  # no src_grid needed
    assert report['resized']['pos_embed']['grid_from'] == "the checkpoint's meta"
    with pytest.raises(PretrainedCheckpointError, match=r'meta says pos_embed_grid=\(16, 8\)'):
        load_pretrained_backbone(vit((256, 192)), str(path), src_grid=(8, 16))


def test_unresolvable_grid_names_the_shapes(saip_checkpoints, tmp_path):
    # a backbone file without meta['pos_embed_grid'] (converted by an older converter)
    ckpt = torch.load(saip_checkpoints.tiny, weights_only=True)
    assert ckpt['meta'].pop('pos_embed_grid') == [16, 8]
    old = tmp_path / 'saip_vit-tiny_old.pth'
    torch.save(ckpt, old)
    with pytest.raises(PretrainedCheckpointError) as info:
        load_pretrained_backbone(vit((256, 192)), str(old))
    message = str(info.value)
    assert '128 positions are not a square grid' in message and 'saip_vit-tiny_old.pth' in message
    with pytest.raises(PretrainedCheckpointError, match='has 96 positions but the checkpoint '
                                                        'holds 128'):
        load_pretrained_backbone(vit((256, 192)), str(saip_checkpoints.tiny), src_grid=(8, 12))


def test_same_grid_loads_unchanged(saip_checkpoints):
    model = vit((256, 128))
    report = load_pretrained_backbone(model, str(saip_checkpoints.tiny), src_grid=(16, 8))
    assert report['resized'] == {}
    assert torch.equal(model.pos_embed, stored(saip_checkpoints.tiny)['pos_embed'])


def test_vitpose_style_model_without_cls_token(saip_checkpoints):
    model = vit((256, 192), with_cls_token=False)
    report = load_pretrained_backbone(model, str(saip_checkpoints.tiny), src_grid=(16, 8))
    src = stored(saip_checkpoints.tiny)['pos_embed'][:, 1:]  # (1, 128, 192) patch positions
    expected = resize_pos_embed(src, (16, 8), (16, 12), 'bicubic', num_extra_tokens=0)
    torch.testing.assert_close(model.pos_embed, expected, rtol=0, atol=0)
    assert 'cls_token' in report['dropped']


@pytest.mark.parametrize('which,message', [
    ('full', r'full SAIP pretraining checkpoint \(it holds csm_head\.\*, teacher\.\*, '
             r'backbone\.ln_inter\.\*\).*saip_to_backbone\.py'),
    ('small', r'width 384 \(ViT-Small\) but model\.backbone has width 192 \(ViT-Tiny\)'),
])
def test_wrong_checkpoints_fail_clearly(saip_checkpoints, which, message):
    with pytest.raises(PretrainedCheckpointError, match=message):
        load_pretrained_backbone(vit(), str(getattr(saip_checkpoints, which)), src_grid=(16, 8))


def test_checkpoint_without_prefix_and_missing_keys(saip_checkpoints, tmp_path):
    bare = {k: v for k, v in stored(saip_checkpoints.tiny).items()}
    torch.save(dict(state_dict=bare), tmp_path / 'bare.pth')
    with pytest.raises(PretrainedCheckpointError, match="no keys starting with 'backbone.'"):
        load_pretrained_backbone(vit(), str(tmp_path / 'bare.pth'), src_grid=(16, 8))
    partial = {'backbone.' + k: v for k, v in bare.items() if not k.startswith('layers.11.')}
    torch.save(dict(state_dict=partial), tmp_path / 'partial.pth')
    with pytest.raises(PretrainedCheckpointError, match='11 transformer blocks but model.backbone '
                                                        'has 12'):
        load_pretrained_backbone(vit(), str(tmp_path / 'partial.pth'), src_grid=(16, 8))
    no_norm = {'backbone.' + k: v for k, v in bare.items() if not k.startswith('ln1.')}
    torch.save(dict(state_dict=no_norm), tmp_path / 'no_norm.pth')
    with pytest.raises(PretrainedCheckpointError, match='2 missing in the checkpoint: ln1.bias, '
                                                        'ln1.weight'):
        load_pretrained_backbone(vit(), str(tmp_path / 'no_norm.pth'), src_grid=(16, 8))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_pretrained_backbone(vit(), str(tmp_path / 'nope.pth'))


def test_resolve_grid_rules():
    assert resolve_pos_embed_grid(196)[0] == (14, 14)  # stock square convention, said so
    assert 'square' in resolve_pos_embed_grid(196)[1]
    assert resolve_pos_embed_grid(128, src_grid=(16, 8)) == ((16, 8), 'src_grid')
    with pytest.raises(PretrainedCheckpointError, match='not a square grid'):
        resolve_pos_embed_grid(128)


def test_stock_init_cfg_path_fails_clearly_on_a_saip_grid(saip_checkpoints):
    model = vit((256, 192))
    model.init_cfg = dict(type='Pretrained', checkpoint=str(saip_checkpoints.tiny),
                          prefix='backbone.')
    with pytest.raises(PretrainedCheckpointError,
                       match=r'cannot resize pos_embed from \(1, 129, 192\) to \(1, 193, 192\)'):
        model.init_weights()
    # square sources keep the stock behaviour
    square = vit((224, 224))
    state = {k: v.clone() for k, v in square.state_dict().items()}
    vit((256, 192)).load_state_dict(state, strict=True)


def test_unreadable_pretrained_files_name_the_file(saip_checkpoints, tmp_path):
    """Truncated and text files given as `pretrained=`: the file and the cause, not torch's
    ``PytorchStreamReader failed`` / ``pop from empty list``; directly and through the hook."""
    from types import SimpleNamespace

    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from torch import nn

    from saip_mm.engine.hooks.pretrained_hook import SAIPPretrainedHook
    truncated = tmp_path / 'saip_vit-tiny_cut.pth'
    truncated.write_bytes(saip_checkpoints.tiny.read_bytes()[:10000])
    text = tmp_path / 'readme.pth'
    text.write_text('download the checkpoint from the release page\n')
    cases = [(truncated, 'it is a truncated or damaged zip archive (10000 bytes; an interrupted '
                         'save or copy?)'),
             (text, "it is a text file (starts with b'download the'), not a checkpoint")]
    for path, cause in cases:
        expected = f'pretrained checkpoint {path} cannot be read as a PyTorch checkpoint: {cause}'
        with pytest.raises(PretrainedCheckpointError) as info:
            load_pretrained_backbone(vit(), str(path), src_grid=(16, 8))
        assert str(info.value).startswith(expected)
        model = nn.Module()
        model.backbone = vit()
        runner = SimpleNamespace(cfg=Config(dict(pretrained=str(path))), model=model,
                                 logger=MMLogger.get_current_instance())
        SAIPPretrainedHook(src_grid=(16, 8)).before_run(runner)
        with pytest.raises(PretrainedCheckpointError) as info:
            model.backbone.init_weights()
        assert str(info.value).startswith(expected)
