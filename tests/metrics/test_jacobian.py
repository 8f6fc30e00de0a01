"""Tests for the Jacobian determinant, folding fraction and SDlogJ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_cardiac.metrics import displacement_gradient, folding_fraction, jacobian_determinant, sdlogj

torch.set_num_threads(1)


def _affine_field(matrix: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """u(x) = A x on a grid of voxel indices, shape (1, S, *shape), float64."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in shape], indexing="ij"))
    return torch.einsum("ij,j...->i...", torch.as_tensor(matrix, dtype=torch.float64), grid)[None]


def test_affine_field_2d_gives_det_everywhere():
    a = np.array([[0.2, -0.3], [0.1, 0.4]])
    det = jacobian_determinant(_affine_field(a, (9, 11)))
    assert det.shape == (1, 9, 11)
    torch.testing.assert_close(det, torch.full_like(det, np.linalg.det(np.eye(2) + a)))
    grad = displacement_gradient(_affine_field(a, (9, 11)))
    torch.testing.assert_close(grad[0, :, :, 4, 0], torch.as_tensor(a))  # [i, j] = d u_i / d x_j, at a border


def test_affine_field_3d_gives_det_everywhere():
    a = np.array([[0.1, 0.2, 0.0], [-0.2, 0.3, 0.1], [0.05, 0.0, -0.4]])
    det = jacobian_determinant(_affine_field(a, (5, 6, 7)))
    assert det.shape == (1, 5, 6, 7)
    torch.testing.assert_close(det, torch.full_like(det, np.linalg.det(np.eye(3) + a)))


def _half_folded_field() -> torch.Tensor:
    """u_H = -2 h on columns 0..15 (det -1) and 0 on columns 16..31 (det 1) of a 32 x 32 grid."""
    h = torch.arange(32.0)[:, None].expand(32, 32)
    u = torch.zeros(1, 2, 32, 32)
    u[0, 0, :, :16] = -2.0 * h[:, :16]
    return u


def test_folding_fraction_of_half_folded_field():
    det = jacobian_determinant(_half_folded_field())
    torch.testing.assert_close(det[0, :, :16], torch.full((32, 16), -1.0))
    torch.testing.assert_close(det[0, :, 16:], torch.ones(32, 16))
    assert folding_fraction(det).item() == pytest.approx(50.0)
    mask = np.zeros((32, 32), bool)
    mask[:, 8:24] = True
    assert folding_fraction(det, mask).item() == pytest.approx(50.0)
    mask[:, 16:] = False  # columns 8..15 only
    assert folding_fraction(det, mask).item() == pytest.approx(100.0)


def test_uniform_scaling_has_zero_sdlogj():
    det = jacobian_determinant(_affine_field(0.1 * np.eye(2), (16, 16)))
    torch.testing.assert_close(det, torch.full_like(det, 1.21))
    assert sdlogj(det).item() == pytest.approx(0.0, abs=1e-6)
    assert folding_fraction(det).item() == 0.0


def test_sdlogj_of_two_values_and_floor():
    det = torch.ones(1, 4, 4)
    det[0, :2] = math.e  # half log 1, half log 0 -> population std 0.5
    assert sdlogj(det).item() == pytest.approx(0.5)
    det[0, :2] = -3.0  # folded voxels are clipped to the floor before the log
    assert sdlogj(det, floor=math.exp(-4.0)).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="floor"):
        sdlogj(det, floor=0.0)


def test_empty_mask_gives_nan_and_per_item_masks():
    det = torch.stack([torch.full((4, 4), -1.0), torch.ones(4, 4)])
    empty = torch.zeros(4, 4, dtype=torch.bool)
    assert torch.isnan(folding_fraction(det, empty)).all()
    assert torch.isnan(sdlogj(det, empty)).all()
    per_item = torch.ones(2, 4, 4)
    per_item[1] = 0
    result = folding_fraction(det, per_item)
    assert result[0].item() == 100.0 and torch.isnan(result[1])
    with pytest.raises(ValueError, match="mask"):
        folding_fraction(det, torch.ones(3, 4, 4))


def test_jacobian_rejects_bad_fields():
    with pytest.raises(ValueError, match=r"\(B, S, \*spatial\)"):
        jacobian_determinant(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 2 voxels"):
        jacobian_determinant(torch.zeros(1, 3, 1, 8, 8))


def test_jacobian_is_differentiable():
    u = (0.1 * torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))).requires_grad_()
    jacobian_determinant(u).sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()
