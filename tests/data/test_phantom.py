"""Tests of the synthetic cine phantom: ground-truth consistency, physiology, determinism, ACDC layout."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_cardiac.data import acdc_datalist, read_info_cfg, read_nifti_cine, read_nifti_ddf, read_nifti_dense_labels
from monai_cardiac.data.phantom import PHANTOM_GROUPS, make_cine_phantom, write_phantom_dataset
from monai_cardiac.displacement import warp_image, warp_labels

torch.set_num_threads(1)


def dice_per_structure(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice of RV, Myo, LV between two label arrays of the same shape."""
    return np.array([2 * np.sum((a == k) & (b == k)) / max(np.sum(a == k) + np.sum(b == k), 1) for k in (1, 2, 3)])


def propagate_ed_labels(phantom: dict) -> np.ndarray:
    """ED labels warped (nearest neighbour) onto every frame with the true displacements."""
    labels = phantom["label"]
    ed = np.repeat(labels[:1], len(labels), axis=0)[:, None]
    return warp_labels(torch.from_numpy(ed), torch.from_numpy(phantom["ddf"])).numpy()[:, 0]


@pytest.fixture(scope="module")
def fine_2d():
    # 0.75 mm: nearest-neighbour sampling of a 5 mm wall is then accurate enough for Dice >= 0.95
    return make_cine_phantom(5, num_frames=16, spatial_size=(256, 256), spacing=(0.75, 0.75), noise_std=0.0,
                             bias_strength=0.0)


@pytest.fixture(scope="module")
def default_2d():
    return make_cine_phantom(1, num_frames=30, ejection_fraction=0.6, noise_std=0.0, bias_strength=0.0)


@pytest.fixture(scope="module")
def stack_3d():
    return make_cine_phantom(4, num_frames=13, num_slices=3, spatial_size=(256, 256), spacing=(0.75, 0.75),
                             noise_std=0.0, bias_strength=0.0)


@pytest.mark.parametrize("name", ["fine_2d", "stack_3d"])
def test_true_ddf_carries_ed_labels_onto_every_frame(name, request):
    phantom = request.getfixturevalue(name)
    warped = propagate_ed_labels(phantom)
    for t in range(len(warped)):
        dice = dice_per_structure(warped[t], phantom["label"][t])
        assert np.all(dice >= 0.95), (t, dice)
    assert np.array_equal(warped[0], phantom["label"][0])


def test_label_mismatches_are_only_sampling_of_the_ed_grid(default_2d):
    # at the default 1.5 mm, every voxel that nearest-neighbour propagation gets wrong has its true label
    # within the 3 x 3 ED voxels around the sampled point: the truth is consistent up to the grid
    labels, ddf = default_2d["label"], default_2d["ddf"]
    h, w = labels.shape[1:]
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for t in range(1, len(labels)):
        si = np.rint(ii + ddf[t, 0]).astype(int)
        sj = np.rint(jj + ddf[t, 1]).astype(int)
        found = np.zeros((h, w), bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                found |= labels[0][np.clip(si + di, 0, h - 1), np.clip(sj + dj, 0, w - 1)] == labels[t]
        assert found.all(), t


def test_true_ddf_carries_ed_image_onto_frames(default_2d):
    image, labels = default_2d["image"], default_2d["label"]
    t_count = len(image)
    warped = warp_image(torch.from_numpy(np.repeat(image[:1], t_count, 0)[:, None]),
                        torch.from_numpy(default_2d["ddf"])).numpy()[:, 0]
    heart = (labels > 0).any(axis=0)
    roi = np.zeros_like(heart)
    rows, cols = np.nonzero(heart)
    roi[rows.min() - 8 : rows.max() + 9, cols.min() - 8 : cols.max() + 9] = True
    err_warped = np.abs(warped - image)[:, roi].mean(axis=1)
    err_static = np.abs(image[:1] - image)[:, roi].mean(axis=1)
    es = default_2d["es"]
    assert err_warped[0] < 1e-6
    assert err_warped[es] < 0.15 * err_static[es]
    assert err_warped[1:].mean() < 0.2 * err_static[1:].mean()


def test_same_seed_same_arrays_other_seed_other_anatomy():
    a = make_cine_phantom(3, num_frames=13, spatial_size=(96, 96), spacing=(2.0, 2.0))
    b = make_cine_phantom(3, num_frames=13, spatial_size=(96, 96), spacing=(2.0, 2.0))
    c = make_cine_phantom(4, num_frames=13, spatial_size=(96, 96), spacing=(2.0, 2.0))
    for key in ("image", "label", "ddf", "lv_volume_ml"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["params"] == b["params"]
    assert a["params"]["lv_endocardial_radius_mm"] != c["params"]["lv_endocardial_radius_mm"]
    assert dice_per_structure(a["label"][0], c["label"][0]).mean() < 0.9
    # the anatomy does not depend on the frame count or the noise
    d = make_cine_phantom(3, num_frames=20, spatial_size=(96, 96), spacing=(2.0, 2.0), noise_std=0.0)
    np.testing.assert_array_equal(a["label"][0], d["label"][0])


def test_lv_volume_curve_is_physiological(default_2d):
    volume, es, t_count = default_2d["lv_volume_ml"], default_2d["es"], len(default_2d["lv_volume_ml"])
    assert int(np.argmin(volume)) == es
    assert abs((1 - volume[es] / volume[0]) - 0.6) < 0.05
    assert default_2d["ejection_fraction"] == 0.6
    assert 0 < es < t_count / 2  # systole shorter than diastole
    stroke = volume[0] - volume[es]
    ejection_rate = stroke / es
    filling_rate = (volume[-1] - volume[es]) / (t_count - 1 - es)
    assert ejection_rate > 1.5 * filling_rate
    phase = np.arange(t_count) / t_count
    rapid = (volume[es + 5] - volume[es]) / 5  # early diastole (phase ES + 0.17)
    dia = np.nonzero((phase >= 0.65) & (phase <= 0.77))[0]
    diastasis = (volume[dia[-1]] - volume[dia[0]]) / (dia[-1] - dia[0])
    kick = np.nonzero(phase >= 0.8)[0]
    atrial = (volume[-1] - volume[kick[0]]) / (t_count - 1 - kick[0])
    assert rapid > 4 * diastasis >= 0  # rapid filling, then a plateau
    assert atrial > 1.5 * diastasis  # late filling by the atrial kick
    voxels = 5 * 1.5 * 1.5 * 8.0 / 1000  # label counts wobble by a few voxels where the curve is flat
    assert np.all(np.diff(volume[: es + 1]) <= voxels) and np.all(np.diff(volume[es:]) >= -voxels)


@pytest.mark.parametrize("seed,ef", [(0, None), (7, 0.25)])
def test_ejection_fraction_from_labels_matches_the_drawn_one(seed, ef):
    phantom = make_cine_phantom(seed, num_frames=20, spatial_size=(96, 96), spacing=(2.0, 2.0), ejection_fraction=ef)
    volume, es = phantom["lv_volume_ml"], phantom["es"]
    if ef is not None:
        assert phantom["ejection_fraction"] == ef
    assert 0.12 <= phantom["ejection_fraction"] <= 0.8
    assert abs((1 - volume[es] / volume[0]) - phantom["ejection_fraction"]) < 0.05


def test_myocardium_thickens_at_constant_area(default_2d):
    labels, es = default_2d["label"], default_2d["es"]
    myo, cavity = (labels == 2).sum(axis=(1, 2)), (labels == 3).sum(axis=(1, 2))
    assert np.all(np.abs(myo / myo[0] - 1) < 0.1)
    thickness = np.sqrt((myo + cavity) / np.pi) - np.sqrt(cavity / np.pi)  # of the equivalent annulus, voxels
    assert thickness[es] > 1.2 * thickness[0]


def test_shapes_dtypes_geometry_and_zero_field_at_ed(default_2d, stack_3d):
    t_count = 30
    assert default_2d["image"].shape == (t_count, 128, 128) and default_2d["image"].dtype == np.float32
    assert default_2d["label"].shape == (t_count, 128, 128) and default_2d["label"].dtype == np.uint8
    assert default_2d["ddf"].shape == (t_count, 2, 128, 128) and default_2d["ddf"].dtype == np.float32
    assert default_2d["ed"] == 0 and default_2d["label_mask"].all() and default_2d["lv_volume_ml"].shape == (t_count,)
    assert set(np.unique(default_2d["label"])) == {0, 1, 2, 3}
    assert np.all(default_2d["ddf"][0] == 0) and np.abs(default_2d["ddf"][1:]).max() > 1
    assert default_2d["spacing"] == (1.5, 1.5)
    np.testing.assert_allclose(np.linalg.norm(default_2d["affine"][:3, :2], axis=0), [1.5, 1.5])

    assert stack_3d["image"].shape == (13, 3, 256, 256) and stack_3d["label"].shape == (13, 3, 256, 256)
    assert stack_3d["ddf"].shape == (13, 3, 3, 256, 256)
    assert np.all(stack_3d["ddf"][:, 0] == 0) and np.all(stack_3d["ddf"][0] == 0)
    assert stack_3d["spacing"] == (8.0, 0.75, 0.75)
    np.testing.assert_allclose(np.linalg.norm(stack_3d["affine"][:3, :3], axis=0), [8.0, 0.75, 0.75])
    # base to apex: the LV shrinks
    lv = (stack_3d["label"][0] == 3).sum(axis=(1, 2))
    assert lv[0] > lv[1] > lv[2] > 0


def test_true_motion_is_invertible(default_2d):
    ddf = default_2d["ddf"].astype(np.float64)
    d0 = np.gradient(ddf[:, 0], axis=(1, 2))
    d1 = np.gradient(ddf[:, 1], axis=(1, 2))
    jacobian = (1 + d0[0]) * (1 + d1[1]) - d0[1] * d1[0]
    assert jacobian.min() > 0.2


def test_noise_and_bias_change_only_the_image():
    clean = make_cine_phantom(2, num_frames=13, spatial_size=(96, 96), spacing=(2.0, 2.0), noise_std=0, bias_strength=0)
    noisy = make_cine_phantom(2, num_frames=13, spatial_size=(96, 96), spacing=(2.0, 2.0), noise_std=0.05)
    np.testing.assert_array_equal(clean["label"], noisy["label"])
    np.testing.assert_array_equal(clean["ddf"], noisy["ddf"])
    background = clean["image"] == 0  # air: Rician noise makes it positive with mean ~ sigma * sqrt(pi / 2)
    assert background.sum() > 1000
    assert abs(noisy["image"][background].mean() - 0.05 * np.sqrt(np.pi / 2)) < 0.01


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_frames": 1}, "num_frames"),
        ({"num_frames": 101}, "num_frames"),
        ({"spacing": (1.5, 0.0)}, "spacing"),
        ({"spatial_size": (8, 128)}, "spatial_size"),
        ({"spatial_size": (48, 48)}, "too small for this subject's heart"),
        ({"ejection_fraction": 0.95}, "ejection_fraction"),
        ({"group": "XYZ"}, "group"),
        ({"num_slices": 0}, "num_slices"),
        ({"slice_thickness": -1.0}, "slice_thickness"),
        ({"noise_std": -0.1}, "noise_std"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_cine_phantom(0, **kwargs)


def test_group_follows_a_given_ejection_fraction():
    assert make_cine_phantom(0, num_frames=13, spatial_size=(96, 96), spacing=(2.0, 2.0),
                             ejection_fraction=0.2)["group"] in ("DCM", "MINF")
    assert set(PHANTOM_GROUPS) == {"NOR", "DCM", "HCM", "MINF", "RV"}


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_phantom_dataset_acdc_layout(tmp_path):
    kwargs = dict(num_frames=13, num_slices=(1, 2), spatial_size=(64, 64), spacing=(3.0, 3.0))
    root = tmp_path / "phantom"
    folders = write_phantom_dataset(root, 2, seed=1, **kwargs)
    assert folders == [str(root / "patient001"), str(root / "patient002")]
    manifest = json.loads((root / "manifest.json").read_text())
    assert [e["patient"] for e in manifest["patients"]] == ["patient001", "patient002"]

    for entry in manifest["patients"]:
        name, folder = entry["patient"], root / entry["patient"]
        es, t_count, z_count = entry["ES"], entry["T"], entry["Z"]
        assert entry["ED"] == 0 and t_count == 13 and z_count in (1, 2) and entry["spacing_mm"] == [3.0, 3.0, 8.0]
        expected = {"Info.cfg", f"{name}_4d.nii.gz", f"{name}_4d_gt.nii.gz", f"{name}_ddf.nii.gz",
                    f"{name}_frame01.nii.gz", f"{name}_frame01_gt.nii.gz",
                    f"{name}_frame{es + 1:02d}.nii.gz", f"{name}_frame{es + 1:02d}_gt.nii.gz"}
        assert {p.name for p in folder.iterdir()} == expected
        info = (folder / "Info.cfg").read_text().splitlines()
        assert info[0] == "ED: 1" and info[1] == f"ES: {es + 1}" and info[4] == f"NbFrame: {t_count}"
        assert info[2].split(": ")[1] in PHANTOM_GROUPS
        assert read_info_cfg(folder / "Info.cfg") == {
            "ed": 0, "es": es, "num_frames": t_count, "group": info[2].split(": ")[1],
            "height": float(info[3].split(": ")[1]), "weight": float(info[5].split(": ")[1])}

        cine = nib.load(folder / f"{name}_4d.nii.gz")
        assert cine.shape == (64, 64, z_count, t_count)
        np.testing.assert_allclose(cine.header.get_zooms(), (3.0, 3.0, 8.0, 1.0))
        np.testing.assert_allclose(np.diag(cine.affine)[:3], (-3.0, -3.0, 8.0))
        dense = np.asarray(nib.load(folder / f"{name}_4d_gt.nii.gz").dataobj)
        assert dense.shape == (64, 64, z_count, t_count) and dense.dtype == np.uint8
        assert set(np.unique(dense)) <= {0, 1, 2, 3} and (dense == 3).any()
        ddf = nib.load(folder / f"{name}_ddf.nii.gz")
        assert ddf.shape == (64, 64, z_count, t_count, 2)
        for frame in (0, es):
            image = np.asarray(nib.load(folder / f"{name}_frame{frame + 1:02d}.nii.gz").dataobj)
            gt = np.asarray(nib.load(folder / f"{name}_frame{frame + 1:02d}_gt.nii.gz").dataobj)
            np.testing.assert_array_equal(image, cine.get_fdata(dtype=np.float32)[..., frame])
            np.testing.assert_array_equal(gt, dense[..., frame])

        # the project's readers load it unchanged, in the project's axis order
        loaded = read_nifti_cine(folder / f"{name}_4d.nii.gz")
        truth = make_cine_phantom(entry["seed"], num_frames=13, num_slices=z_count, spatial_size=(64, 64),
                                  spacing=(3.0, 3.0))
        np.testing.assert_array_equal(loaded.data, truth["image"])
        np.testing.assert_allclose(loaded.affine, truth["affine"])
        np.testing.assert_array_equal(read_nifti_ddf(folder / f"{name}_ddf.nii.gz", loaded), truth["ddf"])
        np.testing.assert_array_equal(read_nifti_dense_labels(folder / f"{name}_4d_gt.nii.gz", loaded), truth["label"])
    entries = acdc_datalist(root, per="volume")
    assert [e["es"] for e in entries] == [e["ES"] for e in manifest["patients"]]
    assert all("ddf" in e and "dense_label" in e for e in entries)

    # same arguments again: nothing is rewritten
    before = _mtimes(root)
    assert write_phantom_dataset(root, 2, seed=1, **kwargs) == folders
    assert _mtimes(root) == before

    # fewer subjects: the extra phantom subject's files go; subject 1 is the same whatever the count
    write_phantom_dataset(root, 1, seed=1, **kwargs)
    assert not (root / "patient002").exists()
    cine_path = root / "patient001" / "patient001_4d.nii.gz"
    assert _mtimes(root)[cine_path] == before[cine_path]
    # other arguments: regenerated
    write_phantom_dataset(root, 1, seed=1, **{**kwargs, "num_frames": 14})
    assert nib.load(root / "patient001" / "patient001_4d.nii.gz").shape[3] == 14


def test_write_phantom_dataset_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_subjects"):
        write_phantom_dataset(tmp_path, 0)
    with pytest.raises(ValueError, match="num_frames"):
        write_phantom_dataset(tmp_path, 1, num_frames=(20, 13))


def test_write_phantom_dataset_single_slices(tmp_path):
    write_phantom_dataset(tmp_path, 1, seed=3, num_frames=13, num_slices=None, spatial_size=(64, 64),
                          spacing=(3.0, 3.0))
    entry = json.loads((tmp_path / "manifest.json").read_text())["patients"][0]
    assert entry["Z"] == 1
    cine = read_nifti_cine(tmp_path / "patient001" / "patient001_4d.nii.gz")
    truth = make_cine_phantom(entry["seed"], num_frames=13, spatial_size=(64, 64), spacing=(3.0, 3.0))
    assert cine.data.shape == (13, 1, 64, 64)
    np.testing.assert_array_equal(cine.data[:, 0], truth["image"])
    ddf = read_nifti_ddf(tmp_path / "patient001" / "patient001_ddf.nii.gz", cine)
    np.testing.assert_array_equal(ddf[:, 1:, 0], truth["ddf"])
    assert np.all(ddf[:, 0] == 0)
    np.testing.assert_allclose(cine.affine[:3, 1:3], truth["affine"][:3, :2])


def test_an_akinetic_infarct_sector_does_not_shorten():
    """The true strain of an akinetic MINF stack: per AHA level one segment barely shortens, the others do."""
    from monai_cardiac.metrics import stack_strain

    kwargs = {"num_frames": 12, "spatial_size": (96, 96), "num_slices": 6, "noise_std": 0.0}
    akinetic = make_cine_phantom(2, akinetic=True, **kwargs)
    hypokinetic = make_cine_phantom(2, group="MINF", **kwargs)
    assert akinetic["group"] == "MINF" and akinetic["params"]["akinetic"] and not hypokinetic["params"]["akinetic"]
    np.testing.assert_array_equal(akinetic["label"][0], hypokinetic["label"][0])  # same anatomy at ED

    def peaks(p):
        strain = stack_strain(p["label"], p["ddf"][:, 1:], tuple(p["spacing"][1:]), es=int(p["es"]))
        levels: dict[str, list[float]] = {}
        for segment in strain["segments"].values():
            levels.setdefault(segment["level"], []).append(abs(segment["peak_circumferential_percent"]))
        return levels

    for level, magnitudes in peaks(akinetic).items():
        assert min(magnitudes) < 0.35 * float(np.median(magnitudes)), level
    weakest = {level: min(m) for level, m in peaks(hypokinetic).items()}
    assert all(min(m) < weakest[level] - 1.0 for level, m in peaks(akinetic).items())
    with pytest.raises(ValueError, match="akinetic needs group 'MINF'"):
        make_cine_phantom(2, group="NOR", akinetic=True, **kwargs)
