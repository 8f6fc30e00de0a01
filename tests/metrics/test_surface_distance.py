"""Tests for contour distances (HD, HD95, MCD) in mm."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from monai_cardiac.metrics import ContourDistanceMetric, compute_contour_distance, contour_distance


def _disc(shape: tuple[int, int], radius: float, centre: tuple[float, float] = (64.0, 64.0)) -> np.ndarray:
    h, w = np.mgrid[: shape[0], : shape[1]]
    return (h - centre[0]) ** 2 + (w - centre[1]) ** 2 <= radius**2


def _rectangle(shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """20 x 30 rectangle at rows 10..29, columns 10..39 of a 48 x 56 array, moved by ``shift`` voxels."""
    mask = np.zeros((48, 56), bool)
    mask[10 + shift[0] : 30 + shift[0], 10 + shift[1] : 40 + shift[1]] = True
    return mask


@pytest.mark.parametrize("spacing", [1.0, 1.5])
def test_concentric_discs(spacing):
    outer, inner = _disc((128, 128), 30), _disc((128, 128), 20)
    hd = contour_distance(outer, inner, "hd", spacing)
    hd95 = contour_distance(outer, inner, "hd95", spacing)
    mcd = contour_distance(outer, inner, "mcd", spacing)
    expected = (30 - 20) * spacing
    assert hd == pytest.approx(expected, abs=0.5 * spacing)
    assert mcd == pytest.approx(expected, abs=0.5 * spacing)
    assert mcd <= hd95 <= hd


def test_rectangle_shifted_along_h_with_anisotropic_spacing():
    # contours have 96 voxels; shifted one row, 58 of them (top edge 30, inside of the bottom edge 28) lie one
    # row from the other contour and the rest on it, in both directions, provided the W spacing is not smaller
    a, b = _rectangle(), _rectangle((1, 0))
    spacing = (1.5, 3.0)
    assert contour_distance(a, b, "hd", spacing) == pytest.approx(1.5)
    assert contour_distance(a, b, "hd95", spacing) == pytest.approx(1.5)
    assert contour_distance(a, b, "mcd", spacing) == pytest.approx(58 * 1.5 / 96)
    # the distance follows the spacing of the axis of the shift
    assert contour_distance(a, b, "hd", (3.0, 1.5)) == pytest.approx(3.0)


def test_rectangle_shifted_along_w_with_anisotropic_spacing():
    # shifted one column: 38 contour voxels (left edge 20, inside of the right edge 18) are one column away
    a, b = _rectangle(), _rectangle((0, 1))
    spacing = (3.0, 1.5)
    assert contour_distance(a, b, "hd", spacing) == pytest.approx(1.5)
    assert contour_distance(a, b, "mcd", spacing) == pytest.approx(38 * 1.5 / 96)
    assert contour_distance(a, b, "hd", (1.5, 3.0)) == pytest.approx(3.0)


def test_cube_shifted_along_z_in_3d():
    a = np.zeros((12, 12, 12), bool)
    a[3:8, 3:8, 3:8] = True
    b = np.roll(a, 2, axis=0)
    assert contour_distance(a, b, "hd", (2.5, 1.0, 1.0)) == pytest.approx(5.0)
    assert contour_distance(a, b, "hd", (1.0, 2.5, 2.5)) == pytest.approx(2.0)


def test_identical_masks_give_zero():
    a = _disc((64, 64), 10, (32, 32))
    assert all(contour_distance(a, a, m) == 0.0 for m in ("hd", "hd95", "mcd"))


def test_empty_masks_give_nan_never_inf():
    empty, full = np.zeros((16, 16), bool), _disc((16, 16), 4, (8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on empty masks either
        for metric in ("hd", "hd95", "mcd"):
            assert math.isnan(contour_distance(empty, full, metric))
            assert math.isnan(contour_distance(full, empty, metric))
            assert math.isnan(contour_distance(empty, empty, metric))


def test_compute_on_label_maps_per_structure_and_item():
    ref = np.zeros((2, 1, 48, 56), np.int64)
    ref[:, 0][_rectangle()[None].repeat(2, 0)] = 3
    pred = np.zeros_like(ref)
    pred[0, 0][_rectangle((1, 0))] = 3
    pred[1, 0][_rectangle((2, 0))] = 3
    pred[1, 0, 0:3, 0:3] = 1  # RV only in the prediction of item 1
    hd = compute_contour_distance(pred, ref, "hd", spacing=[[1.5, 3.0], [2.0, 3.0]], num_classes=4)
    assert hd.shape == (2, 3) and hd.dtype == torch.float32
    assert hd[0, 2].item() == pytest.approx(1.5)
    assert hd[1, 2].item() == pytest.approx(4.0)
    assert torch.isnan(hd[:, :2]).all()  # RV, Myo: missing from one or both masks
    assert not torch.isinf(hd).any()


def test_metric_aggregate_ignores_nan():
    metric = ContourDistanceMetric("hd", num_classes=4, reduction="mean", get_not_nans=True)
    ref = torch.zeros(1, 1, 48, 56, dtype=torch.int64)
    ref[0, 0][torch.from_numpy(_rectangle())] = 3
    pred = torch.zeros_like(ref)
    pred[0, 0][torch.from_numpy(_rectangle((1, 0)))] = 3
    metric(pred, ref, spacing=(2.0, 2.0))  # LV 2.0 mm, RV and Myo NaN
    pred[0, 0][torch.from_numpy(_rectangle((1, 0)))] = 0
    pred[0, 0][torch.from_numpy(_rectangle((3, 0)))] = 3
    metric(pred, ref, spacing=(2.0, 2.0))  # LV 6.0 mm
    value, not_nans = metric.aggregate()
    assert value.item() == pytest.approx(4.0)
    assert not_nans.item() == 2
    per_class, counts = metric.aggregate("mean_batch")
    assert torch.isfinite(per_class).all() and per_class[2].item() == pytest.approx(4.0)
    torch.testing.assert_close(counts, torch.tensor([0.0, 0.0, 2.0]))


def test_bad_arguments():
    a = _disc((16, 16), 4, (8, 8))
    with pytest.raises(ValueError):
        contour_distance(a, a, "hd99")
    with pytest.raises(ValueError):
        ContourDistanceMetric("mean")
    with pytest.raises(ValueError, match="same shape"):
        contour_distance(a, a[:-1], "hd")
    with pytest.raises(ValueError, match="positive"):
        contour_distance(a, a, "hd", (1.0, 0.0))
