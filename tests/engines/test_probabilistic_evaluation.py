"""Evaluation of motion fields (probabilistic model vs the joint network's motion branch) on hand-checkable cases."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_cardiac.data import acdc_datalist, write_phantom_dataset
from monai_cardiac.engines.joint_evaluation import evaluate_joint_sequence
from monai_cardiac.engines.probabilistic_evaluation import (
    evaluate_motion_checkpoints,
    evaluate_motion_datalist,
    evaluate_motion_sequence,
    has_matplotlib,
    joint_motion_fields,
    motion_fields,
    motion_tables_markdown,
    motion_target_checks,
    probabilistic_motion_fields,
    report_phantom_motion,
)
from monai_cardiac.errors import CineDataError
from monai_cardiac.networks import JointMotionSegNet, ProbabilisticMotionModel

SIZE = (32, 32)
STRUCTURES = ("RV", "Myo", "LV")


def ed_labels(lv_half: int = 4) -> torch.Tensor:
    """(32, 32) labels: an LV square of side 2 * lv_half centred at (14, 14), a Myo ring 2 voxels wide, an RV block."""
    lab = torch.zeros(SIZE, dtype=torch.long)
    lab[14 - lv_half - 2:14 + lv_half + 2, 14 - lv_half - 2:14 + lv_half + 2] = 2
    lab[14 - lv_half:14 + lv_half, 14 - lv_half:14 + lv_half] = 3
    lab[10:18, 22:26] = 1
    return lab


def shifted_sequence(num_frames: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame t = the ED labels shifted by t voxels along H; returns image, labels, u_{ED->t}, u_{t->ED}."""
    ed = ed_labels()
    labels = torch.stack([torch.roll(ed, t, dims=0) for t in range(num_frames)])
    image = labels.float() / 3.0
    shifts = torch.arange(1, num_frames, dtype=torch.float32)
    u_ed_to_t = torch.zeros(num_frames - 1, 2, *SIZE)
    u_ed_to_t[:, 0] = -shifts[:, None, None]  # pull: frame t at x reads ED at x - t
    return image, labels, u_ed_to_t, -u_ed_to_t


def test_identity_fields_score_as_no_motion():
    image, labels, _, _ = shifted_sequence(5)
    zero = torch.zeros(4, 2, *SIZE)
    row = evaluate_motion_sequence(image, labels, 2, zero, zero, spacing=(1.5, 1.5))
    for s in STRUCTURES:
        assert row[f"track_dice_{s}"] == pytest.approx(row[f"unwarped_dice_{s}"])
        assert row[f"comp_dice_{s}"] == pytest.approx(row[f"unwarped_dice_{s}"])
        assert row[f"track_hd95_{s}"] == pytest.approx(row[f"unwarped_hd95_{s}"])
        assert row[f"unwarped_hd95_{s}"] > 0
    assert row["unwarped_dice_LV"] < 1.0
    for suffix in ("comp", "track"):
        assert row[f"grad_t_{suffix}"] == 0.0 and row[f"grad_s_{suffix}"] == 0.0
        assert row[f"folding_pct_{suffix}"] == 0.0 and row[f"folding_heart_pct_{suffix}"] == 0.0
    assert row["rmse_track"] == pytest.approx(row["rmse_unregistered"])
    assert row["rmse_comp"] == pytest.approx(row["rmse_unregistered"])
    lv = float((labels[0] == 3).sum())
    assert row["lv_volume_track"] == [lv] * 5 and row["lv_volume_unit"] == "voxels"  # no slice thickness given
    assert row["lv_ed_voxels"] == lv and row["lv_ef_track"] == 0.0 and "lv_ed_ml" not in row
    assert math.isnan(row["lv_volume_ref"][1]) and row["lv_volume_ref"][2] == lv


def test_constant_translation_gives_exact_tracking_and_end_point_errors():
    image, labels, u_ed_to_t, u_t_to_ed = shifted_sequence(4)
    truth = torch.cat([torch.zeros(1, 2, *SIZE), u_ed_to_t])
    row = evaluate_motion_sequence(image, labels, 2, u_t_to_ed, u_ed_to_t, spacing=(1.5, 1.5), true_ddf=truth,
                                   slice_thickness=8.0)
    for s in STRUCTURES:
        assert row[f"track_dice_{s}"] == 1.0 and row[f"comp_dice_{s}"] == 1.0
        assert row[f"track_hd95_{s}"] == 0.0 and row[f"comp_hd95_{s}"] == 0.0
    assert row["track_dice_mean"] == 1.0 and row["unwarped_dice_mean"] < 1.0
    assert row["rmse_track"] == pytest.approx(0.0, abs=1e-6) and row["rmse_comp"] == pytest.approx(0.0, abs=1e-6)
    assert row["rmse_unregistered"] > 0.1
    # fields 0, 1, 2, 3 voxels along H: one voxel per frame, no spatial variation, no folding
    assert row["grad_t_track"] == pytest.approx(1.0) and row["grad_t_comp"] == pytest.approx(1.0)
    assert row["grad_s_track"] == 0.0 and row["folding_pct_track"] == 0.0
    assert row["epe_px"] == pytest.approx(0.0, abs=1e-6) and row["zero_motion_epe_px"] == pytest.approx(2.0)
    assert row["epe_comp_px"] == pytest.approx(0.0, abs=1e-6) and row["zero_motion_epe_comp_px"] == pytest.approx(2.0)
    ml = float((labels[0] == 3).sum()) * 1.5 * 1.5 * 8.0 / 1000.0
    assert row["lv_volume_unit"] == "mL" and row["lv_ed_ml"] == pytest.approx(ml) and row["lv_ed_voxels"] == 64.0
    assert row["lv_volume_track"] == pytest.approx([ml] * 4) and row["lv_ef_abs_error"] == pytest.approx(0.0)

    half = evaluate_motion_sequence(image, labels, 2, None, u_ed_to_t / 2, true_ddf=truth)
    assert half["epe_px"] == pytest.approx(1.0) and "comp_dice_LV" not in half and "epe_comp_px" not in half
    for s in STRUCTURES:  # a uniform field: the same error inside every structure
        assert half[f"epe_px_{s}"] == pytest.approx(1.0) and half[f"zero_motion_epe_px_{s}"] == pytest.approx(2.0)
    no_rv = evaluate_motion_sequence(image, torch.where(labels == 1, 0, labels), 2, None, u_ed_to_t, true_ddf=truth)
    assert math.isnan(no_rv["epe_px_RV"]) and no_rv["epe_px_LV"] == pytest.approx(0.0, abs=1e-6)
    assert all(math.isnan(half[f"track_hd95_{s}"]) for s in STRUCTURES)  # spacing unknown


def test_lv_volume_curve_and_ejection_fraction_from_the_labels():
    labels = torch.stack([ed_labels(4), ed_labels(4), ed_labels(2)])  # the LV shrinks at ES, no motion estimated
    zero = torch.zeros(2, 2, *SIZE)
    row = evaluate_motion_sequence(labels.float() / 3, labels, 2, None, zero)
    assert row["lv_ed_voxels"] == 64.0 and row["lv_es_ref_voxels"] == 16.0 and row["lv_es_track_voxels"] == 64.0
    assert row["lv_ef_ref"] == pytest.approx(0.75) and row["lv_ef_track"] == 0.0
    assert row["lv_ef_abs_error"] == pytest.approx(0.75)


def test_folding_field_is_counted():
    image, labels, _, _ = shifted_sequence(3)
    h = torch.arange(SIZE[0], dtype=torch.float32)
    fold = torch.zeros(2, 2, *SIZE)
    fold[:, 0] = -2.0 * h[:, None]  # det(I + grad u) = 1 - 2 = -1 everywhere
    row = evaluate_motion_sequence(image, labels, 1, fold, torch.zeros(2, 2, *SIZE))
    assert row["folding_pct_comp"] == 100.0 and row["folding_heart_pct_comp"] == 100.0
    assert row["folding_pct_track"] == 0.0
    assert row["grad_s_comp"] == pytest.approx(2.0)


def test_bad_inputs_raise():
    image, labels, u, _ = shifted_sequence(4)
    with pytest.raises(ValueError, match="es must lie"):
        evaluate_motion_sequence(image, labels, 4, u)
    with pytest.raises(ValueError, match="at least one"):
        evaluate_motion_sequence(image, labels, 2)
    with pytest.raises(ValueError, match=r"u_ed_to_t must be shaped \(T - 1"):
        evaluate_motion_sequence(image, labels, 2, u, u[:2])


def tiny_probabilistic() -> ProbabilisticMotionModel:
    torch.manual_seed(0)
    model = ProbabilisticMotionModel(spatial_size=SIZE, latent_dim=4, encoder_channels=(4, 4, 4, 2),
                                     decoder_channels=(4, 4, 4), decoder_latent_channels=4, tcn_dilations=(1, 2))
    torch.nn.init.normal_(model.decoder.velocity.conv.weight, std=0.2)  # motions of about a voxel
    return model.eval()


def tiny_joint(**kwargs) -> JointMotionSegNet:
    torch.manual_seed(0)
    return JointMotionSegNet(width_multiplier=0.0625, **kwargs).eval()


def test_probabilistic_adapter_gives_both_directions():
    model = tiny_probabilistic()
    image = torch.rand(5, *SIZE)
    fields = probabilistic_motion_fields(model, image)
    assert set(fields) == {"u_ed_to_t", "u_t_to_ed", "seconds"} and fields["seconds"] >= 0
    assert fields["u_ed_to_t"].shape == fields["u_t_to_ed"].shape == (4, 2, *SIZE)
    with torch.no_grad():
        expected = model.track(image[None, :1], image[None, 1:])[0]
    assert torch.allclose(fields["u_ed_to_t"], expected) and fields["u_ed_to_t"].abs().max() > 0.01
    # exp(v) and exp(-v) are inverses: composing them is close to zero next to the field itself
    composed = compose_check(fields["u_ed_to_t"], fields["u_t_to_ed"])
    assert composed < 0.1 * fields["u_ed_to_t"].abs().max()
    assert motion_fields(model, image)["u_ed_to_t"].shape == (4, 2, *SIZE)
    with pytest.raises(CineDataError, match="built for"):
        probabilistic_motion_fields(model, torch.rand(5, 48, 48))


def test_probabilistic_orientation_ensemble_is_equivariant():
    """Averaged over the eight orientations, the fields of a re-oriented cine are the re-oriented fields."""
    model = tiny_probabilistic()
    torch.manual_seed(2)
    image = torch.rand(4, *SIZE)
    single = probabilistic_motion_fields(model, image)
    ensemble = probabilistic_motion_fields(model, image, orientation_ensemble=True)
    assert ensemble["u_ed_to_t"].shape == single["u_ed_to_t"].shape == (3, 2, *SIZE)
    # the network alone is not equivariant, so the average differs from the single pass
    assert not torch.allclose(ensemble["u_ed_to_t"], single["u_ed_to_t"], atol=1e-4)
    # a mirror of the H axis and a transpose generate all eight orientations: check both
    mirrored = probabilistic_motion_fields(model, image.flip(1), orientation_ensemble=True)
    transposed = probabilistic_motion_fields(model, image.transpose(1, 2), orientation_ensemble=True)
    for key in ("u_ed_to_t", "u_t_to_ed"):
        field = ensemble[key]  # (T - 1, 2, H, W), components (dH, dW)
        back = mirrored[key].flip(2)
        assert torch.allclose(back, torch.stack([-field[:, 0], field[:, 1]], dim=1), atol=1e-4)
        back = transposed[key].transpose(2, 3)  # components still (dW, dH) of the original axes
        assert torch.allclose(back.flip(1), field, atol=1e-4)


def compose_check(u_ab: torch.Tensor, u_ba: torch.Tensor) -> float:
    from monai_cardiac.displacement import compose_displacements

    return float(compose_displacements(u_ab, u_ba)[:, :, 4:-4, 4:-4].abs().max())


def test_joint_adapter_has_only_the_compensation_field_and_matches_the_joint_evaluation():
    network = tiny_joint()
    image, labels, _, _ = shifted_sequence(4)
    fields = joint_motion_fields(network, image)
    assert fields["u_ed_to_t"] is None and fields["u_t_to_ed"].shape == (3, 2, *SIZE)
    with torch.no_grad():
        expected = network(image[None, :1], image[None, 1:])["ddf_to_target"][0]
    assert torch.allclose(fields["u_t_to_ed"], expected)
    with torch.no_grad():
        out = network(image[None, :1], image[None, 1:])
    logits = torch.cat([out["seg_logits_target"][:, None], out["seg_logits_sources"]], dim=1)[0]
    assert fields["probabilities"].shape == (4, 4, *SIZE)  # every frame, ED first: what the refinement's term reads
    assert torch.allclose(fields["probabilities"], logits.softmax(1), atol=1e-6)
    assert joint_motion_fields(tiny_joint(segmentation=False), image)["probabilities"] is None
    row = evaluate_motion_sequence(image, labels, 2, fields["u_t_to_ed"], fields["u_ed_to_t"], spacing=(1.5, 1.5))
    assert not any(k.startswith(("track_", "lv_")) or k.endswith("_track") for k in row)
    joint_row = evaluate_joint_sequence(network, image, labels, 2, spacing=(1.5, 1.5))
    for s in STRUCTURES:
        assert row[f"comp_dice_{s}"] == pytest.approx(joint_row[f"warp_dice_{s}"])
    with pytest.raises(ValueError, match="motion branch"):
        joint_motion_fields(tiny_joint(motion=False), image)
    with pytest.raises(TypeError, match="no motion adapter"):
        motion_fields(torch.nn.Identity(), image)


def synthetic_entries(num: int = 3) -> tuple[list[dict], callable]:
    """Data-list entries and a preprocessing that builds shifted sequences in memory (no files)."""
    entries = [{"subject": f"patient{k:03d}", "slice": k, "spacing_known": k != 1} for k in range(num)]

    def preprocessing(entry: dict) -> dict:
        image, labels, _, _ = shifted_sequence(4 + entry["slice"])
        affine = torch.diag(torch.tensor([1.5, 1.5, 8.0, 1.0], dtype=torch.float64))
        mask = torch.zeros(image.shape[0], dtype=torch.bool)
        mask[[0, 2]] = True
        return {"image": MetaTensor(image, affine=affine), "label": MetaTensor(labels.float(), affine=affine),
                "label_mask": mask, "es": 2, "ed": 0}

    return entries, preprocessing


def test_datalist_rows_read_spacing_and_thickness_where_known():
    entries, preprocessing = synthetic_entries()
    rows = evaluate_motion_datalist(tiny_probabilistic(), entries, preprocessing)
    assert [r["slice"] for r in rows] == [0, 1, 2] and [r["frames"] for r in rows] == [4.0, 5.0, 6.0]
    assert rows[0]["lv_volume_unit"] == "mL" and rows[1]["lv_volume_unit"] == "voxels"
    assert math.isnan(rows[1]["track_hd95_LV"]) and not math.isnan(rows[0]["unwarped_hd95_LV"])
    assert rows[0]["seconds_per_50_frames"] == pytest.approx(rows[0]["seconds"] * 50 / 4)


def test_checkpoints_skip_missing_and_write_tables(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    entries, preprocessing = synthetic_entries()
    prob, joint = tiny_probabilistic(), tiny_joint()
    torch.save(prob.state_dict(), tmp_path / "tds.pt")  # ignite's bare state dict
    torch.save({"model": joint.state_dict()}, tmp_path / "joint.pt")
    variants = {
        "TDS": {"network": tiny_probabilistic(), "checkpoint": tmp_path / "tds.pt"},
        "no TDS": {"network": tiny_probabilistic(), "checkpoint": tmp_path / "missing.pt"},
        "joint motion branch": {"network": tiny_joint(), "checkpoint": tmp_path / "joint.pt"},
    }
    out = tmp_path / "eval"
    summaries = evaluate_motion_checkpoints(variants, entries, preprocessing, output_dir=str(out))
    printed = caplog.text  # the module's logger (the bundles' log)
    assert "no TDS: no checkpoint at" in printed and "target check" in printed
    assert set(summaries) == {"TDS", "joint motion branch"}
    assert "track_dice_mean" in summaries["TDS"] and "track_dice_mean" not in summaries["joint motion branch"]
    assert summaries["TDS"]["comp_dice_LV"]["n"] == 3 and summaries["TDS"]["track_hd95_LV"]["excluded"] == 1
    assert json.loads((out / "summary.json").read_text()).keys() == summaries.keys()
    tables = (out / "tables.md").read_text()
    assert "| TDS |" in tables and "| joint motion branch |" in tables and "| unregistered |" in tables
    assert "temporal gradient" in tables and "no TDS" not in tables.split("target check")[0]
    csv = (out / "rows_TDS.csv").read_text().splitlines()
    assert len(csv) == 4 and "lv_volume_track" not in csv[0] and "comp_dice_LV" in csv[0]
    curves = json.loads((out / "curves.json").read_text())
    assert len(curves["TDS"][2]["lv_volume_track"]) == 6 and "lv_volume_track" not in curves["joint motion branch"][0]
    checks = json.loads((out / "checks.json").read_text())
    assert checks["folding"] in (True, False) and checks["dice"] in (True, False)
    assert (out / "lv_volume_curves.png").is_file() == bool(has_matplotlib)


def test_target_checks_compare_the_shared_direction():
    def summary(**means):
        return {k: {"mean": v, "std": 0.0, "n": 1, "excluded": 0} for k, v in means.items()}

    summaries = {
        "TDS": summary(comp_dice_mean=0.80, grad_t_comp=0.5, folding_pct_comp=0.0, folding_pct_track=0.0),
        "joint motion branch": summary(comp_dice_mean=0.78, grad_t_comp=0.7, folding_pct_comp=0.3),
    }
    checks = motion_target_checks(summaries)
    assert checks["dice"] is True and checks["temporal_gradient"] is True and checks["folding"] is True
    summaries["TDS"]["folding_pct_track"]["mean"] = 0.01
    summaries["TDS"]["comp_dice_mean"]["mean"] = 0.70
    checks = motion_target_checks(summaries)
    assert checks["dice"] is False and checks["folding"] is False
    assert "FAILED" in checks["lines"][0] and "PASSED" in checks["lines"][1]
    checks = motion_target_checks({"TDS": summaries["TDS"]})
    assert checks["dice"] is None and "n/a" in checks["lines"][0]
    assert "| joint motion branch | " + " | ".join(["n/a"] * 7) + " |" in motion_tables_markdown(summaries)


@pytest.fixture(scope="module")
def phantom_slices(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, num_subjects=1, seed=3, num_frames=5, num_slices=None, spatial_size=SIZE,
                          spacing=(4.0, 4.0))
    return acdc_datalist(root, per="slice")


def test_phantom_report_writes_the_verdict(phantom_slices, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    output = tmp_path / "phantom.json"
    result = report_phantom_motion(tiny_probabilistic(), phantom_slices, output_file=str(output))
    printed = caplog.text  # the module's logger (the bundles' log)
    assert "held-out phantom verdict: " in printed and "ED->ES" in printed
    saved = json.loads(output.read_text())
    assert saved["num_slices"] == len(phantom_slices) == 1 and saved["passed"] == result["passed"]
    summary = result["summary"]
    assert summary["zero_motion_epe_px"]["mean"] > 0
    assert result["epe_ratio"] == pytest.approx(summary["epe_px"]["mean"] / summary["zero_motion_epe_px"]["mean"])
    assert result["passed"] == (result["epe_ratio"] <= 0.5)
    assert result["gate"]["epe_ratio_heart"]["value"] == pytest.approx(result["epe_ratio"])
    for s in STRUCTURES:
        assert result["epe_ratio_per_structure"][s] == pytest.approx(
            summary[f"epe_px_{s}"]["mean"] / summary[f"zero_motion_epe_px_{s}"]["mean"])
    assert "per ES structure: RV" in printed and saved["epe_ratio_per_structure"].keys() == set(STRUCTURES)
    # the phantom's labels are dense: the reference LV curve covers every frame
    assert not np.isnan(result["rows"][0]["lv_volume_ref"]).any()


def test_phantom_report_gates_the_myocardium_lv_dice_and_folding(phantom_slices, caplog):
    caplog.set_level(logging.INFO)
    model = tiny_probabilistic()
    ungated = report_phantom_motion(model, phantom_slices)
    summary, per_structure = ungated["summary"], ungated["epe_ratio_per_structure"]
    dice_lv = summary["track_dice_LV"]["mean"]
    myo = per_structure["Myo"]
    # bounds just either side of the measured figures flip each gate on its own
    passing = report_phantom_motion(model, phantom_slices, epe_region="Myo", max_epe_ratio=myo + 1e-6,
                                    min_dice_lv=dice_lv - 1e-6, max_folding_pct=100.0)
    assert passing["passed"] and set(passing["gate"]) == {"epe_ratio_Myo", "dice_LV", "folding_pct"}
    assert passing["gate"]["epe_ratio_Myo"]["value"] == pytest.approx(myo)
    assert passing["epe_ratio"] == pytest.approx(ungated["epe_ratio"])  # the whole heart's is still reported
    for kwargs in ({"max_epe_ratio": myo - 1e-6}, {"min_dice_lv": dice_lv + 1e-6}, {"max_folding_pct": -1.0}):
        gate = {"max_epe_ratio": myo + 1e-6, "min_dice_lv": dice_lv - 1e-6, "max_folding_pct": 100.0, **kwargs}
        failed = report_phantom_motion(model, phantom_slices, epe_region="Myo", **gate)
        assert not failed["passed"] and sum(not e["passed"] for e in failed["gate"].values()) == 1
    printed = caplog.text  # the module's logger (the bundles' log)
    assert "epe_ratio_Myo" in printed and "(missed)" in printed and "verdict: FAILED" in printed
    with pytest.raises(ValueError, match="epe_region"):
        report_phantom_motion(model, phantom_slices, epe_region="aorta")


def test_phantom_report_rejects_a_model_of_another_size(phantom_slices):
    model = ProbabilisticMotionModel(spatial_size=(48, 48), latent_dim=4, encoder_channels=(4, 4, 4, 2),
                                     decoder_channels=(4, 4, 4), decoder_latent_channels=4, tcn_dilations=(1, 2))
    with pytest.raises(CineDataError, match=r"takes \(48, 48\)") as info:
        report_phantom_motion(model, phantom_slices)
    assert Path(phantom_slices[0]["image"]).name in str(info.value)
