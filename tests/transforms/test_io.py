from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_cardiac.data import acdc_datalist
from monai_cardiac.errors import CineDataError
from monai_cardiac.transforms.io import LoadCine, LoadCined


def test_load_slice_and_volume(tmp_path, make_acdc_subject):
    folder = make_acdc_subject(tmp_path, num_frames=6, num_slices=2, es=4, spacing=(1.5, 1.25, 8.0))
    path = folder / "patient001_4d.nii.gz"
    volume = LoadCine()(path)
    assert isinstance(volume, MetaTensor) and volume.shape == (6, 2, 24, 26)
    np.testing.assert_allclose(volume.pixdim, [8.0, 1.5, 1.25])
    np.testing.assert_array_equal(volume[:, 0, 0, 0], 1000.0 * np.arange(6))  # frames in file order
    one = LoadCine()(path, slice_index=1)
    assert one.shape == (6, 24, 26)
    np.testing.assert_allclose(one.pixdim, [1.5, 1.25])
    assert one.meta["slice"] == 1
    np.testing.assert_allclose(one.meta["original_affine"], np.diag([-1.5, -1.25, 8.0, 1.0]))
    with pytest.raises(CineDataError, match="slice 5 is outside the stack of 2 slices"):
        LoadCine()(path, slice_index=5)


def test_loadcined_sparse_labels(tmp_path, make_acdc_subject):
    make_acdc_subject(tmp_path, num_frames=6, num_slices=2, es=4, dense=True)
    entry = acdc_datalist(tmp_path)[1]
    d = LoadCined()(entry)
    assert d["image"].shape == d["label"].shape == d["dense_label"].shape == (6, 24, 26)
    assert d["label_mask"].tolist() == [True, False, False, True, False, False]
    assert d["label"][1].abs().sum() == 0  # unlabelled frames hold 0
    torch.testing.assert_close(d["label"][3], d["dense_label"][3])
    assert set(d["label"][0].unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert d["subject"] == "patient001" and d["es"] == 3


def test_loadcined_bad_entries(tmp_path, make_acdc_subject):
    folder = make_acdc_subject(tmp_path, num_frames=6, es=4)
    entry = acdc_datalist(tmp_path, per="volume")[0]
    with pytest.raises(CineDataError, match="2 label files but 1 label_frames"):
        LoadCined()({**entry, "label_frames": [0]})
    with pytest.raises(CineDataError, match="label frame 9 is outside the cine's 6 frames"):
        LoadCined()({**entry, "label_frames": [0, 9]})
    wrong = np.zeros((24, 26, 3), np.uint8)
    nib.save(nib.Nifti1Image(wrong, np.diag([-1.5, -1.25, 8.0, 1.0])), str(folder / "patient001_frame04_gt.nii.gz"))
    with pytest.raises(CineDataError, match=r"frame04_gt.nii.gz: shape \(Z, H, W\) \(3, 24, 26\) does not match"):
        LoadCined()(entry)
