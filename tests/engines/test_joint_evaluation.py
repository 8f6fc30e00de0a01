"""Joint evaluation: per-volume Dice and EF from per-slice voxel counts, the orientation-averaged network."""

from __future__ import annotations

import math

import pytest
import torch

from monai_cardiac.engines.joint_evaluation import evaluate_joint_sequence, volume_rows
from monai_cardiac.networks import JointMotionSegNet


def _slice_row(subject: str, counts: dict) -> dict:
    """A row with ``counts[(phase, structure)] = (overlap, pred, ref)``, zeros elsewhere."""
    row = {"subject": subject}
    for phase in ("ed", "es"):
        for name in ("RV", "Myo", "LV"):
            overlap, pred, ref = counts.get((phase, name), (0, 0, 0))
            row.update({f"seg_{phase}_overlap_{name}": overlap, f"seg_{phase}_pred_{name}": pred,
                        f"seg_{phase}_ref_{name}": ref})
    return row


def test_volume_dice_pools_the_slices_of_a_patient():
    rows = [
        _slice_row("a", {("ed", "LV"): (80, 100, 100), ("es", "LV"): (30, 40, 40), ("ed", "RV"): (0, 10, 0)}),
        _slice_row("a", {("ed", "LV"): (20, 20, 100), ("es", "LV"): (10, 10, 20)}),
        _slice_row("b", {("ed", "LV"): (50, 50, 50), ("es", "LV"): (25, 25, 25)}),
    ]
    volumes = volume_rows(rows)
    assert [v["subject"] for v in volumes] == ["a", "b"] and volumes[0]["slices"] == 2
    ed = 2 * 100 / (120 + 200)
    es = 2 * 40 / (50 + 60)
    assert volumes[0]["vol_dice_LV"] == pytest.approx((ed + es) / 2)
    # a slice-wise mean would weigh the small second slice like the first: (0.8 + 2*20/120) / 2 at ED
    assert volumes[0]["vol_dice_LV"] != pytest.approx(((0.8 + 40 / 120) / 2 + (0.75 + 20 / 30) / 2) / 2)
    assert volumes[0]["vol_dice_RV"] == pytest.approx(0.0)  # predicted at ED, absent from the reference
    assert math.isnan(volumes[0]["vol_dice_Myo"])  # absent from both, in both phases
    assert volumes[0]["lv_ef_ref"] == pytest.approx(100 * (200 - 60) / 200)
    assert volumes[0]["lv_ef_pred"] == pytest.approx(100 * (120 - 50) / 120)
    assert volumes[0]["lv_ef_abs_error"] == pytest.approx(abs(100 * 70 / 120 - 70.0))
    assert volumes[1]["vol_dice_LV"] == pytest.approx(1.0) and volumes[1]["lv_ef_abs_error"] == pytest.approx(0.0)


@torch.no_grad()
def test_sequence_rows_hold_counts_that_match_the_slice_dice():
    torch.manual_seed(0)
    network = JointMotionSegNet(width_multiplier=0.0625).eval()
    image = torch.rand(4, 32, 32)
    labels = torch.zeros(4, 32, 32, dtype=torch.long)
    labels[:, 8:20, 8:20] = 3
    labels[:, 20:26, 8:20] = 1
    for ensemble in (False, True):
        row = evaluate_joint_sequence(network, image, labels, es=2, orientation_ensemble=ensemble)
        ed_dice = 2 * row["seg_ed_overlap_LV"] / (row["seg_ed_pred_LV"] + row["seg_ed_ref_LV"])
        es_dice = 2 * row["seg_es_overlap_LV"] / (row["seg_es_pred_LV"] + row["seg_es_ref_LV"])
        assert row["seg_ed_ref_LV"] == 144 and row["seg_es_ref_RV"] == 72
        assert row["seg_dice_LV"] == pytest.approx((ed_dice + es_dice) / 2, abs=1e-6)
        assert "warp_dice_LV" in row and row["frames"] == 4
