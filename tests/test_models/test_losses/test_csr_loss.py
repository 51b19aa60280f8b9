import torch

from saip_mm.models import CSRLoss


def test_csr_loss_hand_computation_ignores_visible():
    pred = torch.tensor([[[1., 2.], [0., 0.], [3., 3.]]])  # (B=1, L=3, P=2)
    target = torch.tensor([[[0., 0.], [5., 5.], [1., 1.]]])
    mask = torch.tensor([[1., 0., 1.]])  # patch 1 is visible
    # removed patches: mean((1, 4)) = 2.5 and mean((4, 4)) = 4 -> (2.5 + 4) / 2
    assert torch.isclose(CSRLoss()(pred, target, mask), torch.tensor(3.25))
    pred2 = pred.clone()
    pred2[0, 1] = 100.  # changing a visible patch changes nothing
    assert torch.isclose(CSRLoss()(pred2, target, mask), torch.tensor(3.25))
    assert torch.isclose(CSRLoss(loss_weight=0.5)(pred, target, mask), torch.tensor(1.625))
