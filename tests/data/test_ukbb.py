from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from monai_cardiac.data import UKBB_LABEL_MAP, ukbb_datalist
from monai_cardiac.errors import CineDataError
from monai_cardiac.transforms.io import LoadCined


def _subject(root, name="1000001", es=4, with_es_image=True):
    folder = root / name
    folder.mkdir(parents=True)
    affine = np.diag([1.8, 1.8, 10.0, 1.0])
    cine = np.random.default_rng(1).normal(size=(12, 10, 2, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(cine, affine), str(folder / "sa.nii.gz"))
    lab = np.zeros((12, 10, 2), np.uint8)
    lab[2:4, 2:4] = 1  # UK Biobank LV
    lab[6:8, 6:8] = 3  # UK Biobank RV
    nib.save(nib.Nifti1Image(lab, affine), str(folder / "label_sa_ED.nii.gz"))
    nib.save(nib.Nifti1Image(lab, affine), str(folder / "seg_sa_ES.nii.gz"))
    if with_es_image:
        nib.save(nib.Nifti1Image(cine[..., es], affine), str(folder / "sa_ES.nii.gz"))
    return folder


def test_ukbb_datalist_finds_es_and_remaps_labels(tmp_path):
    _subject(tmp_path, es=5)
    datalist = ukbb_datalist(tmp_path, per="slice")
    assert len(datalist) == 2
    entry = datalist[1]
    assert (entry["ed"], entry["es"], entry["label_frames"], entry["slice"]) == (0, 5, [0, 5], 1)
    assert entry["label"][1].endswith("seg_sa_ES.nii.gz")
    loaded = LoadCined()(entry)
    assert loaded["image"].shape == (8, 12, 10)
    assert loaded["label_mask"].nonzero().flatten().tolist() == [0, 5]
    assert loaded["label"][5, 2, 2] == 3 and loaded["label"][5, 6, 6] == 1  # LV -> 3, RV -> 1
    assert list(UKBB_LABEL_MAP) == [0, 3, 2, 1]


def test_ukbb_es_unknown(tmp_path):
    _subject(tmp_path, with_es_image=False)
    with pytest.raises(CineDataError, match="cannot tell the ES frame"):
        ukbb_datalist(tmp_path)
    assert ukbb_datalist(tmp_path, per="volume", es_frames={"1000001": 3})[0]["es"] == 3
    with pytest.raises(CineDataError, match="ES frame 9 is outside the frames 0..7"):
        ukbb_datalist(tmp_path, es_frames={"1000001": 9})
