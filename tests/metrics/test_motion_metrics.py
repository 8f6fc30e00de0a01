"""Tests for the motion-field metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_cardiac.metrics import end_point_error, spatial_gradient_magnitude, temporal_gradient_magnitude, warped_rmse

torch.set_num_threads(1)


def _constant(shift: tuple[float, ...], shape: tuple[int, ...], batch: int = 1) -> torch.Tensor:
    return torch.as_tensor(shift, dtype=torch.float32).reshape((1, -1) + (1,) * len(shape)).expand(
        (batch, len(shift)) + shape
    ).clone()


def test_end_point_error_identical_and_constant_offset():
    u = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(end_point_error(u, u), torch.zeros(2))
    offset = u + _constant((3.0, 4.0), (8, 8), 2)
    torch.testing.assert_close(end_point_error(offset, u), torch.full((2,), 5.0))
    # in mm: 3 voxels of 2 mm along H and 4 voxels of 0.5 mm along W
    torch.testing.assert_close(end_point_error(offset, u, spacing=(2.0, 0.5)), torch.full((2,), math.sqrt(40.0)))
    # per-item spacing
    mm = end_point_error(offset, u, spacing=[[2.0, 0.5], [1.0, 1.0]])
    torch.testing.assert_close(mm, torch.tensor([math.sqrt(40.0), 5.0]))


def test_end_point_error_mask_3d():
    true = torch.zeros(1, 3, 4, 5, 6)
    pred = true.clone()
    pred[0, 0, 0] = 2.0  # error 2 on the first Z slice only
    mask = np.zeros((4, 5, 6), bool)
    mask[:2] = True
    assert end_point_error(pred, true).item() == pytest.approx(0.5)
    assert end_point_error(pred, true, mask).item() == pytest.approx(1.0)
    assert torch.isnan(end_point_error(pred, true, np.zeros((4, 5, 6)))).all()
    with pytest.raises(ValueError, match="same shape"):
        end_point_error(pred, true[..., :5])


def test_spatial_gradient_magnitude_of_affine_field():
    a = torch.tensor([[0.3, 0.0], [0.4, 0.0]])  # Frobenius norm 0.5
    h, w = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    u = torch.einsum("ij,jhw->ihw", a, torch.stack([h, w]))[None]
    torch.testing.assert_close(spatial_gradient_magnitude(u), torch.tensor([0.5]))
    assert spatial_gradient_magnitude(_constant((1.0, 2.0), (6, 7))).item() == 0.0


def test_temporal_gradient_of_linearly_growing_field():
    step = torch.tensor([0.5, 1.2])  # 1.3 voxels per frame
    seq = torch.stack([t * _constant(tuple(step.tolist()), (8, 8))[0] for t in range(5)])  # (T, S, H, W)
    assert temporal_gradient_magnitude(seq).item() == pytest.approx(1.3)
    assert temporal_gradient_magnitude(seq).ndim == 0
    batched = torch.stack([seq, 2 * seq])  # (B, T, S, H, W)
    torch.testing.assert_close(temporal_gradient_magnitude(batched), torch.tensor([1.3, 2.6]))
    mask = torch.zeros(8, 8)
    mask[2:4, 2:4] = 1
    assert temporal_gradient_magnitude(seq.numpy(), mask).item() == pytest.approx(1.3)


def test_temporal_gradient_shapes():
    seq_2d = torch.zeros(2, 3, 2, 6, 6)  # B=2 sequences of T=3 2D frames; also reads as a 3D sequence T=2, S=3
    with pytest.raises(ValueError, match="spatial_dims"):
        temporal_gradient_magnitude(seq_2d)
    assert temporal_gradient_magnitude(seq_2d, spatial_dims=2).shape == (2,)
    assert temporal_gradient_magnitude(seq_2d, spatial_dims=3).shape == ()
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_gradient_magnitude(torch.zeros(1, 2, 6, 6))
    with pytest.raises(ValueError, match=r"\(T, S, \*spatial\)"):
        temporal_gradient_magnitude(torch.zeros(4, 5, 6, 6))


def test_warped_rmse():
    target = torch.zeros(2, 2, 4, 4)
    warped = target.clone()
    warped[0, 0] = 2.0  # squared error 4 on one of two channels -> mean 2
    warped[1] = 1.0
    torch.testing.assert_close(warped_rmse(warped, target), torch.tensor([math.sqrt(2.0), 1.0]))
    mask = torch.zeros(4, 4)
    mask[0, 0] = 1
    torch.testing.assert_close(warped_rmse(warped, target, mask), torch.tensor([math.sqrt(2.0), 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        warped_rmse(warped, target[:, :1])
