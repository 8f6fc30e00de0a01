from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from monai_cardiac.data import read_nifti_cine, read_nifti_labels
from monai_cardiac.errors import CineDataError


def _save(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def test_axis_order_and_affine(tmp_path):
    data = np.random.default_rng(0).normal(size=(5, 6, 3, 4)).astype(np.float32)  # (X, Y, Z, T)
    affine = np.diag([-1.5, -1.25, 8.0, 1.0])
    affine[:3, 3] = (10, 20, 30)
    cine = read_nifti_cine(_save(tmp_path / "c.nii.gz", data, affine))
    assert cine.data.shape == (4, 3, 5, 6)
    np.testing.assert_array_equal(cine.data[2, 1, 4, 5], data[4, 5, 1, 2])
    np.testing.assert_allclose(cine.spacing, [8.0, 1.5, 1.25])
    # array index (z, h, w) maps to the same world point as file index (i, j, k) = (h, w, z)
    np.testing.assert_allclose(cine.affine @ [1, 2, 3, 1], affine @ [2, 3, 1, 1])


def test_bad_cines(tmp_path):
    with pytest.raises(CineDataError, match="nope.nii.gz: file not found"):
        read_nifti_cine(tmp_path / "nope.nii.gz")
    good = _save(tmp_path / "good.nii.gz", np.ones((4, 4, 2, 3), np.float32))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(CineDataError, match="truncated.nii.gz: cannot read NIfTI"):
        read_nifti_cine(truncated)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"not a nifti at all" * 30))
    with pytest.raises(CineDataError, match="garbage.nii.gz: cannot read NIfTI"):
        read_nifti_cine(garbage)
    with pytest.raises(CineDataError, match=r"expected a 4D cine \(X, Y, Z, T\) but the image is 3D"):
        read_nifti_cine(_save(tmp_path / "three.nii.gz", np.ones((4, 4, 2), np.float32)))
    with pytest.raises(CineDataError, match="at least 2 frames"):
        read_nifti_cine(_save(tmp_path / "one.nii.gz", np.ones((4, 4, 2, 1), np.float32)))
    data = np.ones((4, 4, 2, 3), np.float32)
    data[0, 0, 0, 0], data[1, 1, 1, 1] = np.nan, np.inf
    with pytest.raises(CineDataError, match=r"nan.nii.gz: image holds non-finite voxels \(1 NaN, 1 inf\)"):
        read_nifti_cine(_save(tmp_path / "nan.nii.gz", data))


def test_bad_labels(tmp_path):
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    cine = read_nifti_cine(_save(tmp_path / "c.nii.gz", np.ones((4, 5, 2, 3), np.float32), affine))
    lab = np.zeros((4, 5, 2), np.uint8)
    lab[1, 1, 0] = 3
    out = read_nifti_labels(_save(tmp_path / "ok.nii.gz", lab, affine), cine)
    assert out.shape == (2, 4, 5) and out[0, 1, 1] == 3
    assert read_nifti_labels(tmp_path / "ok.nii.gz", cine, label_map=[0, 3, 2, 1])[0, 1, 1] == 1
    with pytest.raises(CineDataError, match=r"shape.nii.gz: shape \(Z, H, W\) \(2, 5, 4\) does not match"):
        read_nifti_labels(_save(tmp_path / "shape.nii.gz", np.zeros((5, 4, 2), np.uint8), affine), cine)
    with pytest.raises(CineDataError, match=r"spacing.nii.gz: spacing \[1.0, 1.0, 8.0\] mm does not match"):
        read_nifti_labels(_save(tmp_path / "spacing.nii.gz", lab, np.diag([1.0, 1.0, 8.0, 1.0])), cine)
    bad = lab.copy()
    bad[0, 0, 0] = 7
    outside = r"values.nii.gz: label values outside the classes \[0, 1, 2, 3\]: found \[7\]"
    with pytest.raises(CineDataError, match=outside):
        read_nifti_labels(_save(tmp_path / "values.nii.gz", bad, affine), cine)
    with pytest.raises(CineDataError, match="non-integer"):
        read_nifti_labels(_save(tmp_path / "float.nii.gz", lab + np.float32(0.5), affine), cine)
    with pytest.raises(CineDataError, match="expected a 3D label map"):
        read_nifti_labels(_save(tmp_path / "4d.nii.gz", np.zeros((4, 5, 2, 2), np.uint8), affine), cine)
