from __future__ import annotations

import csv

import numpy as np
import pytest

from monai_cardiac.data import make_cine_phantom
from monai_cardiac.engines.joint_inference import write_joint_outputs
from monai_cardiac.engines.strain_outputs import AHA_BULLSEYE_SECTORS, plot_bullseye, write_strain_outputs
from monai_cardiac.metrics.stack_strain import stack_strain


def _result():
    curve = {"radial_percent": [0.0, 20.0, 5.0], "circumferential_percent": [0.0, -15.0, -4.0],
             "peak_radial_percent": 20.0, "peak_circumferential_percent": -15.0, "time_to_peak_radial": 1,
             "time_to_peak_circumferential": 1}
    segment = {**curve, "name": "mid anterior", "level": "mid", "thickness_ed_mm": 8.0, "thickness_es_mm": 12.0,
               "thickening_percent": 50.0, "num_voxels": 40}
    return {"frames": [2, 0, 1], "es": 0, "global": curve, "segments": {7: segment}, "slices": []}


def _read(path):
    with open(path) as f:
        lines = f.read().splitlines()
    header = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    return header, list(csv.DictReader(line for line in lines if not line.startswith("#")))


def test_strain_files_hold_the_curves_peaks_and_segment_table(tmp_path):
    files = write_strain_outputs(tmp_path, "s1", _result(), {"subject": "s1"}, plot=False)
    header, rows = _read(files["strain"])
    assert header["subject"] == "s1" and header["peak_global_circumferential_percent"] == "-15.00"
    assert [r["frame"] for r in rows] == ["2", "0", "1"]  # ED first, file frame numbers
    assert float(rows[1]["global_radial_percent"]) == 20.0 and float(rows[1]["seg7_circumferential_percent"]) == -15.0
    with open(files["strain_segments"]) as f:
        (segment,) = list(csv.DictReader(f))
    assert segment["segment"] == "7" and segment["name"] == "mid anterior"
    assert float(segment["thickening_percent"]) == 50
    assert "strain_bullseye" not in files


def test_bullseye_png_and_its_segment_layout(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "b.png"
    plot_bullseye(path, {sid: float(sid) for sid in range(1, 17)}, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    # anterior segments at the top (90 degrees), septal ones on the left (180 degrees)
    for sid, ring_mid in ((1, 90.0), (7, 90.0), (13, 90.0), (3, 210.0), (14, 180.0)):
        ring, start = AHA_BULLSEYE_SECTORS[sid]
        assert start + (90.0 if ring == 0 else 60.0) / 2 == ring_mid
    with pytest.raises(ValueError, match="1-16"):
        plot_bullseye(path, {17: 1.0}, "bad")


def test_joint_outputs_write_the_strain_of_the_labels_and_motion(tmp_path):
    p = make_cine_phantom(3, num_frames=8, spatial_size=(80, 80), num_slices=3, group="NOR", noise_std=0.0,
                          bias_strength=0.0)
    labels, ddf = p["label"], p["ddf"][:, 1:]
    affine = np.diag([p["spacing"][1], p["spacing"][2], p["spacing"][0], 1.0])
    out = write_joint_outputs(tmp_path, "nor", labels, ddf, affine, ed=0, plot=False)
    expected = stack_strain(labels, ddf, p["spacing"][1:], ed=0)["global"]
    assert out["summary"]["strain"]["peak_circumferential_percent"] == pytest.approx(
        expected["peak_circumferential_percent"])
    header, rows = _read(out["files"]["strain"])
    assert float(header["peak_global_radial_percent"]) == pytest.approx(expected["peak_radial_percent"], abs=0.01)
    assert len(rows) == 8 and "seg16_radial_percent" in rows[0]
    none = write_joint_outputs(tmp_path / "none", "bg", np.zeros_like(labels), ddf, affine, ed=0, plot=False)
    assert "strain" not in none["files"] and "strain" not in none["summary"]  # no myocardium: skipped
