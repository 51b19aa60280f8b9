"""tools/deployment/export_onnx.py and saip_mm.deployment: each model kind exported from its
(tiny) config and checkpoint, checked, compared with the model's own PyTorch inference."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deploy_testlib import load_tool

export_tool = load_tool('export_onnx')
ATOL = 1e-4


def fixed_images(n: int, size, seed: int = 0) -> torch.Tensor:
    """Normalised-looking inputs: fixed, not all in the same range as noise would be."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, *size, generator=gen)


def reference_outputs(kind: str, config, checkpoint, images: torch.Tensor) -> np.ndarray:
    """What the model's own inference gives, built and loaded without the export code."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(str(config))
    with torch.no_grad():
        if kind == 'backbone':
            from mmpretrain.models import VisionTransformer
            vit = VisionTransformer(arch=cfg.model.backbone.arch, img_size=(64, 32),
                                    out_type='cls_token', norm_cfg=dict(type='LN', eps=1e-6))
            load_checkpoint(vit, str(checkpoint), revise_keys=[(r'^backbone\.', '')],
                            strict=True)
            vit.eval()  # (mmpretrain's ViT.train() returns None: no chaining)
            return vit(images)[-1].numpy()
        init_default_scope(cfg.default_scope)
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        load_checkpoint(model, str(checkpoint), strict=True)
        model.eval()
        if kind == 'reid':
            samples = model(images, mode='predict')
            return F.normalize(torch.stack([s.pred_feature for s in samples]), dim=1).numpy()
        if kind == 'pose':
            return model(images, None, mode='tensor').numpy()
        metas = [dict(img_shape=tuple(images.shape[2:]))] * len(images)
        return model.encode_decode(images, metas).numpy()


EXPECTED_OUTPUT = {  # name, shape after the batch axis
    'backbone': ('embedding', [32]),
    'reid': ('embedding', [32]),
    'pose': ('heatmaps', [17, 16, 12]),
    'parsing': ('logits', [20, 128, 128]),
}


@pytest.fixture(scope='module')
def exported():
    """kind -> (onnx path, printed log) of the CLI exports, filled by the tests that make them."""
    return {}


def export_with_cli(kind, tiny_models, folder, capsys):
    model = getattr(tiny_models, kind)
    out = folder / f'{kind}.onnx'
    args = [str(model.config), str(model.checkpoint), '--out', str(out), '--num-images', '3']
    if kind == 'backbone':
        args += ['--kind', 'backbone']  # the SAIP config's own kind, said explicitly
    assert export_tool.main(args) == 0
    return out, capsys.readouterr().out


@pytest.mark.parametrize('kind', ['backbone', 'reid', 'pose', 'parsing'])
def test_export_checker_parity_dynamic_batch(kind, tiny_models, exported, tmp_path_factory,
                                             capsys, monkeypatch):
    """The CLI exports each kind; checker, opset, dynamic batch 1 and 3, parity <= 1e-4."""
    from saip_mm.deployment import check_onnx, ort_session, run_onnx
    model = getattr(tiny_models, kind)
    folder = tmp_path_factory.mktemp(kind)
    monkeypatch.chdir(folder)  # a checkout that ran `make demo` has data/vtest: not here
    out, log = exported[kind] = export_with_cli(kind, tiny_models, folder, capsys)
    assert 'onnx.checker passed' in log and 'tolerance 0.0001: ok' in log
    assert '3 fixed random images' in log  # no data/vtest in the test's working directory

    info = check_onnx(str(out))
    name, shape = EXPECTED_OUTPUT[kind]
    assert info['opset'] == 18
    assert info['inputs'] == {'image': ['batch', 3, *model.size]}
    assert info['outputs'] == {name: ['batch', *shape]}
    assert info['metadata']['kind'] == kind
    assert info['metadata']['input_size'] == f'{model.size[0]}x{model.size[1]}'
    assert info['metadata']['checkpoint'] == model.checkpoint.name

    session = ort_session(str(out))
    images = fixed_images(3, model.size, seed=7)
    expected = reference_outputs(kind, model.config, model.checkpoint, images)
    got3 = run_onnx(session, images)
    got1 = run_onnx(session, images[:1])
    assert got3.shape == (3, *shape) and got1.shape == (1, *shape)
    assert np.abs(got3 - expected).max() <= ATOL
    assert np.abs(got1 - expected[:1]).max() <= ATOL
    assert np.abs(expected).max() > 1e-2  # the comparison is not between zeros
    if kind == 'reid':
        np.testing.assert_allclose(np.linalg.norm(got3, axis=1), 1.0, atol=1e-5)
    report = json.loads(out.with_suffix('.json').read_text())
    assert report['ok'] and set(report['max_abs_diff']) == {'batch 1', 'batch 3'}


def test_featmap_simplify_and_baked_normalization(tiny_models, tmp_path, person_folder, capsys):
    """Patch-token map output, onnxslim, normalisation in the graph, parity on image files."""
    from saip_mm.deployment import check_onnx, normalize, ort_session, read_rgb, run_onnx
    from saip_mm.deployment.onnx_export import ExportSpec
    model = tiny_models.reid
    out = tmp_path / 'featmap.onnx'
    assert export_tool.main([
        str(model.config), str(model.checkpoint), '--kind', 'backbone', '--backbone-output',
        'featmap', '--simplify', '--bake-normalization', '--images', str(person_folder),
        '--num-images', '4', '--out', str(out)]) == 0
    log = capsys.readouterr().out
    assert f'4 images from {person_folder}' in log and ': ok' in log
    info = check_onnx(str(out))
    assert info['outputs'] == {'featmap': ['batch', 32, 4, 2]}
    assert info['metadata']['bake_normalization'] == 'True'  # kept through onnxslim
    assert 'RGB in [0, 255]' in info['metadata']['input']

    # raw RGB into the file == the trained model's backbone on normalised RGB
    rgb = read_rgb(sorted(str(p) for p in person_folder.glob('*.jpg'))[:2], model.size)
    spec = ExportSpec('backbone', model.size, 'featmap', '')
    from mmengine.runner import load_checkpoint
    from mmpretrain.models import VisionTransformer
    from deploy_testlib import TINY_ARCH
    vit = VisionTransformer(arch=TINY_ARCH, img_size=model.size, out_type='featmap',
                            norm_cfg=dict(type='LN', eps=1e-6))
    load_checkpoint(vit, str(model.checkpoint), revise_keys=[(r'^backbone\.', '')])
    vit.eval()
    with torch.no_grad():
        expected = vit(normalize(rgb, spec))[-1].numpy()
    got = run_onnx(ort_session(str(out)), rgb)
    assert np.abs(got - expected).max() <= ATOL


def test_parity_check_fails_for_another_model(tiny_models, exported, tmp_path, capsys):
    """The parity check can fail: the pose file against a perturbed PyTorch model."""
    from mmengine.config import Config
    from saip_mm.deployment import build_export_model
    if 'pose' not in exported:  # run alone: export it here
        exported['pose'] = export_with_cli('pose', tiny_models, tmp_path, capsys)
    path = str(exported['pose'][0])
    model = tiny_models.pose
    module, _ = build_export_model(Config.fromfile(str(model.config)), str(model.checkpoint))
    images = fixed_images(2, model.size)
    assert export_tool.check_parity(module, path, images, ATOL)['ok']
    with torch.no_grad():
        module.model.head.final_layer.bias.add_(1e-3)
    result = export_tool.check_parity(module, path, images, ATOL)
    assert not result['ok']
    assert all(abs(d - 1e-3) < 1e-5 for d in result['max_abs_diff'].values())


def test_wrong_checkpoints_and_existing_output(tiny_models, tmp_path):
    """Clear errors naming the file: backbone file for a full model, SAIP pretraining file for
    a backbone, a missing file; an existing --out is never overwritten without --force."""
    reid = tiny_models.reid
    with pytest.raises(SystemExit, match=r'saip_backbone\.pth does not fit the reid model.*'
                       r'only backbone\.\* tensors.*kind="backbone"'):
        export_tool.main([str(reid.config), str(tiny_models.backbone.checkpoint),
                          '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(SystemExit, match=r'saip_pretrain_epoch_1\.pth is a full SAIP pretraining '
                       r'checkpoint.*saip_to_backbone\.py'):
        export_tool.main([str(tiny_models.backbone.config), str(tiny_models.pretrain),
                          '--kind', 'backbone', '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(SystemExit, match='checkpoint not found: .*missing.pth'):
        export_tool.main([str(reid.config), str(tmp_path / 'missing.pth')])
    existing = tmp_path / 'existing.onnx'
    existing.write_bytes(b'user data')
    with pytest.raises(SystemExit, match='existing.onnx exists; pass --force'):
        export_tool.main([str(reid.config), str(reid.checkpoint), '--out', str(existing)])
    assert existing.read_bytes() == b'user data'
    with pytest.raises(ValueError, match='opset must be >= 17, got 16'):
        from saip_mm.deployment import export_onnx
        export_onnx(torch.nn.Identity(), None, str(tmp_path / 'y.onnx'), opset=16)


def test_infer_kind_names_the_config(tiny_models):
    from mmengine.config import Config
    from saip_mm.deployment import infer_kind
    assert infer_kind(Config.fromfile(str(tiny_models.parsing.config))) == 'parsing'
    assert infer_kind(Config.fromfile(str(tiny_models.backbone.config))) == 'backbone'
    cfg = Config(dict(model=dict(type='ImageClassifier', head=dict(type='LinearClsHead'))))
    with pytest.raises(ValueError, match=r"from the config: model\.type='ImageClassifier' \(head "
                       r"'LinearClsHead'\)"):
        infer_kind(cfg)


def test_opset_17_with_the_torchscript_exporter(tiny_models, tmp_path):
    """Opset 17 (TorchScript exporter): valid, dynamic batch, parity <= 1e-4."""
    from mmengine.config import Config
    from saip_mm.deployment import build_export_model, check_onnx, export_onnx
    model = tiny_models.reid
    module, spec = build_export_model(Config.fromfile(str(model.config)), str(model.checkpoint))
    path = export_onnx(module, spec, str(tmp_path / 'reid17.onnx'), opset=17)
    info = check_onnx(path)
    assert info['opset'] == 17 and info['inputs'] == {'image': ['batch', 3, 64, 32]}
    assert info['metadata']['kind'] == 'reid'
    images = fixed_images(3, model.size)
    assert export_tool.check_parity(module, path, images, ATOL)['ok']
