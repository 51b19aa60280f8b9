"""Wiring of one SAIP step: every head gets the tensors of the views the method names.

The parts are tested on their own elsewhere; here the real heads are spied on during one
``SAIP.loss`` on a fixed batch and every argument is compared with backbone outputs of the named
views, and the lean step is compared with a straightforward reference implementation of the
same formulas (kept below, in the test).
"""
import random
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from saip_mm.engine.hooks import SAIPTeacherHook
from saip_mm.models.algorithms import saip as saip_module
from saip_mm.models.algorithms.saip import rescale
from test_saip import build, make_inputs, tiny_cfg  # noqa: I100  (sibling test module)


def distinct_inputs(batch=2, n_local=8):
    """make_inputs with instance and ROI masks that a swap would reveal."""
    inputs = make_inputs(batch, n_local)
    inputs['roi_mask'] = torch.zeros_like(inputs['roi_mask'])
    inputs['roi_mask'][:, 16:144, 16:80] = 1
    inputs['instance_mask'] = torch.zeros_like(inputs['instance_mask'])
    inputs['instance_mask'][:, 64:192, 140:204] = 1
    return inputs


@pytest.fixture
def factors(monkeypatch):
    """Fix the rescale draws: first the last local crop's factor, then the region's."""
    draws = []

    def set_draws(*values):
        draws[:] = list(values)
        monkeypatch.setattr(saip_module.random, 'choice', lambda seq: draws.pop(0))
    return set_draws


def spy(monkeypatch, obj, name, store, key=None):
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        store.setdefault(key or name, []).append((args, kwargs))
        return original(*args, **kwargs)
    monkeypatch.setattr(obj, name, wrapper)


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_every_head_gets_the_named_views(monkeypatch, factors):
    torch.manual_seed(0)
    model = build(tiny_cfg())
    inputs = distinct_inputs()
    B = 2
    g1, g2, locals_, region = (inputs[k] for k in ('g1', 'g2', 'locals', 'region'))
    factors(0.75, 1.25)  # last local ×0.75 (6×3 grid), region ×1.25 (10×5 grid)
    seen = {}
    spy(monkeypatch, model.csm_head, 'forward', seen, 'csm')
    spy(monkeypatch, model.csr_head, 'loss', seen, 'csr')
    spy(monkeypatch, model.css_head, 'loss', seen, 'css')
    spy(monkeypatch, saip_module, 'anchor_consistent_mask', seen)
    model(inputs, mode='loss')

    with torch.no_grad():
        bb = model.backbone
        glob = bb(torch.cat([g1, g2]))
        last_local = bb(rescale(locals_[:, -1], 0.75, 16))
        expected_cls = torch.cat([
            glob['last'][:, 0],
            torch.cat([bb(locals_[:, j])['last'][:, 0] for j in range(6)]),
            last_local['last'][:, 0],
            bb(rescale(region, 1.25, 16))['last'][:, 0]])
        g1_inter = bb(g1, stop_at_inter=True)['inter']
        g2_inter = bb(g2, stop_at_inter=True)['inter']

    # CSM: one student head call, views in the order g1, g2, locals 1-6, last local, region.
    (csm_args, _), = seen['csm']
    assert csm_args[0].shape == (10 * B, 32)
    close(csm_args[0], expected_cls)

    # CSR: anchor cls of g1 (not g2); the masked view is g2 ×1.25 (nearest, 320×160).
    (csr_args, _), = seen['csr']
    masked_tokens, anchor_cls, ids_keep, mask, images = csr_args
    close(anchor_cls, g1_inter[:, 0])
    assert (anchor_cls - g2_inter[:, 0]).abs().max() > 1e-2
    assert torch.equal(images, F.interpolate(g2, scale_factor=1.25, mode='nearest'))
    # ... and its mask is drawn on g2's anchor grid and carried to the masked view's grid.
    (mask_args, _), = seen['anchor_consistent_mask']
    assert mask_args[:3] == (B, (16, 8), (20, 10))
    assert mask.shape == (B, 200) and ids_keep.shape == (B, 50)

    # CSS: instance query = inter of g1, ROI query = inter of the rescaled last local crop,
    # reference tokens from the teacher, masks not swapped.
    (css_args, _), = seen['css']
    inst_q, roi_q, ref_tokens, grid, inst_mask, roi_mask = css_args
    close(inst_q, g1_inter)
    close(roi_q, last_local['inter'])
    assert roi_q.shape == (B, 1 + 6 * 3, 32)
    with torch.no_grad():
        teacher_ref = model.teacher['backbone'](inputs['reference'], stop_at_inter=True)
    close(ref_tokens, teacher_ref['inter'][:, 1:])
    assert grid == (14, 14)
    assert torch.equal(inst_mask, inputs['instance_mask'])
    assert torch.equal(roi_mask, inputs['roi_mask'])


# ---- a straightforward reference of the same step, for the lean implementation ----

def reference_losses(model, inputs, local_factor, region_factor):
    """The method's step written plainly: one full backbone pass and one head call per view,
    F.normalize on the prototypes, a cross-entropy per (teacher, student) pair, every token
    through every block (no row skipping in the last blocks)."""
    g1, g2 = inputs['g1'], inputs['g2']
    B = g1.shape[0]
    head, loss_mod = model.csm_head, model.csm_head.loss_module

    def logits(h, cls):
        return F.linear(F.normalize(h.mlp(cls), dim=-1), F.normalize(h.prototypes, dim=-1))

    with torch.no_grad():
        t_glob = model.teacher['backbone'](torch.cat([g1, g2]), return_relations=True)
        t_out = logits(model.teacher['csm_head'], t_glob['last'][:, 0]).chunk(2)
        t_ref = model.teacher['backbone'](inputs['reference'], stop_at_inter=True)
    s_glob = model.backbone(torch.cat([g1, g2]), return_relations=True)
    views = [s_glob['last'][:B, 0], s_glob['last'][B:, 0]]
    views += [model.backbone(inputs['locals'][:, j])['last'][:, 0]
              for j in range(model.n_local - 2)]
    last_local = model.backbone(rescale(inputs['locals'][:, -1], local_factor, 16))
    views.append(last_local['last'][:, 0])
    views.append(model.backbone(rescale(inputs['region'], region_factor, 16))['last'][:, 0])
    s_out = [logits(head, v) for v in views]
    total, pairs = 0., 0
    for i, t in enumerate(t_out):
        t_prob = F.softmax((t - loss_mod.center) / loss_mod.teacher_temp, dim=-1)
        for v, s in enumerate(s_out):
            if v != i:
                total = total + torch.sum(-t_prob * F.log_softmax(s / loss_mod.student_temp,
                                                                  dim=-1), dim=-1).mean()
                pairs += 1
    out = dict(loss_csm=total / pairs)
    out['loss_csm_attn'] = loss_mod.attention_loss(s_glob['relations'], t_glob['relations'])
    # CSR: decode every patch, score the removed ones through the mask.
    csr = model.csr_head
    masked_view, ids_keep, mask = model.mask_csr_view(g2)
    masked = model.backbone(masked_view, ids_keep=ids_keep, stop_at_inter=True)
    pred = csr(masked['inter'], s_glob['inter'][:B, 0], ids_keep, masked['grid'])
    out['loss_csr'] = csr.loss_module(pred, csr.construct_target(masked_view), mask)
    # CSS: every query block on every token, then the cls row.
    css = model.css_head
    ref_kv, mask_feats = css.encode_reference(t_ref['inter'][:, 1:], t_ref['grid'])
    for name, query, target in (('loss_css_inst', s_glob['inter'][:B], inputs['instance_mask']),
                                ('loss_css_roi', last_local['inter'], inputs['roi_mask'])):
        q = css.query_embed(query)
        for block in css.query_blocks:
            q = block(q)
        kernel = css.kernel_proj(css.kernel_norm(css.cross_block(q[:, :1], ref_kv)))
        logits = torch.einsum('bqd,bdhw->bqhw', kernel, mask_feats)[:, 0]
        target = F.interpolate(target[:, None].float(), size=t_ref['grid'], mode='nearest')
        out[name] = css.loss_module(logits, target[:, 0])
    return out


@pytest.mark.parametrize('draws', [(0.875, 1.125), (1.25, 1.25)])  # two sizes; one shared pass
def test_lean_step_equals_reference_losses_and_gradients(monkeypatch, factors, draws):
    model = build(tiny_cfg())
    with torch.no_grad():
        model.csm_head.loss_module.center.normal_(std=0.1)
    inputs = distinct_inputs()
    params = [p for p in model.parameters() if p.requires_grad]
    center = model.csm_head.loss_module.center.clone()

    factors(*draws)
    torch.manual_seed(1)  # the CSR mask
    lean = model(inputs, mode='loss')
    lean_grads = torch.autograd.grad(sum(lean.values()), params, allow_unused=True)

    model.csm_head.loss_module.center.copy_(center)  # the lean step updated it
    torch.manual_seed(1)
    ref = reference_losses(model, inputs, *draws)
    ref_grads = torch.autograd.grad(sum(ref.values()), params, allow_unused=True)

    assert lean.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(lean[k], ref[k], rtol=1e-5, atol=0, msg=k)
    for p, a, b in zip(params, lean_grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# ---- rescale and resize modes ----

@pytest.mark.parametrize('factor,grid', [(0.75, (6, 3)), (0.875, (7, 3)), (1.125, (9, 4)),
                                         (1.25, (10, 5))])
def test_rescale_keeps_shape_and_crops_to_the_patch_grid(factor, grid):
    x = torch.randn(2, 3, 128, 64)
    out = rescale(x, factor, 16)
    assert out.shape[-2:] == (grid[0] * 16, grid[1] * 16)
    full = F.interpolate(x, scale_factor=factor, mode='nearest')
    assert torch.equal(out, full[..., :grid[0] * 16, :grid[1] * 16])
    # the patch embedding then sees exactly that grid: no zero-padded half patch
    backbone = MODELS.build(dict(type='SAIPViT', inter_index=1,
                                 arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                           feedforward_channels=64)))
    assert backbone(out)['grid'] == grid
    assert tuple(backbone.patch_embed(out)[1]) == grid


def test_backbone_refuses_inputs_off_the_patch_grid():
    backbone = MODELS.build(dict(type='SAIPViT', inter_index=1,
                                 arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                           feedforward_channels=64)))
    with pytest.raises(ValueError, match='112x56 is not on the 16x16 patch grid'):
        backbone(torch.randn(1, 3, 112, 56))


def test_rescale_bicubic_mode():
    x = torch.randn(1, 3, 128, 64)
    out = rescale(x, 0.875, 16, mode='bicubic')
    full = F.interpolate(x, scale_factor=0.875, mode='bicubic', align_corners=False)
    assert torch.equal(out, full[..., :112, :48])


def test_region_view_modes():
    from saip_mm.datasets.transforms import RegionView
    g1 = torch.randn(3, 256, 128)
    nearest = RegionView()(dict(g1=g1))
    assert torch.equal(nearest['region'], F.interpolate(g1[None], size=(128, 64))[0])
    assert nearest['region_interpolation'] == 'nearest'
    bicubic = RegionView(interpolation='bicubic')(dict(g1=g1))
    # the behaviour before the mode became a choice: bicubic with antialiasing
    today = F.interpolate(g1[None], size=(128, 64), mode='bicubic', align_corners=False,
                          antialias=True)[0]
    assert torch.equal(bicubic['region'], today)
    with pytest.raises(ValueError, match="`interpolation` must be 'nearest'"):
        RegionView(interpolation='bilinear')


def test_resize_mode_reaches_rescale_and_csr_view(monkeypatch, factors):
    model = build(tiny_cfg(resize_mode='bicubic', csm_head=None, css_head=None))
    seen = {}
    spy(monkeypatch, saip_module, 'resize_tensor', seen)
    model(make_inputs(), mode='loss')
    assert [args[1] for args, _ in seen['resize_tensor']] == ['bicubic']  # the CSR view
    with pytest.raises(ValueError, match='model.resize_mode must be one of'):
        build(tiny_cfg(resize_mode='area'))


def test_pipeline_and_model_resize_modes_must_agree():
    model = build(tiny_cfg(resize_mode='bicubic'))
    samples = [DataSample(metainfo=dict(region_interpolation='nearest')) for _ in range(2)]
    with pytest.raises(ValueError, match=r"RegionView.interpolation='nearest' differs from "
                                         r"model.resize_mode='bicubic'"):
        model(make_inputs(), samples, mode='loss')


# ---- view counts against the model's settings ----

@pytest.mark.parametrize('n_local,given', [(8, 4), (4, 8)])
def test_n_local_out_of_step_with_the_pipeline(n_local, given):
    model = build(tiny_cfg(n_local=n_local))
    with pytest.raises(ValueError) as err:
        model(make_inputs(n_local=given), mode='loss')
    msg = str(err.value)
    assert f'holds {given - 1} local crops' in msg and f'model.n_local={n_local}' in msg
    assert 'num_views' in msg and 'pipeline.2.num_views' in msg


# ---- state updates ----

def test_ema_update_over_every_parameter_pair():
    model = build(tiny_cfg())
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.normal_()
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    before = {k: v.clone() for k, v in model.teacher.named_parameters()}
    model.update_teacher(momentum=0.9)
    student = dict(model.named_parameters())
    names = [k for k, _ in model.teacher.named_parameters()]
    # the teacher keeps exactly the student's backbone and CSM head parameters
    assert sorted(names) == sorted(k for k in student
                                   if k.startswith(('backbone.', 'csm_head.')))
    for name in names:
        torch.testing.assert_close(dict(model.teacher.named_parameters())[name],
                                   0.9 * before[name] + 0.1 * student[name],
                                   rtol=1e-6, atol=1e-6, msg=name)


def test_checkpoints_with_teacher_csr_css_copies_still_load():
    model = build(tiny_cfg())
    state = model.state_dict()
    state['teacher.csr_head.mask_token'] = torch.zeros(1, 1, 32)
    state['teacher.css_head.kernel_proj.weight'] = torch.zeros(32, 32)
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_csm_loss_uses_the_center_from_before_the_update():
    # centre momentum 0.5: the updated centre is far from the old one, so a loss computed with
    # it would differ clearly
    head = MODELS.build(dict(type='CSMHead', in_channels=8, hidden_channels=16,
                             bottleneck_channels=8, out_channels=6,
                             loss=dict(type='CSMLoss', center_momentum=0.5)))
    loss_mod = head.loss_module
    torch.manual_seed(0)
    loss_mod.center.copy_(torch.randn(1, 6))
    c0 = loss_mod.center.clone()
    teacher = [torch.randn(3, 6) * 0.1, torch.randn(3, 6) * 0.1]
    student = [torch.randn(3, 6) for _ in range(4)]
    value = head.loss(student, teacher)['loss_csm']

    def ce(center):
        total = 0.
        for i, t in enumerate(teacher):
            p = F.softmax((t - center) / 0.04, dim=-1)
            for v, s in enumerate(student):
                if v != i:
                    total += -(p * F.log_softmax(s / 0.1, dim=-1)).sum(-1).mean()
        return total / 6

    torch.testing.assert_close(value, ce(c0), rtol=1e-5, atol=0)
    new_center = 0.5 * c0 + 0.5 * torch.cat(teacher).mean(0, keepdim=True)
    torch.testing.assert_close(loss_mod.center, new_center)
    assert (ce(new_center) - value).abs() > 1e-3  # the check can tell the two apart


def test_teacher_hook_follows_the_optimizer_step_with_accumulation():
    model = build(tiny_cfg())
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                         lr=0.1), accumulative_counts=4)
    optim.initialize_count_status(model, 0, 8)
    calls = []
    monkeypatch_update = model.update_teacher

    def counting_update(momentum=None):
        calls.append(optim.inner_count)
        return monkeypatch_update(momentum=0.99)
    model.update_teacher = counting_update
    hub = SimpleNamespace(update_scalar=lambda *a, **k: None)
    runner = SimpleNamespace(optim_wrapper=optim, model=model, message_hub=hub)
    hook = SAIPTeacherHook()
    x = torch.randn(1, 3, 256, 128)
    for i in range(8):
        optim.update_params(model(x, mode='tensor').sum())
        hook.after_train_iter(runner, i)
    assert calls == [4, 8]


def test_css_target_for_a_box_off_the_patch_grid(monkeypatch):
    head = MODELS.build(dict(type='CSSHead', in_channels=8, embed_dims=16, num_heads=2))
    targets = []
    original = head.loss_module.forward
    monkeypatch.setattr(head.loss_module, 'forward',
                        lambda logits, target: targets.append(target) or original(logits, target))
    mask = torch.zeros(1, 224, 224)
    mask[0, 30:150, 20:84] = 1  # y 30..149, x 20..83: no edge on the 16-pixel grid
    head.loss(torch.randn(1, 5, 8), torch.randn(1, 5, 8), torch.randn(1, 196, 8), (14, 14),
              mask, torch.zeros(1, 224, 224))
    # nearest to 14×14 samples pixel (16i, 16j): rows 32..144 → i = 2..9, cols 32..80 → j = 2..5
    expected = torch.zeros(1, 14, 14)
    expected[0, 2:10, 2:6] = 1
    assert torch.equal(targets[0], expected)


# ---- non-finite losses and bad loss weights ----

def test_non_finite_loss_stops_before_the_step(monkeypatch):
    from mmengine.logging import MessageHub
    model = build(tiny_cfg())
    MessageHub.get_instance('test_non_finite_loss').update_info('iter', 6)
    losses = dict(loss_csm=torch.tensor(1.0), loss_csr=torch.tensor(float('nan')),
                  loss_css_inst=torch.tensor(float('inf')))
    with pytest.raises(FloatingPointError,
                       match=r'non-finite loss at iteration 7: loss_csr=nan, loss_css_inst=inf'):
        model.parse_losses(losses)
    total, log_vars = model.parse_losses(dict(loss_csm=torch.tensor(1.5)))
    assert total.item() == 1.5

    # through train_step: nothing is updated
    inputs = make_inputs()
    inputs['g1'] = inputs['g1'] * 1e30 * 1e30  # inf pixels, as a std of 1e-30 would give
    optim = OptimWrapper(torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                         lr=0.1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match='loss_csm'):
        model.train_step(dict(inputs=inputs), optim)
    after = model.state_dict()
    changed = [k for k in before if k != 'csm_head.loss_module.center'
               and not torch.equal(before[k], after[k])]
    assert changed == []


@pytest.mark.parametrize('cfg,field', [
    (dict(type='CSMLoss', loss_weight='1.0'), 'model.csm_head.loss.loss_weight'),
    (dict(type='CSMLoss', attn_loss_weight='0'), 'model.csm_head.loss.attn_loss_weight'),
    (dict(type='CSRLoss', loss_weight='1'), 'model.csr_head.loss.loss_weight'),
    (dict(type='CSSLoss', loss_weight=None), 'model.css_head.loss.loss_weight'),
])
def test_loss_weight_must_be_a_number(cfg, field):
    with pytest.raises(TypeError, match=f'must be a number.*set {field}=1.0'):
        MODELS.build(cfg)


def test_draw_order_is_fixed(monkeypatch):
    """The rescale factors are drawn with Python's `random` in a fixed order (resume relies on
    the restored `random` state reproducing them)."""
    model = build(tiny_cfg())
    random.seed(5)
    expected = [random.choice(model.rescale_factors) for _ in range(2)]
    seen = []
    original = saip_module.rescale
    monkeypatch.setattr(saip_module, 'rescale',
                        lambda x, f, *a: seen.append(f) or original(x, f, *a))
    random.seed(5)
    model(make_inputs(), mode='loss')
    assert seen[:2] == expected and seen[2] == 1.25  # then the CSR view
