"""Tests of the labelled-frame and warped cross-entropy losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses import MaskedCrossEntropyLoss, WarpedCrossEntropyLoss


def _data(batch=2, frames=3, classes=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, classes, size, size, generator=g)
    labels = torch.randint(0, classes, (batch, frames, size, size), generator=g)
    return logits, labels


def test_only_labelled_frames_count():
    logits, labels = _data()
    mask = torch.tensor([[True, False, True], [False, False, True]])
    loss = MaskedCrossEntropyLoss()(logits, labels, mask)
    expected = F.cross_entropy(torch.stack([logits[0, 0], logits[0, 2], logits[1, 2]]),
                               torch.stack([labels[0, 0], labels[0, 2], labels[1, 2]]))
    torch.testing.assert_close(loss, expected)
    changed_labels, changed_logits = labels.clone(), logits.clone()
    changed_labels[0, 1] = (labels[0, 1] + 1) % 4
    changed_labels[1, 0] = 0
    changed_logits[1, 1] += 5.0
    torch.testing.assert_close(MaskedCrossEntropyLoss()(changed_logits, changed_labels, mask), loss)
    logits.requires_grad_(True)
    MaskedCrossEntropyLoss()(logits, labels, mask).backward()
    assert torch.all(logits.grad[0, 1] == 0) and logits.grad[0, 0].abs().sum() > 0


def test_label_forms_reductions_and_no_labelled_frame():
    logits, labels = _data()
    mask = torch.tensor([[True, False, False], [False, True, False]])
    loss = MaskedCrossEntropyLoss()(logits, labels, mask)
    torch.testing.assert_close(MaskedCrossEntropyLoss()(logits, labels[:, :, None].float(), mask), loss)
    per_pixel = MaskedCrossEntropyLoss(reduction="none")(logits, labels, mask)
    assert tuple(per_pixel.shape) == (2, 3, 8, 8) and torch.all(per_pixel[0, 1:] == 0)
    torch.testing.assert_close(MaskedCrossEntropyLoss(reduction="sum")(logits, labels, mask), per_pixel.sum())
    logits.requires_grad_(True)
    nothing = MaskedCrossEntropyLoss()(logits, labels, torch.zeros(2, 3, dtype=torch.bool))
    assert nothing.item() == 0.0
    nothing.backward()  # still attached to the graph


def test_bad_labels_and_masks():
    logits, labels = _data()
    mask = torch.tensor([[True, False, False], [False, False, False]])
    bad = labels.clone()
    bad[0, 1] = 9  # unlabelled frame: ignored
    MaskedCrossEntropyLoss()(logits, bad, mask)
    bad[0, 0, 0, 0] = 4
    with pytest.raises(CineDataError, match=r"class indices in \[0, 3\]"):
        MaskedCrossEntropyLoss()(logits, bad, mask)
    with pytest.raises(CineDataError, match="whole class indices"):
        MaskedCrossEntropyLoss()(logits, labels.float() + 0.5, mask)
    with pytest.raises(CineDataError, match="bool tensor of shape"):
        MaskedCrossEntropyLoss()(logits, labels, mask.long())
    with pytest.raises(CineDataError, match="one label map per frame"):
        MaskedCrossEntropyLoss()(logits, labels[:, :2], mask)


def test_warped_with_zero_flow_is_plain_cross_entropy_against_target_label():
    logits, labels = _data()
    target_label = labels[:, 0]
    ddf = torch.zeros(2, 3, 2, 8, 8)
    loss = WarpedCrossEntropyLoss()(logits, ddf, target_label)
    expected = F.cross_entropy(logits.flatten(0, 1), target_label.repeat_interleave(3, dim=0))
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


def test_warped_skips_labelled_sources_and_unlabelled_targets():
    logits, labels = _data()
    target_label = labels[:, 0, None]  # (B, 1, H, W) form
    ddf = torch.zeros(2, 3, 2, 8, 8)
    source_mask = torch.tensor([[False, True, False], [False, False, False]])
    target_mask = torch.tensor([True, False])
    loss = WarpedCrossEntropyLoss()(logits, ddf, target_label, source_mask, target_mask)
    expected = F.cross_entropy(logits[0, [0, 2]], labels[0, 0].expand(2, 8, 8))
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    changed = logits.clone()
    changed[0, 1] += 3.0  # labelled source
    changed[1] -= 2.0  # sample without a target label
    torch.testing.assert_close(WarpedCrossEntropyLoss()(changed, ddf, target_label, source_mask, target_mask), loss)
    none = WarpedCrossEntropyLoss()(logits, ddf, target_label, source_mask, torch.tensor([False, False]))
    assert none.item() == 0.0


def test_warped_integer_shift_pulls_the_neighbouring_probability():
    """ddf = +1 column: the target pixel (y, x) is scored with the source prediction at (y, x + 1)."""
    logits, labels = _data(frames=1)
    ddf = torch.zeros(2, 1, 2, 8, 8)
    ddf[:, :, 1] = 1.0
    per_pixel = WarpedCrossEntropyLoss(reduction="none")(logits, ddf, labels[:, 0])
    assert tuple(per_pixel.shape) == (2, 1, 8, 8)
    log_p = torch.log_softmax(logits, dim=2)
    expected = -log_p[:, 0, :, :, 1:].gather(1, labels[:, 0, None, :, :7])[:, 0]
    torch.testing.assert_close(per_pixel[:, 0, :, :7], expected, atol=1e-5, rtol=1e-5)


def test_warped_gradient_reaches_logits_and_flow():
    logits, labels = _data()
    logits.requires_grad_(True)
    ddf = torch.full((2, 3, 2, 8, 8), 0.3, requires_grad=True)
    WarpedCrossEntropyLoss()(logits, ddf, labels[:, 0]).backward()
    assert logits.grad.abs().sum() > 0 and ddf.grad.abs().sum() > 0
    with pytest.raises(CineDataError, match="ddf_to_target"):
        WarpedCrossEntropyLoss()(logits, ddf[:, :2], labels[:, 0])


def test_dice_ce_on_labelled_frames_only():
    from monai_cardiac.losses import MaskedDiceCELoss

    logits, labels = _data()
    mask = torch.tensor([[True, False, True], [False, False, True]])
    loss = MaskedDiceCELoss()
    value = loss(logits, labels, mask)
    changed = logits.clone()
    changed[~mask] = torch.randn_like(changed[~mask]) * 10  # unlabelled frames do not count
    assert torch.allclose(loss(changed, labels, mask), value)
    ce = MaskedCrossEntropyLoss()(logits, labels, mask)
    assert torch.allclose(MaskedDiceCELoss(dice_weight=0.0)(logits, labels, mask), ce)
    # a confident correct prediction: Dice term near 0, and far below a wrong one
    perfect = F.one_hot(labels, 4).permute(0, 1, 4, 2, 3).float() * 20.0
    assert MaskedDiceCELoss(ce_weight=0.0)(perfect, labels, mask) < 1e-3
    assert MaskedDiceCELoss(ce_weight=0.0)(perfect.roll(1, dims=2), labels, mask) > 0.9
    # no labelled frame: 0, still attached to the graph
    logits.requires_grad_(True)
    empty = loss(logits, labels, torch.zeros_like(mask))
    empty.backward()
    assert empty.item() == 0.0 and logits.grad is not None
    with pytest.raises(ValueError, match="non-negative"):
        MaskedDiceCELoss(dice_weight=-1.0)
