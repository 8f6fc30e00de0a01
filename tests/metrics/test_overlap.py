"""Tests for Dice per structure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.metrics import StructureDiceMetric, compute_dice


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    h, w = np.mgrid[: shape[0], : shape[1]]
    return (h - centre[0]) ** 2 + (w - centre[1]) ** 2 < radius**2


def _lens_area(r1: float, r2: float, d: float) -> float:
    """Area of the intersection of two discs of radii r1, r2 whose centres are d apart (|r1 - r2| < d < r1 + r2)."""
    a1 = r1**2 * math.acos((d**2 + r1**2 - r2**2) / (2 * d * r1))
    a2 = r2**2 * math.acos((d**2 + r2**2 - r1**2) / (2 * d * r2))
    return a1 + a2 - 0.5 * math.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2))


def _binary_pair(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(a, dtype=torch.float32)[None, None], torch.as_tensor(b, dtype=torch.float32)[None, None]


def test_dice_of_two_discs_matches_exact_areas():
    r1, r2, d = 30.0, 25.0, 20.0
    a = _disc((128, 128), (64, 50), r1)
    b = _disc((128, 128), (64, 50 + d), r2)
    expected = 2 * _lens_area(r1, r2, d) / (math.pi * r1**2 + math.pi * r2**2)
    dice = compute_dice(*_binary_pair(a, b), include_background=True)
    assert dice.shape == (1, 1)
    assert dice.item() == pytest.approx(expected, abs=0.01)


def test_dice_empty_masks_follow_conventions():
    empty, full = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    full[2:5, 2:5] = True
    assert compute_dice(*_binary_pair(empty, empty), include_background=True).item() == 1.0
    assert compute_dice(*_binary_pair(full, empty), include_background=True).item() == 0.0
    assert compute_dice(*_binary_pair(empty, full), include_background=True).item() == 0.0


def test_dice_per_structure_on_label_maps():
    pred = torch.zeros(1, 1, 10, 10, dtype=torch.int64)
    ref = torch.zeros(1, 1, 10, 10, dtype=torch.int64)
    pred[0, 0, 0:4, 0:4] = 1  # RV: 16 voxels, 8 shared with the reference
    ref[0, 0, 0:2, 0:4] = 1  # RV: 8 voxels
    pred[0, 0, 6:8, 6:8] = 3  # LV only in the prediction; Myo in neither
    dice = compute_dice(pred, ref, num_classes=4)
    torch.testing.assert_close(dice, torch.tensor([[2 * 8 / (16 + 8), 1.0, 0.0]]))
    # the same with one-hot inputs and the background kept
    onehot = torch.nn.functional.one_hot(pred[:, 0], 4).movedim(-1, 1).float()
    onehot_ref = torch.nn.functional.one_hot(ref[:, 0], 4).movedim(-1, 1).float()
    with_bg = compute_dice(onehot.numpy(), onehot_ref.numpy(), include_background=True)
    bg_expected = 2 * 80 / (80 + 92)  # background: 80 voxels predicted, 92 in the reference, 80 shared
    torch.testing.assert_close(with_bg, torch.tensor([[bg_expected, 2 * 8 / 24, 1.0, 0.0]]))


def test_dice_rejects_bad_labels_and_shapes():
    ref = torch.zeros(1, 1, 6, 6, dtype=torch.int64)
    bad = ref.clone()
    bad[0, 0, 1, 1] = 5
    with pytest.raises(CineDataError, match=r"\[5\]"):
        compute_dice(bad, ref, num_classes=4)
    with pytest.raises(ValueError, match="spatial"):
        compute_dice(torch.zeros(1, 4, 6, 6), torch.zeros(1, 4, 6, 7))
    with pytest.raises(ValueError, match="label map"):
        compute_dice(torch.zeros(1, 3, 6, 6), ref, num_classes=4)


def test_dice_metric_accumulates_and_reduces():
    metric = StructureDiceMetric(num_classes=4, reduction="mean_batch", get_not_nans=True)
    pred = torch.zeros(2, 1, 6, 6, dtype=torch.int64)
    pred[0, 0, :3] = 1
    pred[1, 0, :3] = 3
    ref = torch.zeros(2, 1, 6, 6, dtype=torch.int64)
    ref[:, 0, :3] = 1
    metric(pred, ref)  # item 0: RV 1, Myo 1 (both empty), LV 1; item 1: RV 0, Myo 1, LV 0
    metric(pred[:1], ref[:1])
    value, not_nans = metric.aggregate()
    torch.testing.assert_close(value, torch.tensor([2 / 3, 1.0, 2 / 3]))
    torch.testing.assert_close(not_nans, torch.tensor([3.0, 3.0, 3.0]))
