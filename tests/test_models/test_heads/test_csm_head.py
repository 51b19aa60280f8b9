import pytest
import torch

from saip_mm.models import CSMHead


def test_shapes_and_unit_norm_prototypes():
    head = CSMHead(in_channels=8, hidden_channels=16, bottleneck_channels=4, out_channels=10)
    head.init_weights()
    with torch.no_grad():
        head.prototypes.mul_(7.0)  # the prototype norm (g) is fixed to 1: scaling changes nothing
    logits = head(torch.randn(3, 8))
    assert logits.shape == (3, 10)
    # logits are cosines between a unit vector and unit prototypes
    assert logits.abs().max() <= 1 + 1e-5
    x = torch.randn(3, 8)
    z = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    protos = head.prototypes / head.prototypes.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(head(x), z @ protos.t())


def test_defaults_are_the_reference_recipe():
    head = CSMHead()
    dims = [m.out_features for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert head.mlp[0].in_features == 192 and dims == [2048, 2048, 256]
    assert head.prototypes.shape == (65536, 256)
    assert head.loss_module.student_temp == 0.1 and head.loss_module.teacher_temp == 0.04
    assert head.loss_module.center.shape == (1, 65536)


def test_loss_names_and_attention_switch():
    head = CSMHead(in_channels=8, hidden_channels=16, bottleneck_channels=4, out_channels=10)
    rel = dict(qk=torch.full((4, 1, 3, 3), 1 / 3), vv=torch.full((4, 1, 3, 3), 1 / 3))
    s = [torch.randn(2, 10) for _ in range(4)]
    t = [torch.randn(2, 10) for _ in range(2)]
    losses = head.loss(s, t, rel, rel)
    assert set(losses) == {'loss_csm', 'loss_csm_attn'}
    assert losses['loss_csm_attn'].abs() < 1e-6  # identical maps
    off = CSMHead(in_channels=8, hidden_channels=16, bottleneck_channels=4, out_channels=10,
                  loss=dict(type='CSMLoss', attn_loss_weight=0.0))
    assert set(off.loss(s, t, rel, rel)) == {'loss_csm'}


def test_mismatched_out_dim_is_an_error():
    with pytest.raises(ValueError, match='out_dim'):
        CSMHead(out_channels=10, loss=dict(type='CSMLoss', out_dim=11))
