import math

import torch

from saip_mm.models import CSSLoss


def test_css_loss_is_mean_bce():
    logits = torch.tensor([[[0., 2.], [-1., 0.5]]])
    target = torch.tensor([[[1., 0.], [0., 1.]]])

    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (bce(0, 1) + bce(2, 0) + bce(-1, 0) + bce(0.5, 1)) / 4
    assert math.isclose(CSSLoss()(logits, target).item(), expected, rel_tol=1e-6)
