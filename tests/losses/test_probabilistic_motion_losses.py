"""Tests of the symmetric LNCC, the KL divergence and the probabilistic motion model's objective."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import LocalNormalizedCrossCorrelationLoss
from monai.networks.blocks import Warp
from monai.networks.layers import GaussianFilter

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses.kl import KLDivergenceLoss
from monai_cardiac.losses.probabilistic_motion import ProbabilisticMotionLoss
from monai_cardiac.losses.similarity import (
    BandedLocalNormalizedCrossCorrelationLoss,
    SymmetricLocalNormalizedCrossCorrelationLoss,
)
from monai_cardiac.networks.nets.probabilistic_motion import ProbabilisticMotionModel

SIZE = (32, 32)


def noise(batch: int, seed: int, channels: int = 1) -> torch.Tensor:
    """Smoothed noise: every LNCC window has a non-zero variance."""
    image = torch.rand(batch, channels, *SIZE, generator=torch.Generator().manual_seed(seed))
    return GaussianFilter(2, 1.0)(image)


def constant_field(batch: int, shift: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(shift).view(1, 2, 1, 1).expand(batch, 2, *SIZE).contiguous()


# ----------------------------------------------------------------------------------------- symmetric LNCC
def test_identical_images_reach_the_minimum():
    loss = SymmetricLocalNormalizedCrossCorrelationLoss()
    image, zero = noise(2, 0), torch.zeros(2, 2, *SIZE)
    assert math.isclose(float(loss(image, image, zero, zero)), -1.0, abs_tol=1e-4)
    assert float(loss(image, noise(2, 1), zero, zero)) > -0.5  # independent images: little correlation


def test_is_the_mean_of_both_one_sided_lnccs_and_symmetric():
    loss = SymmetricLocalNormalizedCrossCorrelationLoss(kernel_size=7)
    lncc, warp = LocalNormalizedCrossCorrelationLoss(spatial_dims=2, kernel_size=7), Warp()
    moving, fixed = noise(2, 0), noise(2, 1)
    ddf = 2.0 * noise(2, 2, channels=2) - 1.0
    inverse = 2.0 * noise(2, 3, channels=2) - 1.0
    expected = 0.5 * (lncc(warp(moving, ddf), fixed) + lncc(warp(fixed, inverse), moving))
    assert torch.allclose(loss(moving, fixed, ddf, inverse), expected)
    # swapping the roles of the two images together with the two fields gives the same value
    assert torch.allclose(loss(fixed, moving, inverse, ddf), loss(moving, fixed, ddf, inverse))


def test_the_right_fields_score_better_than_none():
    loss = SymmetricLocalNormalizedCrossCorrelationLoss()
    moving = noise(1, 0)
    fixed = Warp()(moving, constant_field(1, (2.0, -3.0)))  # fixed(x) = moving(x + (2, -3))
    right = loss(moving, fixed, constant_field(1, (2.0, -3.0)), constant_field(1, (-2.0, 3.0)))
    none = loss(moving, fixed, torch.zeros(1, 2, *SIZE), torch.zeros(1, 2, *SIZE))
    assert right < none - 0.3
    assert right < -0.85  # all but the border strips the shift reads beyond


def test_symmetric_lncc_reduction_none_and_errors():
    loss = SymmetricLocalNormalizedCrossCorrelationLoss(reduction="none")
    image, zero = noise(2, 0), torch.zeros(2, 2, *SIZE)
    assert loss(image, image, zero, zero).shape == (2, 1, *SIZE)
    with pytest.raises(ValueError, match="triangular"):
        SymmetricLocalNormalizedCrossCorrelationLoss(kernel_size=3, kernel_type="triangular")
    SymmetricLocalNormalizedCrossCorrelationLoss(kernel_size=5, kernel_type="triangular")
    with pytest.raises(CineDataError, match="share a shape"):
        loss(image, noise(1, 0), zero, zero)
    with pytest.raises(CineDataError, match="inverse_ddf"):
        loss(image, image, zero, zero[:1])


# ----------------------------------------------------------------------------------------- KL
@pytest.mark.parametrize("kernel_type", ["rectangular", "triangular", "gaussian"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_banded_lncc_equals_monai_lncc_with_its_gradients(kernel_type, spatial_dims):
    torch.manual_seed(4)
    shape = (2, 2, 13, 11) if spatial_dims == 2 else (1, 1, 9, 10, 8)
    target = torch.rand(*shape, dtype=torch.float64)
    target[..., :4] = 0.0  # a flat, zero-padded band exercises the variance floor
    for reduction in ("mean", "sum", "none"):
        args = {"spatial_dims": spatial_dims, "kernel_size": 7, "kernel_type": kernel_type, "reduction": reduction}
        reference, banded = (
            LocalNormalizedCrossCorrelationLoss(**args), BandedLocalNormalizedCrossCorrelationLoss(**args)
        )
        pred_a = torch.rand(*shape, dtype=torch.float64, requires_grad=True)
        pred_b = pred_a.detach().clone().requires_grad_(True)
        expected, value = reference(pred_a, target), banded(pred_b, target)
        assert torch.allclose(value, expected, atol=1e-10)
        expected.sum().backward()
        value.sum().backward()
        assert torch.allclose(pred_b.grad, pred_a.grad, atol=1e-9)
    flat = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="spatial axes"):
        BandedLocalNormalizedCrossCorrelationLoss(spatial_dims=3)(flat, flat)
    with pytest.raises(ValueError, match="differs"):
        BandedLocalNormalizedCrossCorrelationLoss(spatial_dims=2)(flat, torch.rand(1, 1, 8, 9))


def test_kl_closed_form():
    kl = KLDivergenceLoss()
    assert float(kl(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))) == 0.0
    # 0.5 * [(1 + 1 - 1 - 0) + (4 + 2 - 1 - ln 2)] = 0.5 * (6 - ln 2)
    mu, logvar = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, math.log(2.0)]])
    assert math.isclose(float(kl(mu, logvar)), 0.5 * (6.0 - math.log(2.0)), rel_tol=1e-6)


def test_kl_sums_over_latent_and_averages_over_batch_and_time():
    torch.manual_seed(0)
    mu, logvar = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    def closed_form(m: list[float], v: list[float]) -> float:
        return 0.5 * sum(mi**2 + math.exp(vi) - 1 - vi for mi, vi in zip(m, v))

    per_code = torch.tensor(
        [[closed_form(mu[b, t].tolist(), logvar[b, t].tolist()) for t in range(3)] for b in range(2)]
    )
    assert torch.allclose(KLDivergenceLoss(reduction="none")(mu, logvar), per_code)
    assert torch.allclose(KLDivergenceLoss()(mu, logvar), per_code.mean())
    assert torch.allclose(KLDivergenceLoss(reduction="sum")(mu, logvar), per_code.sum())
    # gradients of the summed KL: d/dmu = mu, d/dlogvar = (exp(logvar) - 1) / 2
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    KLDivergenceLoss(reduction="sum")(mu, logvar).backward()
    assert torch.allclose(mu.grad, mu.detach())
    assert torch.allclose(logvar.grad, 0.5 * (logvar.detach().exp() - 1))
    with pytest.raises(CineDataError, match="share a shape"):
        KLDivergenceLoss()(torch.zeros(2, 3), torch.zeros(2, 4))


# ----------------------------------------------------------------------------------------- composite
def test_composite_weights_and_components():
    loss = ProbabilisticMotionLoss()
    assert loss.lambda_ == 6e4
    moving = noise(2, 0)
    fixed = torch.cat([noise(2, 0), noise(2, 1), noise(2, 2)], dim=1)  # (B, T, H, W), T = 3
    ddf = 0.5 * torch.randn(2, 3, 2, *SIZE, generator=torch.Generator().manual_seed(4))
    inverse = -ddf
    mu, logvar = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    out = loss(moving, fixed, ddf, inverse, mu, logvar)
    pairs = (moving.repeat_interleave(3, 0), fixed.reshape(6, 1, *SIZE))
    similarity = SymmetricLocalNormalizedCrossCorrelationLoss()(
        *pairs, ddf.reshape(6, 2, *SIZE), inverse.reshape(6, 2, *SIZE)
    )
    assert torch.allclose(out["similarity"], similarity)
    assert torch.allclose(out["kl"], KLDivergenceLoss()(mu, logvar))
    assert torch.allclose(out["loss"], 6e4 * out["similarity"] + out["kl"])


def test_composite_minimum_for_identity_and_prior():
    loss = ProbabilisticMotionLoss(lambda_=10.0)
    image = noise(1, 0)
    zero = torch.zeros(1, 2, 2, *SIZE)
    out = loss(image, image.expand(1, 2, *SIZE), zero, zero, torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    assert math.isclose(float(out["loss"]), -10.0, abs_tol=1e-3)
    assert float(out["kl"]) == 0.0
    with pytest.raises(CineDataError, match="mu and logvar"):
        loss(image, image.expand(1, 2, *SIZE), zero, zero, torch.zeros(1, 3, 4), torch.zeros(1, 3, 4))
    with pytest.raises(CineDataError, match="fields"):
        loss(image, image.expand(1, 2, *SIZE), zero[:, :1], zero, torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="lambda_"):
        ProbabilisticMotionLoss(lambda_=-1.0)


def test_composite_trains_the_model_end_to_end():
    torch.manual_seed(0)
    model = ProbabilisticMotionModel(spatial_size=SIZE, latent_dim=8, temporal_dropout=0.5).train()
    moving = noise(1, 0)
    fixed = torch.cat([noise(1, s) for s in range(1, 5)], dim=1)
    out = model(moving, fixed, generator=torch.Generator().manual_seed(0))
    terms = ProbabilisticMotionLoss()(moving, fixed, out["ddf"], out["inverse_ddf"], out["mu"], out["logvar"])
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    for part in (model.encoder, model.tcn, model.decoder):
        assert sum(float(p.grad.abs().sum()) for p in part.parameters()) > 0
