"""Tests of the spatial and temporal Charbonnier (approximate Huber) smoothness losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses import HuberFlowSmoothnessLoss, TemporalHuberFlowSmoothnessLoss

EPS = 0.01


def _grid(h, w):
    return torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")


def test_constant_field_scores_sqrt_eps():
    ddf = torch.full((2, 2, 8, 6), 3.7, dtype=torch.float64)
    assert HuberFlowSmoothnessLoss()(ddf).item() == pytest.approx(math.sqrt(EPS))
    per_pixel = HuberFlowSmoothnessLoss(reduction="none")(ddf)
    assert tuple(per_pixel.shape) == (2, 1, 7, 5)
    assert HuberFlowSmoothnessLoss(reduction="sum")(ddf).item() == pytest.approx(2 * 7 * 5 * math.sqrt(EPS))


def test_linear_fields():
    """Units of the field: slope a (field units per voxel step) along one axis gives sqrt(eps + a^2)."""
    rows, cols = _grid(8, 6)
    a, b = 0.3, -0.2
    ddf = torch.stack([a * cols, torch.zeros_like(cols)])[None]  # component H varies along W
    assert HuberFlowSmoothnessLoss()(ddf).item() == pytest.approx(math.sqrt(EPS + a**2))
    ddf = torch.stack([a * cols, b * rows])[None]
    assert HuberFlowSmoothnessLoss()(ddf).item() == pytest.approx(math.sqrt(EPS + a**2 + b**2))
    # 3D: slope along the last axis of the first component
    z = torch.arange(5, dtype=torch.float64).view(1, 1, 5).expand(4, 3, 5)
    ddf3 = torch.stack([a * z, torch.zeros_like(z), torch.zeros_like(z)])[None]
    assert HuberFlowSmoothnessLoss()(ddf3).item() == pytest.approx(math.sqrt(EPS + a**2))


def test_random_field_against_loops():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(2, 4, 5))
    expected = []
    for y in range(3):
        for x in range(4):
            s = sum((u[i, y + 1, x] - u[i, y, x]) ** 2 + (u[i, y, x + 1] - u[i, y, x]) ** 2 for i in range(2))
            expected.append(math.sqrt(EPS + s))
    got = HuberFlowSmoothnessLoss()(torch.from_numpy(u)[None]).item()
    assert got == pytest.approx(np.mean(expected))


def test_temporal_constant_and_linear_growth():
    rows, cols = _grid(6, 6)
    field = torch.stack([torch.sin(rows), cols])  # arbitrary in space
    constant = field.expand(2, 4, 2, 6, 6)
    assert TemporalHuberFlowSmoothnessLoss()(constant).item() == pytest.approx(math.sqrt(EPS))
    v = torch.tensor([0.3, -0.4], dtype=torch.float64).view(1, 1, 2, 1, 1)
    growing = field + v * torch.arange(5, dtype=torch.float64).view(1, 5, 1, 1, 1)
    assert TemporalHuberFlowSmoothnessLoss()(growing).item() == pytest.approx(math.sqrt(EPS + 0.25))
    per_pair = TemporalHuberFlowSmoothnessLoss(reduction="none")(growing)
    assert tuple(per_pair.shape) == (1, 4, 1, 6, 6)
    # growth only between frames 2 and 3: one pair of four is sqrt(eps + 0.25), the rest sqrt(eps)
    step = torch.zeros(1, 5, 2, 6, 6, dtype=torch.float64)
    step[:, 3:] += v
    expected = (3 * math.sqrt(EPS) + math.sqrt(EPS + 0.25)) / 4
    assert TemporalHuberFlowSmoothnessLoss()(step).item() == pytest.approx(expected)


def test_bad_inputs():
    with pytest.raises(CineDataError, match="ddf must be shaped"):
        HuberFlowSmoothnessLoss()(torch.zeros(1, 3, 8, 8))
    with pytest.raises(CineDataError, match="ddf must be shaped"):
        HuberFlowSmoothnessLoss()(torch.zeros(1, 2, 1, 8))
    with pytest.raises(CineDataError, match="T >= 2"):
        TemporalHuberFlowSmoothnessLoss()(torch.zeros(1, 1, 2, 8, 8))
    with pytest.raises(ValueError, match="eps"):
        HuberFlowSmoothnessLoss(eps=0.0)
    with pytest.raises(ValueError):
        TemporalHuberFlowSmoothnessLoss(reduction="max")
