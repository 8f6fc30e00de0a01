from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from monai_cardiac.data import acdc_datalist, read_info_cfg, split_by_subject
from monai_cardiac.errors import CineDataError


def test_datalist_per_slice_and_volume(tmp_path, make_acdc_subject):
    make_acdc_subject(tmp_path, "patient001", num_frames=6, num_slices=3, es=4)
    make_acdc_subject(tmp_path, "patient002", num_frames=8, num_slices=2, es=3, dense=True)
    per_slice = acdc_datalist(tmp_path)
    assert len(per_slice) == 5
    first = per_slice[0]
    assert first["subject"] == "patient001" and first["slice"] == 0
    assert (first["ed"], first["es"], first["num_frames"]) == (0, 3, 6)
    assert first["label_frames"] == [0, 3]
    assert first["label"][1].endswith("patient001_frame04_gt.nii.gz")
    assert "dense_label" not in first and "dense_label" in per_slice[-1]
    per_volume = acdc_datalist(tmp_path, per="volume")
    assert [e["subject"] for e in per_volume] == ["patient001", "patient002"]
    assert "slice" not in per_volume[0]
    assert acdc_datalist(tmp_path, per="volume", subjects=["patient002"])[0]["num_frames"] == 8


def test_manifest_spacing_known(tmp_path, make_acdc_subject):
    make_acdc_subject(tmp_path, "patient001")
    (tmp_path / "manifest.json").write_text(json.dumps([{"patient": "patient001", "spacing_known": False}]))
    assert acdc_datalist(tmp_path, per="volume")[0]["spacing_known"] is False


def test_info_cfg_errors(tmp_path, make_acdc_subject):
    folder = make_acdc_subject(tmp_path, num_frames=6)
    cfg = folder / "Info.cfg"
    assert read_info_cfg(cfg, num_frames=6)["es"] == 2
    cfg.write_text("ED: 1\nES: 9\nNbFrame: 6\n")
    with pytest.raises(CineDataError, match=r"Info.cfg.*ES = 9 is outside the frames 1..6"):
        acdc_datalist(tmp_path)
    cfg.write_text("ED: 1\nES: 3\nNbFrame: 7\n")
    with pytest.raises(CineDataError, match="NbFrame 7 does not match the cine's 6 frames"):
        acdc_datalist(tmp_path)
    cfg.write_text("ES: 3\nNbFrame: 6\n")
    with pytest.raises(CineDataError, match="missing field ED"):
        read_info_cfg(cfg)


def test_missing_label_file_and_3d_cine(tmp_path, make_acdc_subject):
    folder = make_acdc_subject(tmp_path, es=3)
    (folder / "patient001_frame03_gt.nii.gz").unlink()
    with pytest.raises(CineDataError, match="patient001_frame03_gt.nii.gz: missing label file of frame 3"):
        acdc_datalist(tmp_path)
    assert acdc_datalist(tmp_path, require_labels=False)[0]["label_frames"] == [0]
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), str(folder / "patient001_4d.nii.gz"))
    with pytest.raises(CineDataError, match=r"patient001_4d.nii.gz: expected a 4D cine"):
        acdc_datalist(tmp_path)


def test_split_by_subject_keeps_subjects_and_links(tmp_path):
    datalist = [{"subject": f"p{i:02d}", "slice": z} for i in range(10) for z in range(3)]
    train, val = split_by_subject(datalist, (0.8, 0.2), seed=1, linked=[("p03", "p07")])
    assert len(train) + len(val) == 30
    train_s, val_s = {e["subject"] for e in train}, {e["subject"] for e in val}
    assert not train_s & val_s and len(train_s | val_s) == 10
    assert {"p03", "p07"} <= train_s or {"p03", "p07"} <= val_s
    assert split_by_subject(datalist, (0.8, 0.2), seed=1, linked=[("p03", "p07")]) == [train, val]
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_subject(datalist, (0.5, 0.2))
