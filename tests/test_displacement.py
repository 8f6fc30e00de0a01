"""Tests for warping, composing and inverting displacement fields (pull convention)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.networks.blocks import Warp

from monai_cardiac.displacement import (
    check_ddf,
    compose_displacements,
    invert_displacement,
    propagate_labels,
    warp_image,
    warp_labels,
)
from monai_cardiac.errors import CineDataError

torch.set_num_threads(1)


def _constant_field(shape: tuple[int, ...], shift: tuple[float, ...], batch: int = 1) -> torch.Tensor:
    """Displacement (batch, S, *shape) equal to ``shift`` everywhere."""
    ddf = torch.zeros((batch, len(shift)) + shape)
    for axis, value in enumerate(shift):
        ddf[:, axis] = value
    return ddf


def _smooth_field(size: int = 64, amplitude: float = 2.0) -> torch.Tensor:
    """Sinusoidal displacement (1, 2, size, size) of the given amplitude that is zero on the array's edges."""
    h, w = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    envelope = torch.sin(math.pi * h / (size - 1)) * torch.sin(math.pi * w / (size - 1))
    u_h = amplitude * envelope * torch.sin(2 * math.pi * w / (size - 1))
    u_w = amplitude * envelope * torch.cos(math.pi * h / (size - 1))
    return torch.stack([u_h, u_w])[None]


def test_warp_integer_shift_pulls_from_plus_shift_2d():
    image = torch.arange(8 * 9, dtype=torch.float32).reshape(1, 1, 8, 9)
    out = warp_image(image, _constant_field((8, 9), (2.0, 0.0)))
    # u = +2 along H: out[h] = in[h + 2]; rows past the edge repeat the last row (border padding)
    torch.testing.assert_close(out[0, 0, :6], image[0, 0, 2:])
    torch.testing.assert_close(out[0, 0, 6], image[0, 0, 7])
    out = warp_image(image, _constant_field((8, 9), (0.0, -3.0)))
    torch.testing.assert_close(out[0, 0, :, 3:], image[0, 0, :, :6])


def test_warp_integer_shift_3d_and_sequence_as_batch():
    image = torch.rand(3, 2, 5, 6, 7)  # T = 3 frames as batch, 2 channels
    out = warp_image(image, _constant_field((5, 6, 7), (1.0, 0.0, 2.0), batch=3))
    assert out.shape == image.shape
    torch.testing.assert_close(out[:, :, :4, :, :5], image[:, :, 1:, :, 2:])


def test_warp_is_differentiable_and_promotes_integer_images():
    image = torch.rand(1, 1, 6, 6)
    ddf = torch.full((1, 2, 6, 6), 0.3, requires_grad=True)
    warp_image(image, ddf).sum().backward()
    assert ddf.grad is not None and ddf.grad.abs().sum() > 0
    out = warp_image(torch.ones(1, 1, 6, 6, dtype=torch.int64), torch.zeros(1, 2, 6, 6))
    assert out.dtype == torch.float32 and torch.all(out == 1)


@pytest.mark.parametrize(
    "image_shape, ddf_shape",
    [
        ((1, 1, 8, 8), (1, 3, 8, 8)),  # S does not match the spatial axes
        ((1, 1, 8, 8), (1, 2, 8, 7)),  # spatial sizes differ
        ((2, 1, 8, 8), (1, 2, 8, 8)),  # batch sizes differ
        ((1, 8, 8), (1, 2, 8, 8)),  # image without channel axis
    ],
)
def test_warp_rejects_mismatched_shapes(image_shape, ddf_shape):
    with pytest.raises(ValueError, match=r"shape"):
        warp_image(torch.zeros(image_shape), torch.zeros(ddf_shape))


@pytest.mark.parametrize("spatial", [(9, 7), (1, 6), (5, 6, 7), (1, 5, 4)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["border", "zeros", "reflection"])
def test_warp_equals_monai_warp(spatial, mode, padding_mode):
    """The direct grid_sample implementation gives MONAI's Warp's values, singleton axes included."""
    if mode == "bicubic" and len(spatial) == 3:
        pytest.skip("bicubic is 2D only")
    generator = torch.Generator().manual_seed(len(spatial) * 10 + spatial[0])
    image = torch.rand(3, 2, *spatial, generator=generator, dtype=torch.float64)
    ddf = 2.0 * torch.randn(3, len(spatial), *spatial, generator=generator, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Warp's note that it falls back to grid_sample
        expected = Warp(mode=mode, padding_mode=padding_mode)(image, ddf)
    assert torch.allclose(warp_image(image, ddf, mode=mode, padding_mode=padding_mode), expected, atol=1e-12)


def test_warp_first_called_under_inference_mode_still_differentiates_later():
    """The cached identity grid made under inference mode must not poison a later call with autograd."""
    with torch.inference_mode():
        warp_image(torch.rand(2, 1, 13, 11), torch.zeros(2, 2, 13, 11))
    ddf = torch.zeros(2, 2, 13, 11, requires_grad=True)
    warp_image(torch.rand(2, 1, 13, 11), ddf).sum().backward()
    assert ddf.grad is not None and ddf.grad.abs().sum() > 0


def test_warp_rejects_unknown_mode():
    with pytest.raises(ValueError):
        warp_image(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), mode="cubic-ish")


def test_check_ddf_rejects_integer_field():
    with pytest.raises(ValueError, match="floating"):
        check_ddf(torch.zeros(1, 2, 4, 4, dtype=torch.int64))


def _label_pattern() -> torch.Tensor:
    labels = torch.zeros(1, 1, 16, 16, dtype=torch.int64)
    labels[0, 0, 4:12, 3:7] = 1
    labels[0, 0, 5:11, 7:9] = 2
    labels[0, 0, 6:10, 9:13] = 3
    return labels


@pytest.mark.parametrize("mode", ["nearest", "onehot"])
def test_warp_labels_integer_shift(mode):
    labels = _label_pattern()
    out = warp_labels(labels, _constant_field((16, 16), (-1.0, 2.0)), mode=mode)
    assert out.dtype == torch.int64 and out.shape == labels.shape
    assert torch.equal(out[0, 0, 1:, :14], labels[0, 0, :15, 2:])


@pytest.mark.parametrize("mode", ["nearest", "onehot"])
def test_warp_labels_keeps_label_values_under_subvoxel_motion(mode):
    labels = _label_pattern()
    ddf = 1.3 * _smooth_field(16)
    out = warp_labels(labels, ddf, mode=mode)
    assert out.dtype == torch.int64
    assert set(out.unique().tolist()) == {0, 1, 2, 3}


def test_warp_labels_rejects_values_outside_classes():
    labels = _label_pattern()
    labels[0, 0, 0, 0] = 4
    with pytest.raises(CineDataError, match=r"\[4\]"):
        warp_labels(labels, torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, \*spatial\)"):
        warp_labels(torch.zeros(1, 2, 16, 16, dtype=torch.int64), torch.zeros(1, 2, 16, 16))


def test_propagate_labels_broadcasts_the_labels_over_the_fields_leading_axes():
    stack = torch.zeros(2, 12, 12, dtype=torch.long)  # ED labels of two slices (Z, H, W)
    stack[0, 3:7, 2:6], stack[1, 5:9, 4:8] = 3, 2
    fields = torch.zeros(3, 2, 2, 12, 12)  # (T, Z, 2, H, W)
    fields[2, :, 1] = -2.0  # frame 2 pulls from 2 voxels to the left: the labels move 2 voxels right
    tracked = propagate_labels(stack, fields)
    assert tracked.shape == (3, 2, 12, 12) and tracked.dtype == torch.long
    assert torch.equal(tracked[0], stack) and torch.equal(tracked[1], stack)
    assert torch.equal(tracked[2][:, :, 2:], stack[:, :, :-2])
    draws = torch.zeros(4, 3, 2, 12, 12)  # one slice's labels (H, W) through (K, T, 2, H, W)
    assert torch.equal(propagate_labels(stack[0], draws), stack[0].expand(4, 3, 12, 12))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, H, W\)"):
        propagate_labels(stack, fields[:, :, :1])
    with pytest.raises(CineDataError, match="outside the classes"):
        propagate_labels(stack + 4, fields)


def test_compose_translations_is_their_sum():
    u_ab = _constant_field((10, 12), (1.5, -0.5))
    u_bc = _constant_field((10, 12), (-0.25, 2.0))
    torch.testing.assert_close(compose_displacements(u_ab, u_bc), _constant_field((10, 12), (1.25, 1.5)))


def test_compose_matches_successive_warps():
    h, w = torch.meshgrid(torch.arange(32).float(), torch.arange(32).float(), indexing="ij")
    image = (torch.sin(h / 4) * torch.cos(w / 5))[None, None]
    u_ab = _smooth_field(32, 3.0)
    u_bc = 2.0 * _smooth_field(32, 1.0).flip(1).transpose(2, 3)
    twice = warp_image(warp_image(image, u_ab), u_bc)
    # only interpolation error is left with the right order; the sum or the other order is clearly off
    assert (twice - warp_image(image, compose_displacements(u_ab, u_bc))).abs().max() < 0.03
    assert (twice - warp_image(image, u_ab + u_bc)).abs().max() > 0.1
    assert (twice - warp_image(image, compose_displacements(u_bc, u_ab))).abs().max() > 0.1


def test_compose_rejects_different_shapes():
    with pytest.raises(ValueError, match="u_ab and u_bc"):
        compose_displacements(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 9))


def test_invert_smooth_field_composes_to_zero():
    u = _smooth_field(64, 2.0)
    v = invert_displacement(u)
    assert compose_displacements(u, v).abs().max() < 0.05  # u_ba then u_ab: identity
    assert compose_displacements(v, u).abs().max() < 0.05  # u_ab then u_ba: identity
    assert (v + u).abs().max() > 0.1  # the inverse is not simply -u


def test_invert_translation_3d():
    u = _constant_field((6, 7, 8), (0.5, -1.0, 2.0), batch=2)
    torch.testing.assert_close(invert_displacement(u), -u)


def test_invert_strong_expansion_needs_the_relaxed_update():
    """A radial expansion by 2.5x about the centre (grad u = 1.5 I) has an exact inverse (shrink to 1/2.5)."""
    n = 41
    grid = torch.stack(torch.meshgrid(torch.arange(float(n)), torch.arange(float(n)),
                                      indexing="ij"))
    centre = (n - 1) / 2
    u = (1.5 * (grid - centre))[None]  # gradient 1.5 I: the plain fixed-point update diverges
    inner = (slice(None), slice(None), slice(12, 29), slice(12, 29))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        plain = invert_displacement(u, num_iterations=60, relaxation=1.0)
    relaxed = invert_displacement(u)
    expected = -(1.5 / 2.5) * (grid - centre)[None]
    assert (relaxed - expected)[inner].abs().max() < 1e-2
    assert (plain - expected)[inner].abs().max() > 1.0
    with pytest.raises(ValueError, match="relaxation"):
        invert_displacement(u, relaxation=0.0)


def test_invert_warns_when_not_converged():
    u = 3.0 * _smooth_field(32, 2.0)  # gradients well above 1: folds
    with pytest.warns(RuntimeWarning, match="did not converge"):
        invert_displacement(u, num_iterations=3)
    with pytest.raises(ValueError, match="num_iterations"):
        invert_displacement(u, num_iterations=0)


def test_numpy_input_is_accepted():
    image = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = warp_image(image, np.zeros((1, 2, 4, 4), dtype=np.float32))
    assert isinstance(out, torch.Tensor) and torch.equal(out, torch.from_numpy(image))


def test_inversion_warnings_are_logged_once_with_where_they_came_from(caplog):
    import logging
    import warnings

    from monai_cardiac.displacement import DisplacementInversionWarning, inversion_warnings_logged

    logger = logging.getLogger("test_inversion")
    folding = torch.zeros(2, 2, 16, 16)
    folding[:, 0, 4:12, 4:12] = 6.0 * torch.sin(torch.arange(8.0))[None, :]  # a field that folds: no inverse
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as passed:
        warnings.simplefilter("always")
        with inversion_warnings_logged(logger, "patient008 slice 3"):
            with pytest.warns(DisplacementInversionWarning):  # raised as before inside the block
                invert_displacement(folding, num_iterations=3)
            invert_displacement(folding, num_iterations=3)
            invert_displacement(folding, num_iterations=3)
            warnings.warn("something else", UserWarning)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("patient008 slice 3: 2 inversion(s) did not converge")
    assert [str(w.message) for w in passed] == ["something else"]  # other warnings pass through
