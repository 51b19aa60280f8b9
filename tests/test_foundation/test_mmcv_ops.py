"""mmcv's compiled ops run on CPU, with results checked by hand."""
import pytest
import torch
from mmcv.ops import nms, roi_align

# Boxes as (x1, y1, x2, y2). mmcv's default offset=0: area = w * h.
#   box 0: (0, 0, 10, 10), area 100     box 1: (1, 1, 10, 10), area 81
#   box 2: (20, 20, 30, 30), apart      box 3: (0, 0, 9, 9), area 81, highest score
# IoU(3, 0) = 81 / 100 = 0.81;  IoU(3, 1) = 64 / (81 + 81 - 64) = 0.653
BOXES = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.],
                      [0., 0., 9., 9.]])
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.95])


@pytest.mark.parametrize('iou_threshold, expected_keep', [
    (0.5, [3, 2]),  # box 3 suppresses boxes 0 (0.81) and 1 (0.653)
    (0.7, [3, 1, 2]),  # box 1 survives (0.653 < 0.7); box 0 does not (0.81)
])
def test_nms_keeps_hand_checked_boxes(iou_threshold, expected_keep):
    dets, keep = nms(BOXES, SCORES, iou_threshold=iou_threshold)
    assert keep.tolist() == expected_keep
    assert dets.shape == (len(expected_keep), 5)
    assert torch.equal(dets[:, :4], BOXES[expected_keep])
    assert torch.equal(dets[:, 4], SCORES[expected_keep])  # sorted by score


def test_roi_align_constant_map():
    features = torch.full((1, 1, 8, 8), 3.0)
    rois = torch.tensor([[0., 1., 1., 5., 5.]])  # (batch index, x1, y1, x2, y2)
    out = roi_align(features, rois, (2, 2), 1.0, 2, 'avg', True)
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out, torch.full_like(out, 3.0))


def test_roi_align_linear_ramp():
    """On f(y, x) = x bilinear sampling is exact, so each bin is the mean of its sample x's.

    aligned=True shifts the roi by -0.5 px: x in [0.5, 4.5], two bins 2 px wide, two samples
    per bin at bin_start + 0.5 and + 1.5 -> bin 0 samples x = 1, 2 (mean 1.5), bin 1 x = 3, 4.
    """
    features = torch.arange(8.).expand(1, 1, 8, 8).contiguous()
    rois = torch.tensor([[0., 1., 1., 5., 5.]])
    out = roi_align(features, rois, (2, 2), 1.0, 2, 'avg', True)
    assert torch.allclose(out[0, 0], torch.tensor([[1.5, 3.5], [1.5, 3.5]]))
