"""Tests of the training augmentation: one geometry for all frames and keys, labels stay labels."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monai_cardiac.transforms.augment import cine_augmentation

T, H, W = 6, 48, 48


def _disc(center, radius) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2


def _static_cine() -> dict:
    """A cine whose frames are all the same: bright LV disc (label 3) in a myocardial ring (2), an RV blob (1)."""
    label = torch.zeros(H, W)
    label[_disc((24, 26), 10)] = 2
    label[_disc((24, 26), 7)] = 3
    label[_disc((24, 10), 4)] = 1
    image = torch.where(label == 3, 1.0, 0.1 * label)
    return {
        "image": MetaTensor(image.expand(T, H, W).clone()),
        "label": MetaTensor(label.expand(T, H, W).clone()),
    }


def _centroid(x: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(x).float().mean(0)


@pytest.mark.parametrize("elastic", [False, True])
def test_same_transform_for_all_frames_and_keys(elastic):
    augment = cine_augmentation(prob=1.0, elastic=elastic)
    augment.set_random_state(7)
    data = _static_cine()
    out = augment(dict(data))
    image, label = out["image"], out["label"]
    assert image.shape == (T, H, W) and label.shape == (T, H, W)
    assert not torch.equal(label, data["label"])  # something did happen
    for t in range(1, T):  # identical frames stay identical: one transform for the whole cine
        assert torch.allclose(image[t], image[0]) and torch.equal(label[t], label[0])
    assert set(torch.unique(label).tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert torch.equal(label, label.round())
    # the warped LV label still covers the warped bright disc of the image
    bright = image[0] > image[0].median() + 0.5 * (image[0].max() - image[0].median())
    lv = label[0] == 3
    overlap = (bright & lv).sum() / (bright | lv).sum()
    assert overlap > 0.8
    assert torch.allclose(_centroid(bright), _centroid(lv), atol=1.0)


def test_probability_zero_is_identity():
    data = _static_cine()
    out = cine_augmentation(prob=0.0)(dict(data))
    assert torch.equal(out["image"].as_tensor(), data["image"].as_tensor())
    assert torch.equal(out["label"].as_tensor(), data["label"].as_tensor())
    # MONAI's Rand2DElasticd resamples on an identity grid even when it does not fire: identity up to rounding
    out = cine_augmentation(prob=0.0, elastic=True)(dict(data))
    assert torch.allclose(out["image"], data["image"], atol=1e-6)
    assert torch.equal(out["label"].as_tensor(), data["label"].as_tensor())


def test_seeded_draws_repeat():
    a, b = cine_augmentation(prob=1.0), cine_augmentation(prob=1.0)
    a.set_random_state(3)
    b.set_random_state(3)
    assert torch.equal(a(_static_cine())["image"], b(_static_cine())["image"])


def test_stack_transform_is_in_plane():
    # slice z holds the value z + 1 everywhere: any mixing across slices would produce other values
    stack = torch.arange(1.0, 5.0)[None, :, None, None].expand(T, 4, H, W).clone()
    augment = cine_augmentation(prob=1.0, intensity=0.0, spatial_dims=3)
    augment.set_random_state(0)
    out = augment({"image": MetaTensor(stack), "label": MetaTensor(stack.clone())})
    assert out["image"].shape == (T, 4, H, W)
    label = out["label"]
    assert not torch.equal(label, stack)  # the slices did move in-plane (zeros came in at the border)
    for z in range(4):
        assert set(torch.unique(label[:, z]).tolist()) <= {0.0, z + 1.0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="label_key"):
        cine_augmentation(keys=("image",), label_key="label")
    with pytest.raises(ValueError, match="slices only"):
        cine_augmentation(elastic=True, spatial_dims=3)
    with pytest.raises(ValueError, match="spatial_dims"):
        cine_augmentation(spatial_dims=4)


def test_orientations_are_the_eight_of_the_square_uniformly_and_labels_follow():
    aug = cine_augmentation(prob=0.0, intensity=0.0, orientations=True)
    aug.set_random_state(0)
    cine = _static_cine()
    images = {}
    for _ in range(800):
        out = aug({k: v.clone() for k, v in cine.items()})
        image, label = torch.as_tensor(out["image"]), torch.as_tensor(out["label"])
        assert torch.equal(image, torch.where(label == 3, 1.0, 0.1 * label))  # labels moved with the image
        assert torch.equal(image[0], image[-1])  # every frame alike
        key = tuple(label[0].flatten().int().tolist())
        images[key] = images.get(key, 0) + 1
    assert len(images) == 8 and min(images.values()) > 70  # 100 expected each
    # the RV lies on each of the four sides of the LV in some orientation
    sides = set()
    for _ in range(40):
        label = torch.as_tensor(aug({k: v.clone() for k, v in cine.items()})["label"])[0]
        offset = _centroid(label == 1) - _centroid(label == 3)
        sides.add((int(torch.sign(offset[0]).item()) if offset[0].abs() > 5 else 0,
                   int(torch.sign(offset[1]).item()) if offset[1].abs() > 5 else 0))
    assert sides == {(0, -1), (0, 1), (-1, 0), (1, 0)}
