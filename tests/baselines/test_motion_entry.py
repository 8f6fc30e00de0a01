"""The evaluation's per-slice entry point as the benchmark uses it: one direction given, the other inverted."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor

from monai_cardiac.engines.joint_evaluation import summarize_rows
from monai_cardiac.engines.probabilistic_evaluation import evaluate_motion_entry, motion_tables_markdown

SIZE = (32, 32)
STRUCTURES = ("RV", "Myo", "LV")


def shifted(num_frames: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame t = ED labels shifted by t voxels along H (pull: u_{ED->t} = -t along H)."""
    ed = torch.zeros(SIZE, dtype=torch.long)
    ed[8:20, 8:20] = 2
    ed[10:18, 10:18] = 3
    ed[10:18, 22:26] = 1
    labels = torch.stack([torch.roll(ed, t, dims=0) for t in range(num_frames)])
    u = torch.zeros(num_frames - 1, 2, *SIZE)
    u[:, 0] = -torch.arange(1, num_frames, dtype=torch.float32)[:, None, None]
    return labels.float() / 3.0, labels, u


def preprocessing_for(spacing_known: bool):
    def preprocessing(entry):
        image, labels, _ = shifted()
        affine = torch.diag(torch.tensor([1.5, 1.5, 8.0, 1.0], dtype=torch.float64))
        return {"image": MetaTensor(image, affine=affine), "label": MetaTensor(labels.float(), affine=affine),
                "es": 2, "ed": 0}

    return preprocessing


@pytest.mark.parametrize("given", ["u_ed_to_t", "u_t_to_ed"])
def test_the_missing_direction_is_inverted_and_scored(given):
    _, _, u = shifted()
    fields = {"u_ed_to_t": u, "u_t_to_ed": None} if given == "u_ed_to_t" else {"u_ed_to_t": None, "u_t_to_ed": -u}
    entry = {"subject": "patient001", "slice": 3}
    row = evaluate_motion_entry(entry, preprocessing_for(True), lambda image, spacing: {**fields, "seconds": 0.5},
                                invert_missing=True)
    assert row["subject"] == "patient001" and row["slice"] == 3
    assert row["inverted"] == ("u_t_to_ed" if given == "u_ed_to_t" else "u_ed_to_t")
    assert row["inversion_converged"] == 1.0 and row["seconds_inversion"] >= 0
    assert row["seconds"] == 0.5 and row["seconds_per_50_frames"] == pytest.approx(0.5 * 50 / 4)
    for d in ("track", "comp"):  # a translation is inverted exactly away from the border: perfect overlap
        for s in STRUCTURES:
            assert row[f"{d}_dice_{s}"] == pytest.approx(1.0)
            assert row[f"{d}_mcd_{s}"] == pytest.approx(0.0) and row[f"{d}_hd95_{s}"] == pytest.approx(0.0)
        assert row[f"sdlogj_{d}"] == pytest.approx(0.0, abs=1e-4)
    assert row["unwarped_mcd_LV"] > 1.0  # 2 voxels of 1.5 mm apart, unregistered


def test_without_inversion_a_missing_direction_stays_missing():
    _, _, u = shifted()
    row = evaluate_motion_entry({"subject": "p", "slice": 0}, preprocessing_for(True),
                                lambda image, spacing: {"u_ed_to_t": u, "u_t_to_ed": None, "seconds": 0.0})
    assert "comp_dice_LV" not in row and "inverted" not in row and row["track_dice_LV"] == pytest.approx(1.0)


def test_contour_distances_and_sdlogj_are_tabulated():
    _, _, u = shifted()
    row = evaluate_motion_entry({"subject": "p", "slice": 0}, preprocessing_for(True),
                                lambda image, spacing: {"u_ed_to_t": u, "u_t_to_ed": None, "seconds": 0.0},
                                invert_missing=True)
    tables = motion_tables_markdown({"peer": summarize_rows([row])})
    assert "Mean contour distance (mm)" in tables and "| peer | 0.00 (0.00) |" in tables
    assert "SDlogJ u_{t->ED}" in tables
    assert not math.isnan(row["unwarped_mcd_RV"])
