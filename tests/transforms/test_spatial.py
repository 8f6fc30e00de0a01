"""Tests of the in-plane transforms: cropping around the heart and resampling to a target spacing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from monai_cardiac.errors import CineDataError
from monai_cardiac.transforms.spatial import (
    CropAroundHeart,
    CropAroundHeartd,
    ResampleInPlane,
    ResampleInPlaned,
    heart_center,
)

T, H, W = 6, 48, 48


def _disc(center, radius, shape=(H, W)) -> torch.Tensor:
    """Bool disc of ``radius`` voxels around ``center`` (h, w)."""
    rows, cols = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2


def _labelled_cine(center=(30, 18), shape=(H, W)):
    """Noisy cine with a bright LV disc at ``center``, labels 3 on frames 0 and 3 only, and the mask."""
    gen = torch.Generator().manual_seed(0)
    disc = _disc(center, 5, shape)
    image = torch.rand((T, *shape), generator=gen) * 0.2 + disc.float()
    label = torch.zeros(T, *shape)
    label[[0, 3]] = 3.0 * disc
    mask = torch.tensor([t in (0, 3) for t in range(T)])
    affine = torch.diag(torch.tensor([1.25, 1.25, 8.0, 1.0], dtype=torch.float64))
    return MetaTensor(image, affine=affine), MetaTensor(label, affine=affine), mask


def _centroid(x: torch.Tensor) -> tuple[float, float]:
    rows, cols = torch.nonzero(x, as_tuple=True)
    return float(rows.float().mean()), float(cols.float().mean())


def test_heart_center_from_labels_ignores_unlabelled_frames():
    image, label, mask = _labelled_cine()
    assert heart_center(image, label, mask) == (30, 18)
    # a stray label on an unlabelled frame is ignored when the mask is given
    label[1, 2:6, 40:44] = 1
    assert heart_center(image, label, mask) == (30, 18)


def test_heart_center_fallback_on_moving_disc_and_static_image():
    gen = torch.Generator().manual_seed(1)
    static = torch.rand(H, W, generator=gen)  # a noisy background that does not move
    frames = [static + 2.0 * _disc((14, 33), 5 + 3 * math.sin(math.pi * t / T)).float() for t in range(T)]
    cine = torch.stack(frames) + 0.02 * torch.randn(T, H, W, generator=gen)  # plus a little temporal noise
    center = heart_center(cine)
    assert abs(center[0] - 14) <= 1 and abs(center[1] - 33) <= 1
    # with labels that are all empty the fallback is used as well
    assert heart_center(cine, torch.zeros(T, H, W), torch.ones(T, dtype=torch.bool)) == center
    # a static image (or a single frame) has nothing that moves: the image centre
    assert heart_center(torch.stack([static[:40, :30]] * T)) == (20, 15)
    assert heart_center(cine[:1]) == (H // 2, W // 2)


def test_heart_center_does_not_move_when_the_field_of_view_is_padded():
    gen = torch.Generator().manual_seed(2)
    frames = [torch.rand(H, W, generator=gen) * 0.05 + 2.0 * _disc((20, 30), 6 + 3 * math.sin(math.pi * t / T)).float()
              for t in range(T)]
    frames = [f + 0.3 * _disc((40, 10), 3).float() * (t % 2) for t, f in enumerate(frames)]  # a small flicker
    cine = torch.stack(frames)
    center = heart_center(cine)
    assert abs(center[0] - 20) <= 1 and abs(center[1] - 30) <= 1
    padded = torch.nn.functional.pad(cine, (50, 70, 40, 60))  # (W left, W right, H top, H bottom)
    assert heart_center(padded) == (center[0] + 40, center[1] + 50)
    with pytest.raises(ValueError, match="top_voxels"):
        heart_center(cine, top_voxels=0)


def test_heart_center_bad_input():
    with pytest.raises(CineDataError, match="expected a cine"):
        heart_center(torch.zeros(H, W))
    with pytest.raises(CineDataError, match="do not match"):
        heart_center(torch.zeros(T, H, W), torch.zeros(T, H, W + 1))


def test_crop_centres_disc_and_inverse_restores_grid():
    image, label, mask = _labelled_cine(center=(30, 18))
    crop = CropAroundHeart(32)
    out = crop(image, label=label, label_mask=mask)
    assert out.shape == (T, 32, 32)
    # window [30 - 16, 30 + 16) x [18 - 16, 18 + 16): the disc centre is at the ROI centre (16, 16)
    assert torch.equal(out.as_tensor(), image.as_tensor()[:, 14:46, 2:34])
    assert np.allclose(_centroid(out[0] > 0.9), (16, 16), atol=1)
    # the affine follows the crop: output voxel (0, 0) is input voxel (14, 2)
    assert torch.allclose(out.affine @ torch.tensor([0.0, 0, 0, 1], dtype=torch.float64),
                          image.affine @ torch.tensor([14.0, 2, 0, 1], dtype=torch.float64))
    assert len(out.applied_operations) == 1
    back = crop.inverse(out)
    assert back.shape == image.shape and torch.allclose(back.affine, image.affine)
    assert torch.equal(back[:, 14:46, 2:34], image[:, 14:46, 2:34])
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[14:46, 2:34] = False
    assert back[:, outside].abs().max() == 0 and len(back.applied_operations) == 0


def test_crop_pads_small_image_and_inverts():
    image, label, mask = _labelled_cine(center=(8, 12), shape=(20, 24))
    crop = CropAroundHeart((32, 30))
    out = crop(image, label=label, label_mask=mask)
    assert out.shape == (T, 32, 30)
    # centre (8, 12) goes to (16, 15): the image sits at rows 8..27, columns 3..26, zeros around it
    assert torch.equal(out[:, 8:28, 3:27].as_tensor(), image.as_tensor())
    assert torch.isclose(out.sum(), image.sum())
    assert np.allclose(_centroid(out[0] > 0.9), (16, 15), atol=1)
    back = crop.inverse(out)
    assert torch.equal(back.as_tensor(), image.as_tensor()) and torch.allclose(back.affine, image.affine)


def test_crop_stack_uses_one_centre_for_all_slices():
    image, label, mask = _labelled_cine(center=(30, 18))
    gen = torch.Generator().manual_seed(2)
    stack = MetaTensor(torch.rand(T, 3, H, W, generator=gen))
    stack_label = torch.zeros(T, 3, H, W)
    stack_label[:, 1] = label  # only the middle slice is labelled
    out = CropAroundHeart(32)(stack, label=stack_label, label_mask=mask)
    assert out.shape == (T, 3, 32, 32)
    assert torch.equal(out.as_tensor(), stack.as_tensor()[:, :, 14:46, 2:34])


def test_crop_rejects_centre_outside():
    with pytest.raises(ValueError, match="not an in-plane voxel"):
        CropAroundHeart(16)(torch.zeros(T, H, W), center=(H, 3))


def test_cropd_same_window_for_all_keys_and_invertd():
    image, label, mask = _labelled_cine(center=(30, 18))
    pipeline = Compose([CropAroundHeartd(("image", "label"), roi_size=32)])
    d = pipeline({"image": image, "label": label, "label_mask": mask})
    assert torch.equal(d["label"].as_tensor(), label.as_tensor()[:, 14:46, 2:34])
    assert torch.equal(d["label_mask"], mask)
    d["pred"] = d["label"].clone()
    inverted = Invertd("pred", transform=pipeline, orig_keys="image")(d)
    assert torch.equal(inverted["pred"].as_tensor(), label.as_tensor())  # the disc lies inside the window


def _oblique_affine(spacing=(1.25, 1.25, 8.0)) -> torch.Tensor:
    """Affine of a double-oblique short-axis stack: columns (k, i, j) of unit directions times spacing."""
    a, b = 0.4, -0.7
    ca, sa, cb, sb = math.cos(a), math.sin(a), math.cos(b), math.sin(b)
    rot_x = torch.tensor([[1, 0, 0], [0, ca, -sa], [0, sa, ca]], dtype=torch.float64)
    rot_z = torch.tensor([[cb, -sb, 0], [sb, cb, 0], [0, 0, 1]], dtype=torch.float64)
    directions = rot_z @ rot_x
    affine = torch.eye(4, dtype=torch.float64)
    # spatial axes (Z, H, W): Z along the third direction, H and W along the first two
    affine[:3, 0] = directions[:, 2] * spacing[2]
    affine[:3, 1] = directions[:, 0] * spacing[0]
    affine[:3, 2] = directions[:, 1] * spacing[1]
    affine[:3, 3] = torch.tensor([10.0, -20.0, 30.0])
    return affine


def _smooth_image(shape) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.linspace(0, 1, shape[-2]), torch.linspace(0, 1, shape[-1]), indexing="ij")
    return (torch.sin(3 * rows) * torch.cos(2 * cols)).expand(shape).clone()


def test_resample_in_plane_stack_keeps_z():
    affine = _oblique_affine()
    stack = MetaTensor(_smooth_image((4, 3, 40, 36)), affine=affine)
    resample = ResampleInPlane((1.0, 2.5))
    out = resample(stack)
    # MONAI's Spacing keeps the span of the voxel centres: (n - 1) d / d' + 1 voxels, rounded
    assert out.shape == (4, 3, 50, 18)  # 39 x 1.25 / 1.0 + 1 = 49.75, 35 x 1.25 / 2.5 + 1 = 18.5
    spacing = torch.linalg.norm(out.affine[:3, :3], dim=0)
    assert torch.allclose(spacing, torch.tensor([8.0, 1.0, 2.5], dtype=torch.float64))
    assert torch.allclose(out.affine[:3, 0], affine[:3, 0])  # the slice axis is untouched
    directions = out.affine[:3, 1:3] / spacing[1:]
    assert torch.allclose(directions, affine[:3, 1:3] / 1.25)  # orientation kept
    back = resample.inverse(out)
    assert back.shape == stack.shape and torch.allclose(back.affine, affine)
    assert (back - stack)[:, :, 2:-2, 2:-2].abs().max() < 0.05


def test_resample_in_plane_oblique_slice_uses_true_spacing():
    affine = _oblique_affine()
    slice_affine = torch.eye(4, dtype=torch.float64)
    slice_affine[:3, :3] = affine[:3, [1, 2, 0]]  # a slice's affine maps (h, w) and keeps the normal third
    slice_affine[:3, 3] = affine[:3, 3]
    cine = MetaTensor(_smooth_image((4, 40, 36)), affine=slice_affine)
    resample = ResampleInPlane(1.5)
    out = resample(cine)
    assert out.shape == (4, 34, 30)  # 39 x 1.25 / 1.5 + 1 = 33.5, 35 x 1.25 / 1.5 + 1 = 30.2
    spacing = torch.linalg.norm(out.affine[:3, :3], dim=0)
    assert torch.allclose(spacing, torch.tensor([1.5, 1.5, 8.0], dtype=torch.float64))
    assert torch.allclose(out.affine[:3, 2], slice_affine[:3, 2])
    back = resample.inverse(out)
    assert back.shape == cine.shape and torch.allclose(back.affine, slice_affine)
    assert (back - cine)[:, 2:-2, 2:-2].abs().max() < 0.05


def test_resample_in_planed_labels_nearest_and_invertd():
    image, label, mask = _labelled_cine()
    label[label > 0] = 2.0
    label[:, 30, 18] = 1.0
    pipeline = Compose([ResampleInPlaned(("image", "label"), spacing=(0.625, 0.625))])
    d = pipeline({"image": image, "label": label, "label_mask": mask})
    assert d["image"].shape == (T, 95, 95) and d["label"].shape == (T, 95, 95)  # 47 x 2 + 1
    assert set(torch.unique(d["label"]).tolist()) == {0.0, 1.0, 2.0}
    d["pred"] = d["label"].clone()
    inverted = Invertd("pred", transform=pipeline, orig_keys="label")(d)
    assert torch.equal(inverted["pred"].as_tensor(), label.as_tensor())


def test_resample_in_plane_needs_meta_tensor():
    with pytest.raises(CineDataError, match="MetaTensor"):
        ResampleInPlane()(torch.zeros(T, H, W))


def test_full_pipeline_inverts_a_prediction_onto_the_input_grid():
    from monai_cardiac.transforms.temporal import ReorderFromEDd, ResampleFramesd

    num_frames = 7
    affine = torch.diag(torch.tensor([8.0, 1.25, 1.25, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.rand(num_frames, 3, 40, 44), affine=affine)
    label = torch.zeros(num_frames, 3, 40, 44)
    label[2, :, 10:20, 12:22] = 3
    label[5, :, 11:19, 13:21] = 3
    label = MetaTensor(label, affine=affine)
    mask = torch.tensor([t in (2, 5) for t in range(num_frames)])
    keys = ("image", "label")
    pipeline = Compose([
        ReorderFromEDd(keys),
        ResampleFramesd(keys, num_frames=10),
        ResampleInPlaned(keys, spacing=1.0),
        CropAroundHeartd(keys, roi_size=32),
    ])
    d = pipeline({"image": image, "label": label, "label_mask": mask, "ed": 2, "es": 5, "label_frames": [2, 5]})
    assert d["image"].shape == (10, 3, 32, 32)
    # ES: frame 3 after the roll, at time 3 x 9 / 6 = 4.5 -> new frame 5
    assert (d["ed"], d["es"], d["label_frames"]) == (0, 5, [0, 5])
    d["pred"] = d["label"].clone()
    inverted = Invertd("pred", transform=pipeline, orig_keys="label")(d)
    assert torch.equal(inverted["pred"].as_tensor(), label.as_tensor())
    assert torch.allclose(inverted["pred"].affine, affine)
