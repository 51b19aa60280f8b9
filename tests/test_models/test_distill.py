"""Cross-scale distillation (DistillHead, DistillLoss): losses by hand, the frozen teacher,
its checkpoint layouts and errors, overfitting a batch, checkpoints without the teacher,
resume with the teacher reloaded from its path.

The teacher is a small random ViT in the ViT-S layout (384 wide, 6 heads, patch 16) with 2
blocks, saved by timm (its own layout) and as a DINO checkpoint; the student is the micro
SAIP ViT (32 wide) of the wiring tests.
"""
import math
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

import saip_mm  # noqa: F401  (registers SAIP, DistillHead)
from saip_mm.models.heads.distill_head import teacher_positions
from saip_mm.models.losses.distill_loss import (global_alignment, patch_alignment,
                                                relation_alignment)
from saip_mm.models.utils.pretrained import PretrainedCheckpointError
from saip_testlib import LogRecords, micro_runner  # also registers _CrashHook

ROOT = Path(__file__).resolve().parents[2]
TEACHER_ARCH = dict(embed_dims=384, num_layers=2, num_heads=6, feedforward_channels=1536)
STUDENT_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


def teacher_cfg(path, **kwargs) -> dict:
    cfg = dict(type='DistillHead',
               teacher=dict(type='VisionTransformer', arch=TEACHER_ARCH, img_size=(128, 64),
                            patch_size=16),
               teacher_checkpoint=str(path), student_channels=32)
    cfg.update(kwargs)
    return cfg


@pytest.fixture(scope='module')
def teacher_files(tmp_path_factory):
    """The same random ViT-S-layout teacher in timm's layout and as a DINO checkpoint."""
    torch.manual_seed(0)
    vit = timm.create_model('vit_small_patch16_224', pretrained=False, depth=2,
                            img_size=(128, 64), num_classes=0).eval()
    folder = tmp_path_factory.mktemp('teachers')
    state = vit.state_dict()
    torch.save({'model': state}, folder / 'timm.pth')
    torch.save({'teacher': {'backbone.' + k: v for k, v in state.items()},
                'student': {'module.backbone.' + k: v + 1 for k, v in state.items()}},
               folder / 'dino.pth')
    return dict(timm=folder / 'timm.pth', dino=folder / 'dino.pth', model=vit)


def micro_saip(teacher_path, csm=False, **head_kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='SAIP',
        backbone=dict(type='SAIPViT', arch=STUDENT_ARCH, img_size=(128, 64), inter_index=1),
        csm_head=dict(type='CSMHead', in_channels=32, hidden_channels=64,
                      bottleneck_channels=16, out_channels=128,
                      loss=dict(type='CSMLoss', out_dim=128)) if csm else None,
        csr_head=None, css_head=None, n_local=2,
        distill_head=teacher_cfg(teacher_path, **head_kwargs)))


def micro_inputs(batch=4, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(g1=torch.randn(batch, 3, 128, 64, generator=g),
                g2=torch.randn(batch, 3, 128, 64, generator=g),
                locals=torch.randn(batch, 1, 3, 64, 32, generator=g),
                region=torch.randn(batch, 3, 64, 32, generator=g),
                reference=torch.randn(batch, 3, 112, 112, generator=g),
                instance_mask=torch.zeros(batch, 112, 112),
                roi_mask=torch.zeros(batch, 112, 112))


# ---------------------------------------------------------------- the three levels by hand
def test_global_level_is_the_cosine_distance():
    t = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert global_alignment(t * 3, t).item() == pytest.approx(0.0, abs=1e-7)  # scale-free
    # orthogonal rows: 1; opposite rows: 2 -> mean 1.5
    s = torch.tensor([[0.0, 5.0], [0.0, -1.0]])
    assert global_alignment(s, t).item() == pytest.approx(1.5)


def test_patch_level_is_the_mse_to_the_whitened_teacher():
    t = torch.randn(2, 5, 8) * 7 + 3
    white = F.layer_norm(t, (8, ), eps=1e-6)
    assert patch_alignment(white, t).item() == pytest.approx(0.0, abs=1e-10)
    assert patch_alignment(white + 0.5, t).item() == pytest.approx(0.25, rel=1e-5)
    # by hand for one token: t = (1, 3) -> whitened (-1, 1) (up to eps); student (0, 0) -> 1
    assert patch_alignment(torch.zeros(1, 1, 2), torch.tensor([[[1.0, 3.0]]])).item() == \
        pytest.approx(1.0, rel=1e-5)


def test_relation_level_is_a_kl_of_similarity_rows():
    t = torch.randn(2, 6, 16)
    # identical structure, any width: 0
    rot = torch.linalg.qr(torch.randn(16, 16))[0]
    assert relation_alignment(t @ rot, t).item() == pytest.approx(0.0, abs=1e-5)
    # two tokens by hand: teacher tokens orthogonal (cos 0), student tokens identical (cos 1);
    # each teacher row is softmax(1/T, 0), each student row is (1/2, 1/2)
    temp = 0.5
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    student = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    p = torch.softmax(torch.tensor([1 / temp, 0.0]), 0)
    expected = (p * (p / 0.5).log()).sum().item()
    assert relation_alignment(student, teacher, temp).item() == pytest.approx(expected, rel=1e-5)


def test_weights_scale_the_levels_and_zero_switches_one_off():
    loss = MODELS.build(dict(type='DistillLoss', global_weight=2.0, patch_weight=0.0,
                             relation_weight=0.5))
    s, t = torch.randn(3, 4, 8), torch.randn(3, 4, 8)
    out = loss(s[:, 0], t[:, 0], s, s, t)
    assert set(out) == {'loss_kd_global', 'loss_kd_relation'}
    assert out['loss_kd_global'].item() == pytest.approx(2 * global_alignment(s[:, 0], t[:, 0]))
    assert out['loss_kd_relation'].item() == pytest.approx(0.5 * relation_alignment(s, t).item())
    with pytest.raises(ValueError, match='all three weights'):
        MODELS.build(dict(type='DistillLoss', global_weight=0, patch_weight=0, relation_weight=0))
    with pytest.raises(TypeError, match='model.distill_head.loss.patch_weight'):
        MODELS.build(dict(type='DistillLoss', patch_weight='1.0'))


# ---------------------------------------------------------------- positions across scales
def test_teacher_tokens_are_read_at_the_student_patches_image_positions():
    """Factor 1 on the teacher's own grid reads every teacher token exactly; at factor 0.5 a
    student patch covers 2x2 teacher cells and its centre is their common corner: their mean."""
    t_map = torch.randn(1, 3, 4, 2)
    where = teacher_positions((4, 2), 16, 1.0, (64, 32))
    same = F.grid_sample(t_map, where, mode='bilinear', align_corners=False)
    torch.testing.assert_close(same, t_map)
    where = teacher_positions((1, 1), 16, 0.5, (64, 32))  # centre (8, 8) px -> (16, 16) px
    corner = F.grid_sample(t_map, where, mode='bilinear', align_corners=False)[0, :, 0, 0]
    # (16, 16) px of a 64x32 image = the corner between teacher rows 0, 1 and columns 0, 1
    torch.testing.assert_close(corner, t_map[0, :, :2, :2].mean((1, 2)))


def _ramp_teacher(patch: int, img_size=(256, 128)):
    """A DistillHead whose teacher's patch tokens are (mean of input channel 0, of channel 1)
    over their patch: 2 wide, 1 head, blocks zeroed (identity through the residuals), no
    final norm, no position embedding."""
    head = MODELS.build(dict(
        type='DistillHead', student_channels=8, teacher_checkpoint='unused.pth',
        teacher=dict(type='VisionTransformer', img_size=img_size, patch_size=patch,
                     final_norm=False, arch=dict(embed_dims=2, num_layers=1, num_heads=1,
                                                 feedforward_channels=4))))
    teacher = head.teacher
    with torch.no_grad():
        for p in teacher.parameters():
            p.zero_()
        weight = teacher.patch_embed.projection.weight  # (2, 3, p, p)
        weight[0, 0] = weight[1, 1] = 1.0 / patch ** 2
    head.teacher_loaded = True
    return head


def _coordinates(height: int, width: int) -> torch.Tensor:
    """(1, 3, H, W): channel 0 is each pixel centre's height as a fraction of the image,
    channel 1 its width; a token's patch mean is its own centre."""
    ys = (torch.arange(height) + 0.5) / height
    xs = (torch.arange(width) + 0.5) / width
    return torch.stack([ys[:, None].expand(height, width), xs[None].expand(height, width),
                        torch.zeros(height, width)])[None]


def test_a_patch14_teacher_sees_a_whole_patch_multiple_and_targets_land_in_place():
    """ViT/14 at 256x128: the teacher is built for 252x126 (18x9 tokens; the view resized,
    not padded) and each target is read at its student patch's own place. On an image of its
    own coordinates, student patch (i, j) at factor 1 (centre (16i + 8, 16j + 8) px) gets
    ((16i + 8) / 256, (16j + 8) / 128); e.g. patch (8, 4): (0.53125, 0.5625). Read from the
    19x10 tokens mmcv's corner padding gives at 256x128 (the old geometry), they are off by
    more than 0.04 (10 px of 256)."""
    records = LogRecords()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        head = _ramp_teacher(14)
    finally:
        logger.removeHandler(records)
    assert head.teacher_input_size == (252, 126) and head.teacher.patch_resolution == (18, 9)
    assert any('input 256x128 is not a multiple of its 14x14 patch; the teacher sees the view '
               'resized to 252x126 (18x9 tokens' in m for m in records.messages)
    image = _coordinates(256, 128)
    _, targets = head.teacher_tokens(image, 1.0, (16, 8), 16)  # (1, 128, 2)
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(8), indexing='ij')
    centres = torch.stack([(rows * 16 + 8) / 256, (cols * 16 + 8) / 128], -1).reshape(1, 128, 2)
    torch.testing.assert_close(targets[0, 8 * 8 + 4], torch.tensor([0.53125, 0.5625]),
                               atol=1e-3, rtol=0)
    assert (targets - centres).abs().max() < 1e-3  # a quarter pixel at 256
    # the old geometry: the padded 19x10 map spread over the 256x128 image
    with torch.no_grad():
        padded = head.teacher(image)[-1][:, 1:].transpose(1, 2).reshape(1, 2, 19, 10)
    old = F.grid_sample(padded, teacher_positions((16, 8), 16, 1.0, (256, 128)),
                        align_corners=False).flatten(2).transpose(1, 2)
    assert (old - centres).abs().max() > 0.04  # 10 px at 256 rows, 5 at 128 columns


def test_targets_beyond_the_outer_token_centres_take_the_edge_token():
    """At factor 1.25 the student's first patch centre (6.4 px) lies above the teacher's
    first token centre (8 px), and likewise across: its target is that corner token (border),
    not a blend with the zeros beyond the image (which would scale it by 0.9 x 0.9)."""
    head = _ramp_teacher(16, (64, 32))
    image = _coordinates(64, 32) + 1.0  # no zeros in the image: a blend with 0 shows
    _, targets = head.teacher_tokens(image, 1.25, (5, 2), 16)  # view 80x40: 5x2 patches
    token00 = image[0, :2, :16, :16].mean((1, 2))  # the teacher's token (0, 0)
    torch.testing.assert_close(targets[0, 0], token00, atol=1e-6, rtol=0)


def test_teacher_inputs_round_to_the_nearest_patch_multiple():
    from saip_mm.models.heads.distill_head import DistillHead
    fit = DistillHead.fit_teacher_input
    assert fit((256, 128), 14) == (252, 126)  # 18.3 -> 18, 9.1 -> 9
    assert fit((256, 128), 16) == (256, 128)
    assert fit(224, 14) == (224, 224)
    assert fit((280, 20), (14, 14)) == (280, 14)  # 1.43 -> 1
    assert fit((6, 6), 14) == (14, 14)  # at least one patch
    with pytest.raises(ValueError, match=r'tokens of stride \(12, 12\) cover .* not its input '
                                         r'\(256, 128\)'):
        MODELS.build(teacher_cfg('unused.pth', teacher=dict(
            type='VisionTransformer', arch=TEACHER_ARCH, img_size=(256, 128), patch_size=16,
            patch_cfg=dict(stride=12))))


# ---------------------------------------------------------------- teacher checkpoints
@pytest.mark.parametrize('layout', ['timm', 'dino'])
def test_teacher_loads_from_converter_layouts_and_equals_the_source(teacher_files, layout):
    head = MODELS.build(teacher_cfg(teacher_files[layout]))
    report = head.load_teacher()
    assert report['layout'] == layout and len(report['loaded']) == 30
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        expected = teacher_files['model'].forward_features(x)  # DINO: the 'teacher' entry
        torch.testing.assert_close(head.teacher(x)[-1], expected, atol=1e-5, rtol=1e-4)


def test_teacher_of_another_width_or_patch_names_both_shapes(teacher_files):
    wide = dict(TEACHER_ARCH, embed_dims=768, num_heads=12)
    head = MODELS.build(dict(teacher_cfg(teacher_files['timm']), teacher=dict(
        type='VisionTransformer', arch=wide, img_size=(128, 64), patch_size=16)))
    with pytest.raises(PretrainedCheckpointError) as err:
        head.init_weights()
    assert '(384, 3, 16, 16)' in str(err.value) and '(768, 3, 16, 16)' in str(err.value)
    head = MODELS.build(dict(teacher_cfg(teacher_files['timm']), teacher=dict(
        type='VisionTransformer', arch=TEACHER_ARCH, img_size=(112, 56), patch_size=14)))
    with pytest.raises(PretrainedCheckpointError) as err:
        head.init_weights()
    assert '(384, 3, 16, 16)' in str(err.value) and '(384, 3, 14, 14)' in str(err.value)
    assert 'patch 14x14' in str(err.value)


def _narrow_timm(heads: int):
    """A 24-wide, 1-block timm ViT with ``heads`` heads (not the 64-wide-head convention)."""
    torch.manual_seed(heads)
    vit = timm.create_model('vit_small_patch16_224', pretrained=False, depth=1, embed_dim=24,
                            num_heads=heads, img_size=(32, 16), patch_size=8,
                            num_classes=0).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return vit


def _teacher_matches(cfg: dict, path, vit) -> None:
    """The config's teacher, loaded from ``path``, computes what ``vit`` computes."""
    head = MODELS.build(teacher_cfg(path, teacher=cfg))
    head.load_teacher()
    x = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(head.teacher(x)[-1], vit.forward_features(x), atol=1e-5,
                                   rtol=1e-4)


def test_teacher_config_reads_the_heads_from_the_file_or_asks_for_them(tmp_path):
    """A 24-wide ViT with 3 heads (8 channels each): the converter records the heads it was
    given, a run's config text records them too; a bare timm file of that unusual width is
    refused until num_heads is given. Each config computes the source's forward (1 head, as
    24 // 64 clamped gave, would not)."""
    from saip_mm.models.heads.distill_head import teacher_config_from_checkpoint
    from saip_mm.utils.vit_checkpoint import ViTLayoutError, convert_vit
    vit = _narrow_timm(3)
    bare = tmp_path / 'timm.pth'
    torch.save({'model': vit.state_dict()}, bare)
    with pytest.raises(ViTLayoutError, match=r'timm\.pth: the number of attention heads of this '
                                             r'24-wide ViT is not recorded .* pass num_heads'):
        teacher_config_from_checkpoint(str(bare), img_size=(32, 16))
    given = teacher_config_from_checkpoint(str(bare), img_size=(32, 16), num_heads=3)
    assert given == dict(type='VisionTransformer', patch_size=8, img_size=(32, 16), arch=dict(
        embed_dims=24, num_layers=1, num_heads=3, feedforward_channels=96))
    _teacher_matches(given, bare, vit)
    with pytest.raises(ViTLayoutError, match='5 heads .* do not divide the width 24'):
        teacher_config_from_checkpoint(str(bare), img_size=(32, 16), num_heads=5)

    arch = dict(embed_dims=24, num_layers=1, num_heads=3, feedforward_channels=96)
    converted, _ = convert_vit({'model': vit.state_dict()}, arch=arch, src_grid=(4, 2))
    assert converted['meta']['arch']['num_heads'] == 3
    torch.save(converted, tmp_path / 'converted.pth')
    from_meta = teacher_config_from_checkpoint(str(tmp_path / 'converted.pth'))
    assert from_meta == given  # heads from meta['arch'], input from meta['pos_embed_grid']
    # an MMEngine run's checkpoint: its config text is parsed, never run
    marker = tmp_path / 'config_ran'
    cfg_text = (f"open({str(marker)!r}, 'w')\nmodel = dict(type='ImageClassifier', "
                f"backbone=dict(type='VisionTransformer', arch={arch!r}))\n")
    torch.save(dict(state_dict=dict(converted['state_dict']),
                    meta=dict(pos_embed_grid=[4, 2], cfg=cfg_text)), tmp_path / 'run.pth')
    assert teacher_config_from_checkpoint(str(tmp_path / 'run.pth')) == given
    assert not marker.exists()


def test_heads_of_usual_widths_and_mmpretrain_archs():
    """Without a record: mmpretrain's arch of the same shape, else the usual heads of the
    width (ViT-H/14: 1280 = 16 x 80, DINOv2-g: 1536 = 24 x 64, ViT-g/14: 1408 = 16 x 88)."""
    from saip_mm.utils.vit_checkpoint import ViTLayoutError, resolve_num_heads

    def heads(width, depth, mlp, **kwargs):
        return resolve_num_heads({}, {}, dict(embed_dims=width, num_layers=depth,
                                              feedforward_channels=mlp), **kwargs)

    assert heads(1280, 32, 5120) == (16, "mmpretrain arch 'huge' (same width, depth and MLP "
                                         'width)')
    assert heads(768, 8, 2304)[0] == 8  # mmpretrain's own 'small': heads of 96
    assert heads(384, 12, 1536)[1].startswith("mmpretrain arch 'deit-small'")
    assert heads(1280, 2, 5120) == (16, 'the usual heads of a ViT-Huge')
    assert heads(1536, 2, 6144)[0] == 24 and heads(1408, 2, 6144)[0] == 16
    assert [heads(w, 2, 4 * w)[0] for w in (192, 384, 768, 1024)] == [3, 6, 12, 16]
    assert heads(96, 2, 384, num_heads=4) == (4, 'num_heads as given')
    with pytest.raises(ViTLayoutError, match=r'96-wide ViT is not recorded in the file, and 96 '
                                             r'is not a usual ViT width \(width/heads: 192/3, '):
        heads(96, 2, 384)


def test_config_builds_without_the_file_and_the_run_start_needs_it(tmp_path):
    """Building (inspecting) a config reads nothing; using the teacher before the run start
    loaded it, or starting without the file, says what to do."""
    model = micro_saip(tmp_path / 'absent.pth')
    assert not model.distill_head.teacher_loaded
    with pytest.raises(RuntimeError, match='not loaded'):
        model.loss(micro_inputs())
    with pytest.raises(FileNotFoundError) as err:
        model.init_weights()
    assert 'absent.pth not found' in str(err.value) and 'resumes' in str(err.value)


# ---------------------------------------------------------------- training with a teacher
def test_teacher_stays_frozen_outside_optimizer_and_checkpoint(teacher_files, tmp_path):
    """After steps: teacher weights equal, no gradients, eval mode; not in the optimizer
    (SAIP's constructor), the EMA teacher or the state dict; it moves with the model."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    DefaultScope.get_instance('test_distill', scope_name='mmpretrain')
    model = micro_saip(teacher_files['timm'], csm=True)
    model.init_weights()
    teacher = model.distill_head.teacher
    # hidden from modules(), yet its attention takes the explicit bf16 products on CPU too
    from saip_mm.models.utils.attention import scaled_dot_product_attention
    attn = [m for m in teacher.modules() if hasattr(m, 'scaled_dot_product_attention')]
    assert attn and all(m.scaled_dot_product_attention is scaled_dot_product_attention
                        for m in attn)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    wrapper = build_optim_wrapper(model, dict(
        constructor='SAIPOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05)))
    model.train()
    for i in range(2):
        losses = model.loss(micro_inputs(seed=i))
        assert {'loss_kd_global', 'loss_kd_patch', 'loss_kd_relation', 'loss_csm'} <= set(losses)
        wrapper.update_params(sum(losses.values()))
        model.update_teacher(0.9)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    optimized = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    assert not optimized & {id(p) for p in teacher.parameters()}
    assert id(model.distill_head.global_proj.weight) in optimized
    assert 'distill_head' not in model.teacher  # the EMA teacher: backbone and CSM head only
    state = model.state_dict()
    assert sorted(k for k in state if k.startswith('distill_head.')) == [
        'distill_head.global_proj.bias', 'distill_head.global_proj.weight',
        'distill_head.patch_proj.bias', 'distill_head.patch_proj.weight']
    teacher_tensors = list(teacher.state_dict().values())
    assert not any(v.shape == t.shape and torch.equal(v, t)
                   for v in state.values() for t in teacher_tensors)
    model.to(torch.float64)  # a dtype move reaches the hidden teacher
    assert teacher.cls_token.dtype == torch.float64


def test_a_fixed_batch_overfits(teacher_files):
    """Distillation only, one batch and one view scale (1.0: nothing random between steps):
    the summed distillation loss falls by half within 30 steps, every level falls."""
    model = micro_saip(teacher_files['dino'], scales=(1.0, ))
    model.init_weights()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    inputs = micro_inputs()
    history = []
    for _ in range(30):
        losses = model.loss(inputs)
        total = sum(losses.values())
        history.append({k: v.item() for k, v in losses.items()})
        opt.zero_grad()
        total.backward()
        opt.step()
    totals = [sum(h.values()) for h in history]
    assert math.isfinite(totals[-1]) and sum(totals[-5:]) / 5 <= 0.5 * totals[0], totals
    for level in history[0]:
        assert history[-1][level] < 0.8 * history[0][level], (level, history[0], history[-1])


def test_masked_student_view_and_bfloat16_teacher(teacher_files):
    """mask_ratio keeps the patch and relation levels on the visible patches; a bfloat16
    teacher runs and gives float32 targets close to the float32 teacher's."""
    model = micro_saip(teacher_files['timm'], mask_ratio=0.5)
    model.init_weights()
    losses = model.loss(micro_inputs())
    assert all(torch.isfinite(v) for v in losses.values())
    head = model.distill_head
    images = torch.randn(2, 3, 128, 64)
    ids_keep = head.draw_mask(2, (4, 2))
    assert ids_keep.shape == (2, 4)
    cls32, patch32 = head.teacher_tokens(images, 1.0, (4, 2), 16, ids_keep)
    head.teacher_dtype = 'bfloat16'
    cls16, patch16 = head.teacher_tokens(images, 1.0, (4, 2), 16, ids_keep)
    assert head.teacher.cls_token.dtype == torch.bfloat16 and patch16.dtype == torch.float32
    torch.testing.assert_close(patch16, patch32, atol=0.1, rtol=0.05)
    _, full = head.teacher_tokens(images, 1.0, (4, 2), 16)
    torch.testing.assert_close(patch16, torch.gather(full, 1, ids_keep[..., None].expand(
        -1, -1, full.shape[-1])), atol=0, rtol=0)


def test_distillation_only_step_reports_health(teacher_files):
    """Without CSM (distillation only) the health check reads the student's cls tokens of its
    distillation view: RankMe and cosine of the student, nothing of the teacher."""
    from saip_mm.models.utils.health import mean_offdiag_cosine, rankme
    model = micro_saip(teacher_files['timm'], scales=(1.0, ))
    model.init_weights()
    inputs = micro_inputs()
    model.health_due = True
    model.loss(inputs)
    assert set(model.health) == {'rankme_student', 'cosine_student'} and not model.health_due
    with torch.no_grad():
        cls = model.backbone(inputs['g1'])['last'][:, 0]  # scale 1.0: the view is g1 itself
    assert model.health['rankme_student'] == pytest.approx(rankme(cls), rel=1e-4)
    assert model.health['cosine_student'] == pytest.approx(mean_offdiag_cosine(cls), abs=1e-5)


def test_student_must_be_a_vit(teacher_files):
    with pytest.raises(ValueError, match='needs a ViT student'):
        MODELS.build(dict(type='SAIP', backbone=dict(type='SAIPTinyViT', arch='5m'),
                          csm_head=None, csr_head=None, css_head=None,
                          distill_head=teacher_cfg(teacher_files['timm'])))


# ---------------------------------------------------------------- resume through the runner
def _runner(work, persons, teacher, iters=4, hooks=(), **options):
    return micro_runner(work, persons, iters=iters, hooks=hooks,
                        **{'model.distill_head': teacher_cfg(teacher)}, **options)


def test_resume_reloads_the_teacher_from_its_path(person_folder, teacher_files, tmp_path):
    """SAIP + distillation through MMEngine's runner: a run killed after iteration 2 and
    resumed equals 4 straight iterations bit for bit, the teacher reloaded from its path (the
    checkpoints hold no teacher tensor); without the file, the resume stops naming it."""
    import shutil
    teacher = tmp_path / 'teacher.pth'
    shutil.copy(teacher_files['timm'], teacher)
    straight = tmp_path / 'straight'
    _runner(straight, person_folder, teacher).train()
    work = tmp_path / 'resumed'
    with pytest.raises(KeyboardInterrupt):
        _runner(work, person_folder, teacher, hooks=(dict(type='_CrashHook', at_iter=2), )
                ).train()
    runner = _runner(work, person_folder, teacher, resume=True)
    runner.train()
    a = torch.load(straight / 'iter_4.pth', map_location='cpu')['state_dict']
    b = torch.load(work / 'iter_4.pth', map_location='cpu')['state_dict']
    assert a.keys() == b.keys() and 'distill_head.patch_proj.weight' in a
    assert not [k for k in a if 'distill_head.teacher' in k]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    logs = sorted(work.glob('*/*.log'))
    assert 'distillation teacher: ' + str(teacher) in logs[-1].read_text()
    teacher.unlink()
    with pytest.raises(FileNotFoundError, match='teacher.pth not found'):
        _runner(tmp_path / 'resumed', person_folder, teacher, iters=5, resume=True).train()


def test_kd_configs_build_without_the_teacher_file():
    from mmengine.registry import DefaultScope
    DefaultScope.get_instance('test_distill_cfg', scope_name='mmpretrain')
    for name, heads in (('saip-kd', True), ('kd', False)):
        cfg = Config.fromfile(str(ROOT / 'configs' / 'saip' /
                                  f'{name}_vit-tiny-p16_8xb256-amp-coslr-300e_lup1m-256x128.py'))
        assert cfg.model.distill_head.teacher.arch == 'base'
        assert (cfg.model.csm_head is not None) == heads
        model = MODELS.build(cfg.model)  # ViT-B teacher built, nothing read
        assert model.distill_head.teacher.embed_dims == 768
        assert model.distill_head.global_proj.weight.shape == (768, 192)
        assert not model.distill_head.teacher_loaded

