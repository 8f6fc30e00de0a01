from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_cardiac.data import acdc_datalist, make_cine_phantom, write_phantom_dataset
from monai_cardiac.displacement import warp_image, warp_labels
from monai_cardiac.metrics import compute_dice, ejection_fraction
from monai_cardiac.transforms import LoadCined


def _propagated_dice(phantom: dict, mode: str = "nearest") -> np.ndarray:
    """Dice (T, 3) of the ED labels warped with the true u_{ED->t} against every frame's true labels."""
    labels = torch.as_tensor(phantom["label"]).long()
    ddf = torch.as_tensor(phantom["ddf"])
    t = labels.shape[0]
    if labels.ndim == 4:  # (T, Z, H, W): warp each slice in-plane, slices as batch, score the whole stack
        z, spatial = labels.shape[1], labels.shape[2:]
        ed = labels[:1].expand(t, -1, -1, -1).reshape(t * z, 1, *spatial)
        inplane = ddf[:, 1:].permute(0, 2, 1, 3, 4).reshape(t * z, 2, *spatial)
        warped = warp_labels(ed, inplane, mode=mode).reshape(t, 1, z, *spatial)
        return compute_dice(warped, labels[:, None], num_classes=4).numpy()
    ed = labels[:1][:, None].expand(t, 1, *labels.shape[1:])
    return compute_dice(warp_labels(ed, ddf, mode=mode), labels[:, None], num_classes=4).numpy()


@pytest.mark.parametrize("num_slices", [None, 4])
def test_true_motion_reproduces_every_frame_labels(num_slices):
    """The acceptance test of the ground truth: every frame, every structure, nearest-neighbour warping.

    At 1 mm voxels. At the default 1.5 mm the thin myocardium loses up to ~0.07 Dice on single systolic
    frames to discretisation alone (half a voxel at each boundary of the discrete ED labels, stretched by
    the thickening); the frame mean stays >= 0.95 with one-hot warping (checked below).
    """
    phantom = make_cine_phantom(seed=7, num_frames=16, num_slices=num_slices, spacing=(1.0, 1.0),
                                spatial_size=(192, 192))
    dice = _propagated_dice(phantom)
    assert dice.shape == (16, 3)
    assert dice.min() >= 0.95, dice.min(axis=0)
    coarse = make_cine_phantom(seed=7, num_frames=16, num_slices=num_slices)
    assert _propagated_dice(coarse, mode="onehot").mean(axis=0).min() >= 0.95
    # and the motion is not trivial: without it the ES labels differ a lot from ED
    labels = torch.as_tensor(phantom["label"]).long()
    es = phantom["es"]
    still = compute_dice(labels[es][None, None], labels[0][None, None], num_classes=4).numpy()
    assert still.min() < 0.9


def test_true_motion_warps_the_ed_image_onto_each_frame():
    phantom = make_cine_phantom(seed=3, num_frames=14, noise_std=0.0, bias_strength=0.0)
    image = torch.as_tensor(phantom["image"])
    es = phantom["es"]
    warped = warp_image(image[:1][None], torch.as_tensor(phantom["ddf"][es])[None])[0, 0]
    err_warped = (warped - image[es]).abs().mean()
    err_still = (image[0] - image[es]).abs().mean()
    assert err_warped < 0.25 * err_still


def test_deterministic_by_seed_and_shapes():
    a = make_cine_phantom(seed=11, num_frames=13, spatial_size=(96, 96))
    b = make_cine_phantom(seed=11, num_frames=13, spatial_size=(96, 96))
    c = make_cine_phantom(seed=12, num_frames=13, spatial_size=(96, 96))
    for key in ("image", "label", "ddf"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["label"][0], c["label"][0])
    assert a["image"].shape == (13, 96, 96) and a["image"].dtype == np.float32
    assert a["label"].dtype == np.uint8 and set(np.unique(a["label"])) == {0, 1, 2, 3}
    assert a["ddf"].shape == (13, 2, 96, 96) and not a["ddf"][0].any()
    stack = make_cine_phantom(seed=11, num_frames=13, spatial_size=(96, 96), num_slices=3)
    assert stack["ddf"].shape == (13, 3, 3, 96, 96) and not stack["ddf"][:, 0].any()
    np.testing.assert_allclose(stack["spacing"], (8.0, 1.5, 1.5))


def test_volume_curve_is_physiological():
    phantom = make_cine_phantom(seed=5, num_frames=30, ejection_fraction=0.55)
    lv = phantom["lv_volume_ml"]
    es = phantom["es"]
    assert int(np.argmin(lv)) == es and es < 15  # ES in the first half: systole is faster than diastole
    edv, esv, ef = ejection_fraction(lv, ed=0, es=es)
    assert abs(ef - 0.55) < 0.05
    # filling: rapid after ES, a flatter diastasis, then the atrial kick at the end
    rapid = lv[es + 4] - lv[es]
    late = lv[-1] - lv[-5]
    diastasis = abs(lv[int(0.7 * 30)] - lv[int(0.6 * 30)])
    assert rapid > 0 and late > 0 and diastasis < 0.5 * min(rapid, late)


def test_myocardium_thickens_while_its_area_is_kept():
    phantom = make_cine_phantom(seed=2, num_frames=20, noise_std=0.0, ejection_fraction=0.6)
    labels, es = phantom["label"], phantom["es"]
    myo_ed, myo_es = (labels[0] == 2).sum(), (labels[es] == 2).sum()
    assert abs(myo_es - myo_ed) / myo_ed < 0.1
    # mean thickness ~ area / mean circumference; the cavity shrinks, so the wall thickens
    cavity_ed, cavity_es = (labels[0] == 3).sum(), (labels[es] == 3).sum()
    thick_ed = np.sqrt((myo_ed + cavity_ed) / np.pi) - np.sqrt(cavity_ed / np.pi)
    thick_es = np.sqrt((myo_es + cavity_es) / np.pi) - np.sqrt(cavity_es / np.pi)
    assert thick_es > 1.2 * thick_ed


def test_write_phantom_dataset_acdc_layout(tmp_path):
    folders = write_phantom_dataset(tmp_path, num_subjects=2, seed=4, num_frames=(13, 15), spatial_size=(96, 96))
    assert [f.rsplit("/", 1)[-1] for f in folders] == ["patient001", "patient002"]
    info = dict(line.split(": ") for line in (tmp_path / "patient001" / "Info.cfg").read_text().splitlines())
    manifest = json.loads((tmp_path / "manifest.json").read_text())["patients"][0]
    assert int(info["ED"]) == 1 and int(info["ES"]) == manifest["ES"] + 1 and 13 <= int(info["NbFrame"]) <= 15
    datalist = acdc_datalist(tmp_path)
    d = LoadCined()(datalist[0])
    assert d["label_mask"].nonzero().flatten().tolist() == [0, manifest["ES"]]
    torch.testing.assert_close(d["label"][manifest["ES"]], d["dense_label"][manifest["ES"]])
    assert set(d["dense_label"].unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    # the files hold the phantom itself: the ED frame and the true motion round-trip
    seed = manifest["seed"]
    phantom = make_cine_phantom(seed=seed, num_frames=d["image"].shape[0], spatial_size=(96, 96))
    np.testing.assert_allclose(d["image"].numpy(), phantom["image"], atol=1e-6)
    np.testing.assert_allclose(d["ddf"].numpy(), phantom["ddf"], atol=1e-6)
    # a second call with the same arguments reuses everything
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.nii.gz")}
    write_phantom_dataset(tmp_path, num_subjects=2, seed=4, num_frames=(13, 15), spatial_size=(96, 96))
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.nii.gz")} == mtimes
    with pytest.raises(ValueError, match="num_frames"):
        write_phantom_dataset(tmp_path / "bad", num_subjects=1, num_frames=(20, 10))
