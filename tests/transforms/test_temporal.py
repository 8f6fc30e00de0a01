"""Tests of the time-axis transforms: reorder from ED, frame resampling, random frame subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from monai_cardiac.errors import CineDataError
from monai_cardiac.transforms.temporal import (
    RandFrameSubsetd,
    ReorderFromED,
    ReorderFromEDd,
    ResampleFrames,
    ResampleFramesd,
    labelled_frame_sources,
    nearest_resampled_frame,
)

T, H, W = 6, 8, 9


def _cine(num_frames: int = T) -> MetaTensor:
    """Frame t holds the value t everywhere, plus a fixed spatial pattern, so frame order is readable."""
    pattern = torch.arange(H * W, dtype=torch.float32).reshape(H, W) / 1000
    data = torch.arange(num_frames, dtype=torch.float32)[:, None, None] + pattern
    affine = torch.diag(torch.tensor([1.5, 1.25, 8.0, 1.0]))
    return MetaTensor(data, affine=affine, meta={"filename_or_obj": "cine.nii.gz"})


def _entry(num_frames: int = T, labelled=(1, 4), ed: int = 1, es: int = 4) -> dict:
    """A loaded data-list entry: the image, labels (frame t labelled with value t % 3 + 1), mask and indices."""
    image = _cine(num_frames)
    mask = torch.zeros(num_frames, dtype=torch.bool)
    mask[list(labelled)] = True
    label = torch.zeros(num_frames, H, W)
    for t in labelled:
        label[t, 2:5, 3:6] = t % 3 + 1
    return {
        "image": image,
        "label": MetaTensor(label, affine=image.affine, meta={"filename_or_obj": "cine.nii.gz"}),
        "label_mask": mask,
        "ed": ed,
        "es": es,
        "label_frames": list(labelled),
        "num_frames": num_frames,
    }


def _frame_values(x: torch.Tensor) -> list[int]:
    """The frame number written into each frame by :func:`_cine` (value at voxel (0, 0))."""
    return [round(float(v)) for v in x[:, 0, 0]]


def test_reorder_rolls_and_inverts_exactly():
    cine = _cine()
    reorder = ReorderFromED()
    out = reorder(cine, ed=2)
    assert _frame_values(out) == [2, 3, 4, 5, 0, 1]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, cine.affine)
    back = reorder.inverse(out)
    assert torch.equal(back.as_tensor(), cine.as_tensor())
    assert len(back.applied_operations) == 0


def test_reorder_plain_tensor_keeps_type():
    out = ReorderFromED(ed=1)(torch.arange(4.0)[:, None, None].expand(4, 2, 2))
    assert type(out) is torch.Tensor
    assert out[:, 0, 0].tolist() == [1.0, 2.0, 3.0, 0.0]


def test_reorder_bad_ed_raises():
    with pytest.raises(CineDataError, match="cine.nii.gz.*ED frame 6"):
        ReorderFromED()(_cine(), ed=6)
    with pytest.raises(CineDataError, match="frame sequence"):
        ReorderFromED()(torch.zeros(H, W), ed=0)


def test_reorderd_updates_indices_and_mask():
    d = ReorderFromEDd(("image", "label"))(_entry(labelled=(1, 4), ed=1, es=4))
    assert _frame_values(d["image"]) == [1, 2, 3, 4, 5, 0]
    assert d["ed"] == 0 and d["es"] == 3 and d["label_frames"] == [0, 3]
    assert d["label_mask"].tolist() == [True, False, False, True, False, False]
    # the labels moved with the frames: frame 0 now holds the labels of former frame 1 (value 2)
    assert d["label"][0].max() == 2 and d["label"][3].max() == 2 and d["label"][1].max() == 0


def test_reorderd_inverse_and_invertd_restore_everything():
    entry = _entry(labelled=(0, 3), ed=3, es=5)
    reorder = ReorderFromEDd(("image", "label"))
    d = reorder(entry)
    assert d["label_frames"] == [3, 0] and d["es"] == 2
    back = reorder.inverse(d)
    assert torch.equal(back["image"].as_tensor(), entry["image"].as_tensor())
    assert torch.equal(back["label"].as_tensor(), entry["label"].as_tensor())
    assert torch.equal(back["label_mask"], entry["label_mask"])
    assert (back["ed"], back["es"], back["label_frames"]) == (3, 5, [0, 3])
    # a prediction on the reordered grid goes back onto the input frames through Invertd
    pipeline = Compose([reorder])
    d = pipeline(_entry(labelled=(0, 3), ed=3, es=5))
    d["pred"] = d["image"].clone()
    inverted = Invertd("pred", transform=pipeline, orig_keys="image")(d)
    assert _frame_values(inverted["pred"]) == list(range(T))


def test_reorderd_missing_ed_or_mismatched_frames_raise():
    entry = _entry()
    del entry["ed"]
    with pytest.raises(CineDataError, match="cine.nii.gz.*no 'ed'"):
        ReorderFromEDd(("image", "label"))(entry)
    entry = _entry()
    entry["label_mask"] = torch.zeros(T + 1, dtype=torch.bool)
    with pytest.raises(CineDataError, match="label_mask has shape"):
        ReorderFromEDd(("image", "label"))(entry)


def test_nearest_frame_mapping():
    assert [nearest_resampled_frame(t, 6, 6) for t in range(6)] == list(range(6))
    # 6 -> 11 frames: new frame of t is 2 t exactly
    assert [nearest_resampled_frame(t, 6, 11) for t in range(6)] == [0, 2, 4, 6, 8, 10]
    # 11 -> 6 frames: 2 t / 2, halves round up
    assert [nearest_resampled_frame(t, 11, 6) for t in range(11)] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert nearest_resampled_frame(0, 1, 5) == 0


def test_resample_same_length_is_identity():
    cine = _cine()
    assert torch.equal(ResampleFrames(T)(cine).as_tensor(), cine.as_tensor())
    assert torch.equal(ResampleFrames(T, mode="nearest")(cine).as_tensor(), cine.as_tensor())


def test_resample_linear_values_and_round_trip():
    # a smooth sequence: a slow sine over the frames, different at each voxel
    t = torch.arange(T, dtype=torch.float64)
    phase = torch.linspace(0, 1, H * W, dtype=torch.float64).reshape(H, W)
    cine = MetaTensor(torch.sin(0.3 * t[:, None, None] + phase).float())
    resample = ResampleFrames(11)
    up = resample(cine)
    assert up.shape == (11, H, W)
    # frames 0, 2, 4, ... are the original frames; odd frames are the midpoints of their neighbours
    assert torch.allclose(up[::2], cine, atol=1e-6)
    assert torch.allclose(up[1], (cine[0] + cine[1]) / 2, atol=1e-6)
    back = resample.inverse(up)
    assert back.shape == cine.shape and torch.allclose(back, cine, atol=1e-6)
    # 6 -> 4 -> 6: linear interpolation of a smooth sequence stays close to it
    resample = ResampleFrames(4)
    down = resample(cine)
    # frame 1 of 4 sits at time 5/3 of the input: 1/3 of frame 1 plus 2/3 of frame 2
    assert torch.allclose(down[1], cine[1] / 3 + 2 * cine[2] / 3, atol=1e-6)
    # linear interpolation over steps of at most 5/3 frames errs by at most (5/3)^2 / 8 * max|f''| each way
    bound = 2 * (5 / 3) ** 2 / 8 * 0.3**2
    assert (resample.inverse(down) - cine).abs().max() < bound


def test_resample_nearest_labels_and_sparse_sources():
    labels = torch.arange(T, dtype=torch.float32)[:, None, None].expand(T, 2, 2).clone()
    up = ResampleFrames(11, mode="nearest")(labels)
    # new frame j takes input frame round(j / 2), halves up
    assert up[:, 0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # sparse labels: only the new frames nearest to labelled frames 1 and 4 carry labels, the rest are 0
    mask = torch.tensor([False, True, False, False, True, False])
    assert labelled_frame_sources(mask, 11).tolist() == [-1, -1, 1, -1, -1, -1, -1, -1, 4, -1, -1]
    sparse = ResampleFrames(11, mode="nearest")(labels, label_mask=mask)
    assert sparse[:, 0, 0].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 0]
    # downsampling 11 -> 3 (new frames at times 0, 5, 10): frames 4, 5 and 7 all land on new frame 1; 5 wins
    mask = torch.zeros(11, dtype=torch.bool)
    mask[[4, 5, 7]] = True
    assert labelled_frame_sources(mask, 3).tolist() == [-1, 5, -1]


def test_resampled_updates_mask_indices_and_inverts():
    entry = _entry(labelled=(0, 3), ed=0, es=3)
    resample = ResampleFramesd(("image", "label"), num_frames=11)
    d = resample(entry)
    assert d["image"].shape == (11, H, W) and d["label"].shape == (11, H, W)
    assert d["label_mask"].tolist() == [j in (0, 6) for j in range(11)]
    assert (d["ed"], d["es"], d["label_frames"], d["num_frames"]) == (0, 6, [0, 6], 11)
    # labels land on the right frames with their values (frame 3 had value 1, frame 0 value 1)
    assert d["label"][6, 3, 4] == 1 and d["label"][0, 3, 4] == 1 and d["label"][[1, 2, 3, 4, 5, 7, 8, 9, 10]].max() == 0
    back = resample.inverse(d)
    assert torch.allclose(back["image"], entry["image"], atol=1e-5)
    assert torch.equal(back["label"].as_tensor(), entry["label"].as_tensor())
    assert torch.equal(back["label_mask"], entry["label_mask"])
    assert (back["ed"], back["es"], back["label_frames"], back["num_frames"]) == (0, 3, [0, 3], T)


def test_resampled_invertd_uses_nearest_for_predictions():
    pipeline = Compose([ResampleFramesd(("image", "label"), num_frames=11)])
    d = pipeline(_entry(labelled=(0, 3), ed=0, es=3))
    d["pred"] = MetaTensor(torch.arange(11, dtype=torch.float32)[:, None, None].expand(11, H, W).clone())
    inverted = Invertd("pred", transform=pipeline, orig_keys="image", nearest_interp=True)(d)
    # frame t of the input takes new frame 2 t, as nearest neighbour (not a blend)
    assert inverted["pred"][:, 0, 0].tolist() == [0, 2, 4, 6, 8, 10]


def test_subset_keeps_frame0_and_labelled_and_is_deterministic():
    entry = _entry(num_frames=12, labelled=(0, 5, 9), ed=0, es=5)
    subset = RandFrameSubsetd(("image", "label"), num_frames=6)
    draws = []
    for seed in range(5):
        subset.set_random_state(seed)
        d = subset(dict(entry))
        frames = _frame_values(d["image"])
        draws.append(frames)
        assert len(frames) == 6 and frames == sorted(frames) and len(set(frames)) == 6
        assert {0, 5, 9} <= set(frames)
        assert d["label_mask"].tolist() == [f in (0, 5, 9) for f in frames]
        assert d["label_frames"] == [frames.index(0), frames.index(5), frames.index(9)]
        assert d["es"] == frames.index(5) and d["ed"] == 0 and d["num_frames"] == 6
        assert torch.equal(d["label"][frames.index(9)], entry["label"][9])
    assert len({tuple(f) for f in draws}) > 1  # the free frames do vary
    subset.set_random_state(3)
    assert _frame_values(subset(dict(entry))["image"]) == draws[3]


def test_subset_es_left_out_moves_to_nearest_kept_frame():
    entry = _entry(num_frames=12, labelled=(0,), ed=0, es=7)
    subset = RandFrameSubsetd(("image", "label"), num_frames=3)
    subset.set_random_state(0)
    d = subset(entry)
    frames = _frame_values(d["image"])
    assert d["es"] == int(np.argmin(np.abs(np.array(frames) - 7)))


def test_subset_errors():
    with pytest.raises(CineDataError, match=r"cine.nii.gz.*has 6 frames, fewer than the 8"):
        RandFrameSubsetd(("image", "label"), num_frames=8)(_entry())
    with pytest.raises(CineDataError, match="labelled frames"):
        RandFrameSubsetd(("image", "label"), num_frames=2)(_entry(labelled=(2, 4)))
    # without keep_labelled the same draw is allowed
    d = RandFrameSubsetd(("image", "label"), num_frames=2, keep_labelled=False)(_entry(labelled=(2, 4)))
    assert d["image"].shape[0] == 2 and _frame_values(d["image"])[0] == 0


def test_resampled_nearest_images_pick_whole_frames_while_labels_stay_sparse():
    image = torch.arange(1, 7, dtype=torch.float32)[:, None, None].expand(6, 2, 2).clone()
    labels = torch.zeros(6, 2, 2)
    labels[1], labels[4] = 2.0, 3.0
    d = {"image": image, "label": labels, "label_mask": torch.tensor([False, True, False, False, True, False])}
    out = ResampleFramesd(["image", "label"], 3, mode="nearest", label_keys="label")(d)
    # new frames at input times 0, 2.5 (halves up: 3), 5: every image frame is a real input frame, none zeroed
    assert out["image"][:, 0, 0].tolist() == [1.0, 4.0, 6.0]
    # labelled input frames 1 and 4 give their labels to their nearest new frames (0.4 -> 0, 1.6 -> 2)
    assert out["label"][:, 0, 0].tolist() == [2.0, 0.0, 3.0]
    assert out["label_mask"].tolist() == [True, False, True]
    # without label_keys every nearest-mode key is a label sequence (the image would be zeroed)
    legacy = ResampleFramesd(["image", "label"], 3, mode="nearest")(dict(d))
    assert legacy["image"][:, 0, 0].tolist() == [2.0, 0.0, 5.0]
