"""tools/model_converters/to_mmpretrain_vit.py: every layout → mmpretrain ViT, same forward.

Each source model is built here from a random initialisation: timm's VisionTransformer where
timm defines the family (timm, DeiT, MAE, HAP, DINO, SOLIDER-style teachers), and a small
reference ViT written from the public model definitions where it does not (PATH's ViT without
cls token, the SAIP authors' ViT with its ``inter_norm``). Every parameter is perturbed so that
a swapped norm or a wrong MLP mapping cannot pass. Tiny sizes: width 24, 2 blocks, 2 heads.
"""
import argparse
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import nn

from saip_mm.utils.checkpoint_io import CheckpointReadError
from saip_mm.utils.vit_checkpoint import ViTLayoutError

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'model_converters' / 'to_mmpretrain_vit.py'
WIDTH, DEPTH, HEADS = 24, 2, 2
ARCH = dict(embed_dims=WIDTH, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=4 * WIDTH)
LN = dict(type='LN', eps=1e-6)  # timm, DINO, MAE, PATH and SAIPv1 all use eps 1e-6


TOOL_GLOBALS = runpy.run_path(str(TOOL))  # the CLI's code, in-process (no interpreter start)
convert, main = TOOL_GLOBALS['convert'], TOOL_GLOBALS['main']


def perturbed(model: nn.Module, seed: int) -> nn.Module:
    """Random offsets on every tensor (LayerNorms start at 1/0, which would hide a swap)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def timm_vit(img_size, patch, seed, **kwargs):
    torch.manual_seed(seed)
    model = TimmViT(img_size=img_size, patch_size=patch, embed_dim=WIDTH, depth=DEPTH,
                    num_heads=HEADS, num_classes=5, qkv_bias=True, **kwargs)
    return perturbed(model, seed)


def timm_forward(model):
    return model.forward_features  # (B, 1 + h*w, C) after the final norm


class RefBlock(nn.Module):
    """Pre-norm block with the tensor names of the SAIPv1 and PATH ``Block``s."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, 4 * dim)
        self.mlp.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        attn = (q @ k.transpose(-2, -1) * (C // self.heads)**-0.5).softmax(dim=-1)
        x = x + self.attn.proj((attn @ v).transpose(1, 2).reshape(B, N, C))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class RefViT(nn.Module):
    """ViT with the names of SAIPv1's ``SAIPViT`` (cls token, ``inter_norm``) or PATH's ``ViT``
    (no cls token, absolute positions on the patches only, global attention)."""

    def __init__(self, grid, patch, cls_token=True, inter_norm=False, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, WIDTH, patch, patch)
        extra = 1 if cls_token else 0
        self.cls_token = nn.Parameter(torch.randn(1, 1, WIDTH) * 0.02) if cls_token else None
        self.pos_embed = nn.Parameter(torch.randn(1, grid[0] * grid[1] + extra, WIDTH) * 0.02)
        self.blocks = nn.ModuleList(RefBlock(WIDTH, HEADS) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(WIDTH, eps=1e-6)
        if inter_norm:
            self.inter_norm = nn.LayerNorm(WIDTH, eps=1e-6)
        perturbed(self, seed)

    def forward(self, img):
        x = self.patch_embed.proj(img).flatten(2).transpose(1, 2)  # (B, h*w, C)
        if self.cls_token is None:
            x = x + self.pos_embed
        else:  # SAIPv1: positions on the patches, then the cls token with its own position
            x = x + self.pos_embed[:, 1:]
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(x), -1, -1)
            x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def prefixed(prefix, state):
    return {prefix + k: v for k, v in state.items()}


def mae_decoder(prefix=''):
    """The MAE/HAP pretraining decoder entries beside the encoder (dropped by the converter)."""
    return {prefix + 'mask_token': torch.zeros(1, 1, 16),
            prefix + 'decoder_pos_embed': torch.zeros(1, 5, 16),
            prefix + 'decoder_embed.weight': torch.zeros(16, WIDTH),
            prefix + 'decoder_blocks.0.norm1.weight': torch.ones(16),
            prefix + 'decoder_norm.weight': torch.ones(16),
            prefix + 'decoder_pred.weight': torch.zeros(3 * 64, 16)}


def dino_head(prefix):
    return {prefix + 'head.mlp.0.weight': torch.zeros(32, WIDTH),
            prefix + 'head.last_layer.weight_g': torch.ones(64, 1),
            prefix + 'head.last_layer.weight_v': torch.zeros(64, 16)}


def layout_timm():
    model = timm_vit((32, 16), 8, seed=1)  # 4x2 grid: not square, the grid is declared
    return (model.state_dict(), timm_forward(model), dict(src_grid=(4, 2)),
            dict(img_size=(32, 16), patch_size=8), 'timm', {'head.weight', 'head.bias'})


def layout_deit():
    model = timm_vit((16, 16), 8, seed=2)  # 2x2: square, found without help
    ckpt = dict(model=model.state_dict(), epoch=299, optimizer=dict(state={}, param_groups=[]))
    return (ckpt, timm_forward(model), {}, dict(img_size=(16, 16), patch_size=8), 'timm',
            {'head.weight', 'head.bias'})


def layout_deit3():
    # DeiT-3: layer scale (timm ls1.gamma / ls2.gamma)
    model = timm_vit((16, 16), 8, seed=13, init_values=0.1)
    return (dict(model=model.state_dict()), timm_forward(model), {},
            dict(img_size=(16, 16), patch_size=8, layer_scale_init_value=0.1), 'timm',
            {'head.weight', 'head.bias'})


def layout_mae():
    model = timm_vit((16, 16), 8, seed=3)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith('head.')}
    ckpt = dict(model={**state, **mae_decoder()}, epoch=799)
    return (ckpt, timm_forward(model), {}, dict(img_size=(16, 16), patch_size=8), 'timm',
            set(mae_decoder()))


def layout_hap():
    # HAP / LUPerson-MAE: MAE layout on a person-shaped (2:1) grid, here 8x4 with patch 4.
    model = timm_vit((32, 16), 4, seed=4)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith('head.')}
    ckpt = dict(model={**state, **mae_decoder()}, epoch=399)
    return (ckpt, timm_forward(model), dict(src_grid=(8, 4)),
            dict(img_size=(32, 16), patch_size=4), 'timm', set(mae_decoder()))


def _dino_checkpoint(teacher, student):
    t = {k: v for k, v in teacher.state_dict().items() if not k.startswith('head.')}
    s = {k: v for k, v in student.state_dict().items() if not k.startswith('head.')}
    return dict(teacher={**prefixed('backbone.', t), **dino_head('')},
                student={**prefixed('module.backbone.', s), **dino_head('module.')},
                args=argparse.Namespace(arch='vit_tiny', patch_size=8, out_dim=64),
                epoch=100, dino_loss=dict(center=torch.zeros(1, 64)))


def layout_dino_teacher():
    teacher, student = timm_vit((16, 16), 8, seed=5), timm_vit((16, 16), 8, seed=6)
    return (_dino_checkpoint(teacher, student), timm_forward(teacher), dict(source='teacher'),
            dict(img_size=(16, 16), patch_size=8), 'dino', set(dino_head('')))


def layout_dino_student():
    teacher, student = timm_vit((16, 16), 8, seed=5), timm_vit((16, 16), 8, seed=6)
    return (_dino_checkpoint(teacher, student), timm_forward(student), dict(source='student'),
            dict(img_size=(16, 16), patch_size=8), 'dino', set(dino_head('module.')))


def layout_solider_style():
    # SOLIDER-style exports keep only the DINO teacher, `backbone.` prefix, on a person grid.
    teacher = timm_vit((32, 16), 8, seed=7)
    t = {k: v for k, v in teacher.state_dict().items() if not k.startswith('head.')}
    ckpt = dict(teacher={**prefixed('backbone.', t), **dino_head('')}, epoch=100)
    return (ckpt, timm_forward(teacher), dict(src_grid=(4, 2)),
            dict(img_size=(32, 16), patch_size=8), 'dino', set(dino_head('')))


def layout_path():
    model = RefViT((4, 2), 8, cls_token=False, seed=8)
    others = {'module.neck_module.proj.weight': torch.zeros(8, WIDTH),
              'module.decoder_module.blocks.0.norm1.weight': torch.ones(8)}
    ckpt = dict(state_dict={**prefixed('module.backbone_module.', model.state_dict()), **others})
    return (ckpt, model, dict(src_grid=(4, 2)),
            dict(img_size=(32, 16), patch_size=8, with_cls_token=False), 'timm', set(others))


def layout_mmengine():
    torch.manual_seed(9)
    classifier = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', arch=ARCH, img_size=(16, 16), patch_size=8,
                      out_type='raw', norm_cfg=LN),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=WIDTH)))
    perturbed(classifier, 9)
    ckpt = dict(state_dict=classifier.state_dict(), meta=dict(epoch=3))
    head = {k for k in classifier.state_dict() if k.startswith('head.')}
    return (ckpt, lambda x: classifier.backbone(x)[-1], {},
            dict(img_size=(16, 16), patch_size=8), 'mmengine', head)


def layout_saip_authors():
    # SAIPv1 main_pretrain.py: teacher (plain) and student (DDP: module.) wrappers with
    # backbone / csm_decoder / csr_decoder / css_decoder, args holding the input size.
    teacher = RefViT((4, 2), 8, inter_norm=True, seed=10)
    student = RefViT((4, 2), 8, inter_norm=True, seed=11)
    heads = {'csm_decoder.mlp.0.weight': torch.zeros(32, WIDTH),
             'csr_decoder.decoder_blocks.0.norm1.weight': torch.ones(16),
             'css_decoder.self_atten_blocks.0.norm1.weight': torch.ones(16)}
    ckpt = dict(teacher={**prefixed('backbone.', teacher.state_dict()), **heads},
                student={**prefixed('module.backbone.', student.state_dict()),
                         **prefixed('module.', heads)},
                args=argparse.Namespace(height=32, width=16, model='csl_vit_tiny_patch16'),
                epoch=300, csm_loss=dict(center=torch.zeros(1, 64)))
    return (ckpt, teacher, {}, dict(img_size=(32, 16), patch_size=8), 'saip-authors',
            set(heads) | {'backbone.inter_norm.weight', 'backbone.inter_norm.bias'})


def layout_saip_mm():
    import saip_mm  # noqa: F401  (registers SAIP)
    torch.manual_seed(12)
    model = MODELS.build(dict(
        type='SAIP',
        backbone=dict(type='SAIPViT', arch=ARCH, img_size=(32, 16), patch_size=8, inter_index=0),
        csm_head=dict(type='CSMHead', in_channels=WIDTH, hidden_channels=16,
                      bottleneck_channels=8, out_channels=32),
        csr_head=None, css_head=None))
    model.init_weights()
    perturbed(model.teacher, 12)
    ckpt = dict(state_dict=model.state_dict(), meta=dict(epoch=1))
    teacher = model.teacher['backbone']
    teacher.eval()
    dropped = {k for k in model.state_dict() if not k.startswith('teacher.backbone.')
               or 'ln_inter' in k}
    return (ckpt, lambda x: teacher(x)['last'], dict(src_grid=(4, 2)),
            dict(img_size=(32, 16), patch_size=8), 'saip-mm', dropped)


LAYOUTS = {f.__name__[len('layout_'):]: f for f in (
    layout_timm, layout_deit, layout_deit3, layout_mae, layout_hap, layout_dino_teacher, layout_dino_student,
    layout_solider_style, layout_path, layout_mmengine, layout_saip_authors, layout_saip_mm)}


@pytest.mark.parametrize('name', list(LAYOUTS))
def test_layout_converts_to_the_same_network(name, tmp_path):
    ckpt, source_forward, options, target_kwargs, layout, dropped = LAYOUTS[name]()
    src, dst = tmp_path / f'{name}.pth', tmp_path / f'{name}_mmpretrain.pth'
    torch.save(ckpt, src)
    report = convert(str(src), str(dst), arch=ARCH, **options)
    assert report['layout'] == layout
    assert set(report['dropped']) == dropped

    out = torch.load(dst, weights_only=True)  # tensors and plain meta only
    target = VisionTransformer(arch=ARCH, out_type='raw', norm_cfg=LN, **target_kwargs)
    target.eval()
    state = {k[len('backbone.'):]: v for k, v in out['state_dict'].items()}
    target.load_state_dict(state, strict=True)
    grid = tuple(target.patch_resolution)
    assert tuple(out['meta']['pos_embed_grid']) == grid
    x = torch.randn(2, 3, *target_kwargs['img_size'])
    with torch.no_grad():
        expected, got = source_forward(x), target(x)[-1]
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_saip_authors_grid_comes_from_their_args(tmp_path):
    ckpt = layout_saip_authors()[0]
    src = tmp_path / 'checkpoint0299.pth'
    torch.save(ckpt, src)
    report = convert(str(src), str(tmp_path / 'out.pth'), arch=ARCH)
    assert report['grid'] == (4, 2)
    assert report['grid_from'] == "the checkpoint's args (height=32, width=16)"


def test_our_exported_backbone_gives_its_grid_from_its_meta(tmp_path):
    """saip_to_backbone.py records the non-square grid in meta['pos_embed_grid']: converting
    that file needs no --src-grid, and a --src-grid that disagrees is refused."""
    from saip_testlib import load_tool
    exporter = load_tool('tools/model_converters/saip_to_backbone.py', 'saip_to_backbone_cli')
    src, exported = tmp_path / 'iter_1.pth', tmp_path / 'backbone.pth'
    torch.save(layout_saip_mm()[0], src)
    exporter.convert(str(src), str(exported), anchor=(32, 16))
    assert torch.load(exported, weights_only=True)['meta']['pos_embed_grid'] == [4, 2]
    report = convert(str(exported), str(tmp_path / 'again.pth'), arch=ARCH)
    assert report['grid'] == (4, 2) and report['grid_from'] == "the checkpoint's meta"
    assert 'meta' not in report['unused_entries']
    with pytest.raises(ViTLayoutError, match='pos_embed_grid'):
        convert(str(exported), str(tmp_path / 'wrong.pth'), arch=ARCH, src_grid=(2, 4))


def test_path_without_cls_token_says_how_to_build_the_model(tmp_path):
    src = tmp_path / 'path.pth'
    torch.save(layout_path()[0], src)
    report = convert(str(src), str(tmp_path / 'out.pth'), arch=ARCH, src_grid=(4, 2))
    assert report['prefix'] == 'module.backbone_module.'
    assert report['missing'] == ["cls_token (build the model with with_cls_token=False, "
                                 "out_type='featmap' or 'avg_featmap')"]


def test_img_size_resizes_once_like_the_loader(tmp_path):
    from mmpretrain.models.utils import resize_pos_embed
    src = tmp_path / 'hap.pth'
    torch.save(layout_hap()[0], src)
    dst = tmp_path / 'hap_48x24.pth'
    report = convert(str(src), str(dst), arch=ARCH, src_grid=(8, 4),
                                 img_size=(48, 24))
    assert report['resized'] == dict(src_grid=(8, 4), dst_grid=(12, 6))
    out = torch.load(dst, weights_only=True)
    stored = torch.load(src, weights_only=True)['model']['pos_embed']
    expected = resize_pos_embed(stored, (8, 4), (12, 6), mode='bicubic', num_extra_tokens=1)
    assert torch.equal(out['state_dict']['backbone.pos_embed'], expected)
    assert out['meta']['pos_embed_grid'] == [12, 6] and out['meta']['img_size'] == [48, 24]


def test_cli_reports_the_grid_it_resized_to(tmp_path, capsys):
    src = tmp_path / 'hap.pth'
    torch.save(layout_hap()[0], src)
    arch = ','.join(f'{k}={v}' for k, v in ARCH.items() if k != 'num_heads')
    main([str(src), str(tmp_path / 'out.pth'), '--arch', arch, '--src-grid', '8', '4',
          '--img-size', '48', '24'])
    assert ('pos_embed: grid (8, 4) (--src-grid) resized in 2-D (bicubic) to (12, 6)'
            in capsys.readouterr().out)


def test_refusals_name_the_problem(tmp_path):
    src = tmp_path / 'timm.pth'
    state = layout_timm()[0]
    torch.save(state, src)
    out = str(tmp_path / 'out.pth')
    with pytest.raises(ViTLayoutError, match=r'has width 24 but --arch deit-tiny has 192 '
                                             r'\(ViT-Tiny\)'):
        convert(str(src), out, arch='deit-tiny', src_grid=(4, 2))
    with pytest.raises(ViTLayoutError, match='has depth 2 but the given arch has 3'):
        convert(str(src), out, arch=dict(ARCH, num_layers=3), src_grid=(4, 2))
    with pytest.raises(ViTLayoutError, match=r'8 positions are not a square grid .*; pass '
                                             r'--src-grid H W'):
        convert(str(src), out, arch=ARCH)
    windowed = dict(state, **{'blocks.0.attn.rel_pos_h': torch.zeros(7, 12)})
    torch.save(windowed, tmp_path / 'vitdet.pth')
    with pytest.raises(ViTLayoutError, match=r'1 block tensors have no mmpretrain '
                                             r'VisionTransformer equivalent \(blocks\.0\.attn\.'
                                             r'rel_pos_h\)'):
        convert(str(tmp_path / 'vitdet.pth'), out, arch=ARCH, src_grid=(4, 2))
    assert not Path(out).exists()


def vit_s_shaped_timm_file(path: Path) -> Path:
    """A file with the tensor shapes a timm ViT-S/16 reports to the arch check (384 wide, 12
    blocks, MLP 1536); the block tensors the check does not measure are single numbers, so
    the file is 2 MB instead of 88."""
    state = {'cls_token': torch.zeros(1, 1, 384), 'pos_embed': torch.zeros(1, 197, 384),
             'patch_embed.proj.weight': torch.zeros(384, 3, 16, 16),
             'patch_embed.proj.bias': torch.zeros(384)}
    for i in range(12):
        for name in ('norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.proj.weight',
                     'attn.proj.bias', 'norm2.weight', 'norm2.bias', 'mlp.fc1.bias',
                     'mlp.fc2.weight', 'mlp.fc2.bias'):
            state[f'blocks.{i}.{name}'] = torch.zeros(1)
        state[f'blocks.{i}.mlp.fc1.weight'] = torch.zeros(1536 if i == 0 else 1, 1)
    torch.save({'model': state}, path)
    return path


def test_an_arch_mismatch_names_the_arch_the_checkpoint_matches(tmp_path):
    """A timm ViT-S converted with --arch small: mmpretrain's 'small' is 768 wide (8 heads of
    96); the checkpoint is mmpretrain's deit-small (and dinov2-small). A shape no mmpretrain
    arch has gets the key=value arch to pass."""
    src = vit_s_shaped_timm_file(tmp_path / 'vit_s.pth')
    with pytest.raises(SystemExit) as info:
        main([str(src), str(tmp_path / 'out.pth'), '--arch', 'small'])
    assert str(info.value.code) == (
        f'error: {src}: the checkpoint has width 384 (ViT-Small) but --arch small has 768 '
        "(ViT-Base); the checkpoint's width, depth and MLP width are those of --arch deit-small "
        '(or dinov2-small)')
    assert not (tmp_path / 'out.pth').exists()
    narrow = tmp_path / 'narrow.pth'
    torch.save(layout_timm()[0], narrow)
    with pytest.raises(ViTLayoutError, match=re.escape(
            'has width 24 but --arch deit-tiny has 192 (ViT-Tiny); pass the --arch of the '
            'checkpoint: embed_dims=24,num_layers=2,feedforward_channels=96 (num_heads=N to '
            'record its heads)')):
        convert(str(narrow), str(tmp_path / 'out.pth'), arch='deit-tiny', src_grid=(4, 2))


def test_the_output_records_the_heads_of_its_arch(tmp_path):
    """The heads are not in the tensors: the output's meta['arch'] carries them when the arch
    names them (a name of mmpretrain's zoo, or a dict with num_heads)."""
    src = tmp_path / 'timm.pth'
    torch.save(layout_timm()[0], src)
    convert(str(src), str(tmp_path / 'with.pth'), arch=ARCH, src_grid=(4, 2))
    meta = torch.load(tmp_path / 'with.pth')['meta']
    assert meta['arch'] == dict(embed_dims=24, num_layers=2, feedforward_channels=96,
                                patch_size=8, num_heads=2)
    main([str(src), str(tmp_path / 'without.pth'), '--src-grid', '4', '2', '--arch',
          'embed_dims=24,num_layers=2,feedforward_channels=96'])
    assert 'num_heads' not in torch.load(tmp_path / 'without.pth')['meta']['arch']


class NotData:
    """Any class outside the allow-list: its presence means the file would run code to load."""


def test_pickled_code_is_never_loaded(tmp_path):
    src = tmp_path / 'with_object.pth'
    torch.save(dict(model=layout_deit()[0]['model'], extra=NotData()), src)
    with pytest.raises(CheckpointReadError, match=r'with_object\.pth holds pickled Python '
                                                  r'objects that are not plain data \(class '
                                                  r'\S*NotData\)'):
        convert(str(src), str(tmp_path / 'out.pth'), arch=ARCH)


def test_cli_reports_and_refuses(tmp_path):
    src = tmp_path / 'dino.pth'
    torch.save(layout_dino_teacher()[0], src)
    dst = tmp_path / 'dino_vit.pth'
    arch = 'embed_dims=24,num_layers=2,feedforward_channels=96'
    res = subprocess.run([sys.executable, str(TOOL), str(src), str(dst), '--arch', arch],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "layout: dino (backbone prefix 'backbone.')" in lines
    assert 'mapped: 30' in lines  # 4 top-level + 2 blocks x 12 + final norm 2
    assert any(line.startswith('dropped: 3 (head.last_layer.weight_g') for line in lines)
    assert 'missing: none' in lines
    assert 'not read: args, dino_loss, epoch, student' in lines
    assert 'pos_embed: grid (2, 2) (a square grid), written to meta' in lines
    # the default --arch is ViT-Tiny: a width-24 checkpoint is refused, nothing written
    with pytest.raises(SystemExit) as info:
        main([str(src), str(tmp_path / 'o.pth')])
    assert str(info.value.code).startswith(
        f'error: {src}: the checkpoint has width 24 but --arch deit-tiny has 192 (ViT-Tiny)')
    assert not (tmp_path / 'o.pth').exists()
