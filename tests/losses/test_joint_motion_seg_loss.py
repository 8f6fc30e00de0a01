"""Tests of the composite loss of Qin et al. (MICCAI 2018)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses import (
    HuberFlowSmoothnessLoss,
    JointMotionSegmentationLoss,
    MaskedCrossEntropyLoss,
    TemporalHuberFlowSmoothnessLoss,
    WarpedCrossEntropyLoss,
)
from monai_cardiac.networks import JointMotionSegNet

torch.set_num_threads(1)
EPS = 0.01


def _outputs(batch=2, frames=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "ddf_to_target": torch.randn(batch, frames, 2, size, size, generator=g),
        "warped_sources": torch.rand(batch, frames, size, size, generator=g),
        "seg_logits_target": torch.randn(batch, 4, size, size, generator=g),
        "seg_logits_sources": torch.randn(batch, frames, 4, size, size, generator=g),
    }


def test_total_is_the_hand_combination_of_the_components():
    out = _outputs()
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 1, 16, 16, generator=g)
    labels = torch.randint(0, 4, (2, 4, 16, 16), generator=g)
    mask = torch.tensor([[True, False, True, False], [True, False, False, False]])
    alpha, beta, l1, l2 = 0.1, 0.2, 0.3, 0.4
    loss_fn = JointMotionSegmentationLoss(alpha, beta, l1, l2)
    total = loss_fn(out, target, labels, mask)

    flow = out["ddf_to_target"] * 2 / 15  # voxels -> normalised units on a 16 x 16 grid
    mse = F.mse_loss(out["warped_sources"], target.expand(2, 3, 16, 16))
    spatial = HuberFlowSmoothnessLoss()(flow.flatten(0, 1))
    temporal = TemporalHuberFlowSmoothnessLoss()(flow)
    logits = torch.cat([out["seg_logits_target"][:, None], out["seg_logits_sources"]], dim=1)
    seg = MaskedCrossEntropyLoss()(logits, labels, mask)
    warped = WarpedCrossEntropyLoss()(out["seg_logits_sources"], out["ddf_to_target"], labels[:, 0], mask[:, 1:])
    expected = mse + alpha * spatial + beta * temporal + l1 * seg + l2 * warped
    torch.testing.assert_close(total, expected)
    parts = loss_fn.last_components
    for key, value in {"image_mse": mse, "smooth_spatial": spatial, "smooth_temporal": temporal,
                       "segmentation": seg, "warped_segmentation": warped}.items():
        torch.testing.assert_close(parts[key], value)
    torch.testing.assert_close(parts["motion"], mse + alpha * spatial + beta * temporal)
    assert not parts["loss"].requires_grad


def test_smoothness_in_normalised_units_with_paper_defaults():
    """A voxel field with slope 0.8 voxel/voxel on a 17-wide grid is 0.8 * 2 / 16 = 0.1 normalised per voxel."""
    cols = torch.arange(17.0).view(1, 1, 1, 17).expand(1, 2, 17, 17)
    ddf = torch.zeros(1, 2, 2, 17, 17)
    ddf[:, :, 1] = 0.8 * cols[0]
    target = torch.rand(1, 1, 17, 17)
    out = {"ddf_to_target": ddf, "warped_sources": target.expand(1, 2, 17, 17)}
    loss_fn = JointMotionSegmentationLoss()
    total = loss_fn(out, target)
    parts = loss_fn.last_components
    assert parts["image_mse"].item() == 0.0
    assert parts["smooth_spatial"].item() == pytest.approx(math.sqrt(EPS + 0.1**2), rel=1e-5)
    assert parts["smooth_temporal"].item() == pytest.approx(math.sqrt(EPS), rel=1e-5)
    expected = 1e-3 * math.sqrt(EPS + 0.01) + 1e-4 * math.sqrt(EPS)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert parts["segmentation"].item() == 0.0 and parts["warped_segmentation"].item() == 0.0


def test_single_source_frame_has_no_temporal_term():
    out = _outputs(frames=1)
    loss_fn = JointMotionSegmentationLoss()
    loss_fn(out, torch.rand(2, 1, 16, 16))
    assert loss_fn.last_components["smooth_temporal"].item() == 0.0


def test_branch_subsets_and_missing_mask():
    out = _outputs()
    target = torch.rand(2, 1, 16, 16)
    labels = torch.randint(0, 4, (2, 4, 16, 16))
    mask = torch.tensor([[True, False, False, False]] * 2)
    loss_fn = JointMotionSegmentationLoss()
    seg_only = {k: out[k] for k in ("seg_logits_target", "seg_logits_sources")}
    loss_fn(seg_only, target, labels, mask)
    assert loss_fn.last_components["motion"].item() == 0.0 and loss_fn.last_components["warped_segmentation"] == 0
    assert loss_fn.last_components["segmentation"].item() > 0
    motion_only = {k: out[k] for k in ("ddf_to_target", "warped_sources")}
    loss_fn(motion_only, target, labels, mask)
    assert loss_fn.last_components["segmentation"].item() == 0.0
    with pytest.raises(CineDataError, match="label_mask is required"):
        loss_fn(out, target, labels)
    with pytest.raises(ValueError, match="non-negative"):
        JointMotionSegmentationLoss(alpha=-1.0)


def test_trains_the_network_end_to_end():
    torch.manual_seed(0)
    net = JointMotionSegNet(width_multiplier=0.125)
    target, sources = torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 32)
    labels = torch.randint(0, 4, (1, 4, 32, 32))
    mask = torch.tensor([[True, False, True, False]])
    loss = JointMotionSegmentationLoss()(net(target, sources), target, labels, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert net.encoder.blocks[0][0].conv.weight.grad.abs().sum() > 0
    assert net.motion_rnn.input_conv.weight.grad.abs().sum() > 0
