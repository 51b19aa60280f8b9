"""LeanFFN: the values and gradients of mmcv's FFN, one hidden tensor less kept for backward."""
import copy

import pytest
import torch
from mmcv.cnn.bricks.transformer import FFN
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer

from saip_mm.models.utils.lean_ffn import LeanFFN, use_lean_ffn


def ffn_pair(dims=16, hidden=64):
    torch.manual_seed(0)
    plain = FFN(dims, hidden, act_cfg=dict(type='GELU'))
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.3)
    lean = copy.deepcopy(plain)
    assert use_lean_ffn(lean) == 1 and type(lean) is LeanFFN
    assert lean.state_dict().keys() == plain.state_dict().keys()
    return plain, lean


def test_values_and_gradients_equal_the_plain_ffn():
    plain, lean = ffn_pair()
    x = torch.randn(3, 5, 16)
    identity = torch.randn(3, 5, 16)
    outs, grads = [], []
    for m in (plain, lean):
        xi = x.clone().requires_grad_()
        out = m(xi, identity=identity)
        outs.append(out)
        grads.append(torch.autograd.grad((out * out).sum(), [xi] + list(m.parameters())))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-6, atol=1e-6)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_keeps_only_the_gelu_input_for_backward():
    plain, lean = ffn_pair(dims=8, hidden=1000)
    x = torch.randn(4, 10, 8, requires_grad=True)

    def saved_hidden(m):
        n = []

        def pack(t):
            if t.numel() == 4 * 10 * 1000:  # a (tokens × hidden) activation
                n.append(t.data_ptr())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            m(x)
        return len(set(n))
    # plain: fc1 output (GELU input), GELU output, the p=0 dropout's output (fc2 input);
    # lean: the GELU input only
    assert saved_hidden(plain) >= 2
    assert saved_hidden(lean) == 1


def test_cpu_autocast_bf16_matches_the_plain_ffn():
    plain, lean = ffn_pair()
    x = torch.randn(2, 4, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        a, b = plain(x), lean(x)
    assert a.dtype == b.dtype  # the residual sum promotes to float32 in both
    torch.testing.assert_close(b.float(), a.float(), rtol=2e-2, atol=2e-2)
    xi = x.clone().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = lean(xi)
    out.float().sum().backward()
    assert lean.layers[1].weight.grad.dtype == torch.float32
    assert torch.isfinite(xi.grad).all()


def test_under_autocast_the_second_weight_is_cast_once_per_autocast_region():
    """Autocast's cache casts a trainable weight once however often the MLP runs (the SAIP
    step runs each backbone MLP on four inputs); an explicit ``.to()`` cast it every call."""
    from torch.utils._python_dispatch import TorchDispatchMode
    _, lean = ffn_pair()
    fc2 = lean.layers[1]
    storages = {fc2.weight.untyped_storage().data_ptr(), fc2.bias.untyped_storage().data_ptr()}

    class Fc2Casts(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket is torch.ops.aten._to_copy and \
                    args[0].untyped_storage().data_ptr() in storages:
                Fc2Casts.count += 1
            return func(*args, **(kwargs or {}))
    x = torch.randn(2, 4, 16, requires_grad=True)
    with Fc2Casts(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = [lean(x * s) for s in (1.0, 0.5, 2.0)]
    assert Fc2Casts.count == 2  # weight and bias, once
    sum(o.float().sum() for o in outs).backward()
    assert fc2.weight.grad.dtype == torch.float32 and torch.isfinite(fc2.weight.grad).all()


@pytest.mark.parametrize('kwargs,changed', [
    (dict(), 1),                                  # ViT block: GELU, no dropout
    (dict(drop_rate=0.1), 0),                     # dropout in the MLP: left alone
])
def test_only_eligible_blocks_change(kwargs, changed):
    layer = TransformerEncoderLayer(16, 2, 32, **kwargs)
    assert use_lean_ffn(layer) == changed
