"""Tests of the probabilistic motion model (Krebs et al., STACOM 2019) and its encoder, decoder and smoothing."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.layers import GaussianFilter

from monai_cardiac.displacement import compose_displacements
from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.blocks.motion_vae import MotionDecoder, MotionEncoder
from monai_cardiac.networks.blocks.velocity_smoothing import SpatioTemporalGaussianSmoothing
from monai_cardiac.networks.nets.probabilistic_motion import ProbabilisticMotionModel

SIZE = (32, 32)
D = 8


def make_model(temporal_dropout: float = 0.5, active: bool = True, **kwargs) -> ProbabilisticMotionModel:
    """Small model; ``active`` re-draws the last decoder weights so that motions are about a voxel."""
    torch.manual_seed(0)
    model = ProbabilisticMotionModel(spatial_size=SIZE, latent_dim=D, temporal_dropout=temporal_dropout, **kwargs)
    if active:
        torch.nn.init.normal_(model.decoder.velocity.conv.weight, std=0.2)
    return model


def images(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, frames, *SIZE, generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------- encoder / decoder
def test_encoder_shapes_and_size_check():
    encoder = MotionEncoder(SIZE, latent_dim=D)
    mu, logvar = encoder(images(3, 1), images(3, 1, seed=1))
    assert mu.shape == logvar.shape == (3, D)
    with pytest.raises(CineDataError, match="spatial_size=\\(32, 32\\)"):
        encoder(torch.rand(3, 1, 64, 64), torch.rand(3, 1, 64, 64))
    with pytest.raises(CineDataError, match="as many images"):
        encoder(images(3, 1), images(2, 1))
    with pytest.raises(ValueError, match="multiples of 8"):
        MotionEncoder((36, 32), latent_dim=D)
    with pytest.raises(ValueError, match="normalisation"):
        MotionEncoder((8, 8), latent_dim=D)  # instance normalisation of a 1 x 1 feature map
    assert MotionEncoder((8, 8), latent_dim=D, norm=None)(
        torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    )[0].shape == (2, D)


def test_encoder_instance_norm_makes_code_intensity_invariant():
    torch.manual_seed(0)
    moving, fixed = images(2, 1), images(2, 1, seed=1)
    normalised = MotionEncoder(SIZE, latent_dim=D)  # instance normalisation by default
    mu, logvar = normalised(moving, fixed)
    mu_scaled, logvar_scaled = normalised(3.0 * moving, 3.0 * fixed)
    assert torch.allclose(mu, mu_scaled, atol=1e-4) and torch.allclose(logvar, logvar_scaled, atol=1e-4)
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in normalised.modules())
    plain = MotionEncoder(SIZE, latent_dim=D, norm=None)  # the paper's encoder
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in plain.modules())
    assert not torch.allclose(plain(moving, fixed)[0], plain(3.0 * moving, 3.0 * fixed)[0], atol=1e-4)


def test_decoder_shapes_identity_start_and_conditioning():
    torch.manual_seed(0)
    decoder = MotionDecoder(SIZE, latent_dim=D)
    z = torch.randn(3, D)
    velocity = decoder(z, images(3, 1))
    assert velocity.shape == (3, 2, *SIZE)
    assert velocity.abs().max() < 1e-2  # near-identity motion before training
    torch.nn.init.normal_(decoder.velocity.conv.weight, std=0.2)
    # the same code on another ED frame gives another velocity: the decoder is conditioned on I_0
    assert (decoder(z, images(3, 1)) - decoder(z, images(3, 1, seed=5))).abs().max() > 1e-3
    with pytest.raises(CineDataError, match="codes"):
        decoder(torch.randn(2, D), images(3, 1))
    with pytest.raises(ValueError, match="multiples of 8"):
        MotionDecoder((20, 32), latent_dim=D)


# ----------------------------------------------------------------------------------------- smoothing
def test_sigma_mm_converts_with_spacing():
    smoothing = SpatioTemporalGaussianSmoothing(sigma_mm=3.0, spacing=(1.5, 1.5))
    assert smoothing.spatial_sigma_voxels() == (2.0, 2.0)
    assert smoothing.spatial_sigma_voxels((1.5, 3.0)) == (2.0, 1.0)
    with pytest.raises(CineDataError, match="spacing"):
        smoothing.spatial_sigma_voxels((1.5, 0.0))
    with pytest.raises(ValueError, match="sigma_mm"):
        SpatioTemporalGaussianSmoothing(sigma_mm=-1.0)


def second_moment(profile: torch.Tensor) -> float:
    """Variance of a 1-D non-negative profile around its centre index."""
    x = torch.arange(profile.numel(), dtype=profile.dtype) - profile.numel() // 2
    return float((profile * x**2).sum() / profile.sum())


@pytest.mark.parametrize("spacing, sigmas", [((1.5, 1.5), (2.0, 2.0)), ((1.5, 3.0), (2.0, 1.0))])
def test_delta_velocity_becomes_gaussian_of_expected_width(spacing, sigmas):
    smoothing = SpatioTemporalGaussianSmoothing(sigma_mm=3.0, sigma_frames=0.0, spacing=spacing)
    velocity = torch.zeros(1, 1, 2, 41, 41)
    velocity[0, 0, :, 20, 20] = 1.0
    out = smoothing(velocity)[0, 0, 0]
    assert math.isclose(float(out.sum()), 1.0, rel_tol=1e-5)
    assert math.isclose(second_moment(out.sum(1)), sigmas[0] ** 2, rel_tol=1e-3)
    assert math.isclose(second_moment(out.sum(0)), sigmas[1] ** 2, rel_tol=1e-3)
    # per-call spacing overrides the constructor's: 3 mm at 3 mm spacing is 1 voxel
    out = smoothing(velocity, spacing=(3.0, 3.0))[0, 0, 0]
    assert math.isclose(second_moment(out.sum(1)), 1.0, rel_tol=1e-3)


def test_temporal_smoothing_width_and_constant_fields():
    smoothing = SpatioTemporalGaussianSmoothing(sigma_mm=0.0, sigma_frames=1.5)
    velocity = torch.zeros(1, 21, 2, 4, 4)
    velocity[0, 10] = 1.0
    profile = smoothing(velocity)[0, :, 0, 0, 0]
    assert math.isclose(second_moment(profile), 1.5**2, rel_tol=1e-3)
    # replicate padding: a constant velocity sequence passes unchanged, also for T = 1
    constant = torch.full((2, 3, 2, 8, 8), 0.7)
    assert torch.allclose(SpatioTemporalGaussianSmoothing()(constant), constant)
    assert torch.allclose(SpatioTemporalGaussianSmoothing()(constant[:, :1]), constant[:, :1])
    with pytest.raises(CineDataError, match="velocity sequence"):
        smoothing(torch.zeros(1, 2, 8, 8))


# ----------------------------------------------------------------------------------------- exponentiation
def test_exponentiation_zero_constant_and_inverse():
    model = make_model()
    exp = model.exponentiation
    assert torch.equal(exp(torch.zeros(1, 2, *SIZE)), torch.zeros(1, 2, *SIZE))
    shift = torch.tensor([0.7, -1.3]).view(1, 2, 1, 1)
    assert torch.allclose(exp(shift.expand(1, 2, *SIZE).contiguous()), shift.expand(1, 2, *SIZE), atol=1e-5)
    # smooth random field of at most 2 voxels: exp(v) and exp(-v) compose to about the identity
    torch.manual_seed(0)
    velocity = GaussianFilter(2, 4.0)(torch.randn(1, 2, *SIZE))
    velocity = velocity / velocity.abs().max() * 2.0
    forward, inverse = exp(velocity), exp(-velocity)
    assert forward.abs().max() > 1.5
    for residual in (compose_displacements(forward, inverse), compose_displacements(inverse, forward)):
        assert residual.abs().max() < 0.1
        assert residual[..., 4:-4, 4:-4].abs().max() < 0.05


# ----------------------------------------------------------------------------------------- model
def test_forward_shapes_and_gradients_reach_every_part():
    model = make_model(temporal_dropout=0.0).train()
    moving, fixed = images(2, 1), images(2, 5, seed=1)
    out = model(moving, fixed, generator=gen(0))
    shapes = {
        "velocity": (2, 5, 2, *SIZE),
        "ddf": (2, 5, 2, *SIZE),
        "inverse_ddf": (2, 5, 2, *SIZE),
        "warped": (2, 5, *SIZE),
        "mu": (2, 5, D),
        "logvar": (2, 5, D),
        "z_tilde": (2, 5, D),
        "z": (2, D, 5),
        "dropout_mask": (2, 5),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert not torch.allclose(out["z_tilde"], out["mu"])  # training mode samples the posterior
    (out["warped"] - fixed).square().mean().backward()  # image term only: the encoder learns through z
    for part in (model.encoder, model.tcn, model.decoder):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_eval_mode_uses_posterior_means_without_dropout():
    model = make_model(temporal_dropout=0.9).eval()
    out = model(images(2, 1), images(2, 6, seed=1))
    assert not out["dropout_mask"].any()
    assert torch.equal(out["z_tilde"], out["mu"])
    assert torch.allclose(out["ddf"], model.track(images(2, 1), images(2, 6, seed=1)))


@pytest.mark.parametrize("delta", [0.5, 0.2])
def test_temporal_dropout_fraction(delta):
    # 2000 steps; the mask does not depend on the images, so a 16 x 16 model keeps this fast
    model = ProbabilisticMotionModel(spatial_size=(16, 16), latent_dim=D, temporal_dropout=delta).train()
    with torch.no_grad():
        mask = model(torch.rand(40, 1, 16, 16), torch.rand(40, 50, 16, 16), generator=gen(3))["dropout_mask"]
    assert mask.shape == (40, 50)
    assert abs(mask.float().mean().item() - delta) < 0.05


def test_dropped_steps_ignore_their_frames():
    # delta = 1: every step is a prior sample, so the fixed frames do not matter; delta = 0: they do
    moving = images(1, 1)
    model = make_model(temporal_dropout=1.0).train()
    with torch.no_grad():
        a = model(moving, images(1, 4, seed=1), generator=gen(7))
        b = model(moving, images(1, 4, seed=2), generator=gen(7))
    assert a["dropout_mask"].all() and torch.equal(a["ddf"], b["ddf"])
    model.temporal_dropout = 0.0
    with torch.no_grad():
        a = model(moving, images(1, 4, seed=1), generator=gen(7))
        b = model(moving, images(1, 4, seed=2), generator=gen(7))
    assert not a["dropout_mask"].any() and not torch.allclose(a["ddf"], b["ddf"])


def test_constant_velocity_tracks_and_compensates_a_translation():
    model = make_model().eval()
    with torch.no_grad():
        model.decoder.velocity.conv.weight.zero_()
        model.decoder.velocity.conv.bias.copy_(torch.tensor([2.0, -3.0]))
    moving = GaussianFilter(2, 1.5)(images(1, 1))
    shift = torch.tensor([2.0, -3.0]).view(1, 1, 2, 1, 1)
    # the frame t is the ED frame pulled by the translation: I_t(x) = I_0(x + (2, -3))
    frame = model.warp(moving, shift[0].expand(1, 2, *SIZE).contiguous())
    fixed = frame.expand(1, 3, *SIZE)
    with torch.no_grad():
        ddf = model.track(moving, fixed)
        out = model.compensate(moving, fixed)
        warped = model(moving, fixed)["warped"]
    assert torch.allclose(ddf, shift.expand_as(ddf), atol=1e-4)
    assert torch.allclose(out["inverse_ddf"], -shift.expand_as(ddf), atol=1e-4)
    assert torch.allclose(warped, fixed, atol=1e-5)
    # compensation brings every frame back onto ED, away from the border the translation reads beyond
    assert torch.allclose(out["compensated"][..., 3:-3, 4:-4], moving.expand(1, 3, *SIZE)[..., 3:-3, 4:-4], atol=1e-5)
    assert out["compensated"].shape == (1, 3, *SIZE)


def test_tensor_path_for_inferers():
    model = make_model().eval()
    cine = images(2, 5)
    with torch.no_grad():
        flat = model(cine)
        ddf = model.track(cine[:, :1], cine[:, 1:])
    assert flat.shape == (2, 10, *SIZE)
    assert torch.equal(flat[:, :2], torch.zeros(2, 2, *SIZE))  # ED's own field u_{ED->ED} = 0
    assert torch.equal(flat[:, 2:].reshape(2, 4, 2, *SIZE), ddf)  # channel 2 n + s: component s of u_{ED->n}
    assert torch.equal(flat[:, 5], ddf[:, 1, 1])
    with pytest.raises(CineDataError, match="N >= 2"):
        model(images(2, 1))


def test_encode_decode_and_transport():
    model = make_model().eval()
    moving, fixed, other = images(1, 1), images(1, 6, seed=1), images(1, 1, seed=2)
    with torch.no_grad():
        z = model.encode(moving, fixed)
        assert z.shape == (1, D, 6)
        assert torch.equal(model.decode(z, moving)["ddf"], model.track(moving, fixed))
        moved = model.transport(z, other)
        assert torch.equal(moved["ddf"], model.decode(z, other)["ddf"])
        # the motion adapts to the other anatomy (decoder conditioned on I_0) ...
        assert (moved["ddf"] - model.track(moving, fixed)).abs().max() > 1e-3
        # ... and the transported sequence is warped from the other ED frame
        frame = model.warp(other, moved["ddf"][:, 2])
    assert torch.allclose(moved["warped"][:, 2:3], frame)
    with pytest.raises(CineDataError, match="motion matrix"):
        model.decode(z[:, :-1], moving)


def test_reconstruct_all_given_equals_track_and_none_given_equals_simulate():
    model = make_model().eval()
    moving, fixed = images(2, 1), images(2, 6, seed=1)
    with torch.no_grad():
        full = model.reconstruct(moving, fixed, torch.ones(6, dtype=torch.bool))
        assert torch.equal(full["ddf"], model.track(moving, fixed))
        assert torch.equal(full["z"], model.encode(moving, fixed))
        empty = model.reconstruct(moving, torch.zeros_like(fixed), [], generator=gen(4))
        sampled = model.simulate(moving, num_frames=6, num_samples=1, generator=gen(4))
    assert torch.equal(empty["ddf"], sampled["ddf"][:, 0])
    assert torch.equal(empty["z"], sampled["z"][:, 0])


def test_reconstruct_uses_only_the_given_frames():
    model = make_model().eval()
    moving, fixed = images(1, 1), images(1, 10, seed=1)
    every_second = list(range(1, 10, 2))  # cine frames 2, 4, ..., 10 (ED = cine frame 0)
    other = fixed.clone()
    other[:, 0] = 0.0  # a missing frame: changing it changes nothing
    with torch.no_grad():
        a = model.reconstruct(moving, fixed, every_second, generator=gen(1))
        b = model.reconstruct(moving, other, every_second, generator=gen(1))
        mask = torch.zeros(10, dtype=torch.bool)
        mask[every_second] = True
        c = model.reconstruct(moving, fixed, mask, generator=gen(1))
        mu, _ = model.posterior(moving, fixed)
    assert torch.equal(a["given"][0], mask)
    assert torch.equal(a["ddf"], b["ddf"]) and torch.equal(a["ddf"], c["ddf"])
    assert torch.equal(a["z_tilde"][:, mask], mu[:, mask])
    with torch.no_grad():
        d = model.reconstruct(moving, other, [0] + every_second, generator=gen(1))
    assert not torch.allclose(a["ddf"], d["ddf"])  # once given, frame 1 matters


def test_simulate_shapes_and_samples_differ():
    model = make_model().eval()
    with torch.no_grad():
        out = model.simulate(images(2, 1), num_frames=13, num_samples=3, generator=gen(0))
    assert out["ddf"].shape == (2, 3, 13, 2, *SIZE)
    assert out["warped"].shape == (2, 3, 13, *SIZE)
    assert out["z"].shape == (2, 3, D, 13) and out["z_tilde"].shape == (2, 3, 13, D)
    assert (out["ddf"][:, 0] - out["ddf"][:, 1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="num_frames"):
        model.simulate(images(2, 1), num_frames=0)


def test_bad_inputs_raise_clear_errors():
    model = make_model()
    with pytest.raises(CineDataError, match="spatial_size=\\(32, 32\\)"):
        model.track(torch.rand(1, 1, 64, 64), torch.rand(1, 3, 64, 64))
    with pytest.raises(CineDataError, match="fixed"):
        model.track(images(2, 1), images(1, 3))
    with pytest.raises(CineDataError, match=r"\[0, 4\)"):
        model.reconstruct(images(1, 1), images(1, 4), [4])
    with pytest.raises(CineDataError, match="integer indices"):
        model.reconstruct(images(1, 1), images(1, 4), [0.5])
    with pytest.raises(CineDataError, match="bool mask"):
        model.reconstruct(images(1, 1), images(1, 4), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="temporal_dropout"):
        ProbabilisticMotionModel(spatial_size=SIZE, latent_dim=D, temporal_dropout=1.5)
