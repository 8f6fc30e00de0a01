"""Tests for volume curves and the ejection fraction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.metrics import ejection_fraction, structure_volume_curve


def _disc_sequence(radii: list[float], size: int = 96) -> np.ndarray:
    """(T, H, W) labels: LV blood pool (3) discs of the given radii inside a 3-voxel myocardium ring (2)."""
    h, w = np.mgrid[:size, :size]
    r = np.hypot(h - (size - 1) / 2, w - (size - 1) / 2)  # centre between voxels
    frames = np.zeros((len(radii), size, size), np.uint8)
    for t, radius in enumerate(radii):
        frames[t][r < radius + 3] = 2
        frames[t][r < radius] = 3
    return frames


def test_volume_curve_of_discs_on_a_slice():
    radii = [30.0, 25.0, 20.0, 26.0]
    spacing = (1.25, 1.25, 8.0)  # in-plane sizes and slice thickness, mm
    curve = structure_volume_curve(_disc_sequence(radii), spacing, label=3)
    assert curve.shape == (4,) and curve.dtype == torch.float64
    expected = [math.pi * r**2 * 1.25 * 1.25 * 8.0 / 1000 for r in radii]
    np.testing.assert_allclose(curve.numpy(), expected, rtol=0.01)
    # the LV inside the epicardium counts the ring as well
    epi = structure_volume_curve(torch.from_numpy(_disc_sequence(radii)), spacing, label=(2, 3))
    np.testing.assert_allclose(epi.numpy(), [math.pi * (r + 3) ** 2 * 12.5 / 1000 for r in radii], rtol=0.01)


def test_volume_curve_exact_count_3d():
    labels = np.zeros((2, 3, 10, 10), np.int64)
    labels[0, :, 2:6, 2:7] = 3  # 3 x 4 x 5 = 60 voxels
    labels[1, 1:, 2:6, 2:7] = 3  # 40 voxels
    curve = structure_volume_curve(labels, np.array([10.0, 1.5, 2.0]), label=3)
    np.testing.assert_allclose(curve.numpy(), [60 * 30.0 / 1000, 40 * 30.0 / 1000])


def test_volume_curve_bad_input():
    labels = _disc_sequence([10.0])
    with pytest.raises(ValueError, match="three positive"):
        structure_volume_curve(labels, (1.25, 1.25), label=3)  # slice thickness missing
    with pytest.raises(ValueError, match="label"):
        structure_volume_curve(labels, (1.0, 1.0, 1.0), label=4)
    labels[0, 0, 0] = 7
    with pytest.raises(CineDataError, match=r"\[7\]"):
        structure_volume_curve(labels, (1.0, 1.0, 1.0), label=3)


def test_ejection_fraction_from_extremes_and_given_frames():
    volumes = torch.tensor([150.0, 120.0, 60.0, 90.0, 140.0])
    edv, esv, ef = ejection_fraction(volumes)
    assert (edv, esv) == (150.0, 60.0) and ef == pytest.approx(0.6)
    edv, esv, ef = ejection_fraction(volumes.numpy(), ed=4, es=1)
    assert (edv, esv) == (140.0, 120.0) and ef == pytest.approx(20 / 140)


def test_ejection_fraction_of_disc_curve():
    radii = [30.0, 18.0, 24.0]
    curve = structure_volume_curve(_disc_sequence(radii), (1.0, 1.0, 10.0), label=3)
    _, _, ef = ejection_fraction(curve, ed=0)
    assert ef == pytest.approx(1 - 18.0**2 / 30.0**2, abs=0.01)


def test_ejection_fraction_degenerate_and_bad_frames():
    edv, esv, ef = ejection_fraction([0.0, 0.0, 0.0])
    assert edv == 0.0 and esv == 0.0 and math.isnan(ef)
    with pytest.raises(ValueError, match="outside"):
        ejection_fraction([1.0, 2.0], ed=2)
    with pytest.raises(ValueError, match=r"\(T,\)"):
        ejection_fraction(np.ones((2, 3)))
