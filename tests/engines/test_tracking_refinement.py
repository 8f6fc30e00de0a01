"""refine_tracking: a known shift recovered from zero, the truth kept, the reference frame fixed, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_cardiac.displacement import warp_image
from monai_cardiac.engines import RefineTrackingd, label_probabilities, refine_tracking
from monai_cardiac.errors import CineDataError
from monai_cardiac.losses import BandedLocalNormalizedCrossCorrelationLoss


def blob_cine(shift=(2.0, -1.5), size=40) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame 0: a smooth blob; frame 1: the same blob moved by ``shift``; and the true ``u_{0->t}`` (pull)."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    frames = [torch.exp(-((yy - 20 - s[0]) ** 2 + (xx - 20 - s[1]) ** 2) / 40.0) for s in ((0.0, 0.0), shift)]
    truth = torch.zeros(2, 2, size, size)
    truth[1, 0], truth[1, 1] = -shift[0], -shift[1]  # frame1(x) = frame0(x - shift)
    return torch.stack(frames), truth


def test_a_known_shift_is_recovered_from_zero_fields():
    cine, truth = blob_cine()
    refined = refine_tracking(cine, torch.zeros_like(truth), iterations=300, smoothness=0.1, learning_rate=0.1)
    assert refined.shape == truth.shape and refined.dtype == torch.float32
    inside = cine[0] > 0.3
    error = torch.linalg.norm(refined[1] - truth[1], dim=0)[inside].mean()
    assert error < 0.25 * float(np.hypot(2.0, 1.5))  # zero-motion error: the shift's length
    assert torch.equal(refined[0], torch.zeros_like(refined[0]))  # the reference frame stays the identity
    warped = warp_image(cine[:1, None], refined[1:])[0, 0]
    assert torch.mean((warped - cine[1]) ** 2) < 0.1 * torch.mean((cine[0] - cine[1]) ** 2)


def test_the_true_field_is_kept_and_zero_iterations_change_nothing():
    cine, truth = blob_cine()
    kept = refine_tracking(cine, truth, iterations=50, smoothness=0.1)
    assert torch.allclose(kept[1][:, cine[0] > 0.3], truth[1][:, cine[0] > 0.3], atol=0.15)
    start = torch.randn_like(truth)
    assert torch.equal(refine_tracking(cine, start, iterations=0), start)


def test_the_reference_frame_can_be_any_frame():
    cine, truth = blob_cine()
    swapped = refine_tracking(cine.flip(0), torch.zeros_like(truth), reference=1, iterations=300, learning_rate=0.1)
    inside = cine[0] > 0.3
    assert torch.equal(swapped[1], torch.zeros_like(swapped[1]))
    assert torch.linalg.norm(swapped[0] - truth[1], dim=0)[inside].mean() < 0.7


def test_bad_input_is_refused_with_a_clear_error():
    cine, truth = blob_cine()
    with pytest.raises(CineDataError, match=r"\(T, H, W\)"):
        refine_tracking(cine[None], truth)
    with pytest.raises(CineDataError, match="tracking fields"):
        refine_tracking(cine, truth[:, :1])
    with pytest.raises(CineDataError, match="finite"):
        refine_tracking(cine, torch.full_like(truth, float("nan")))
    with pytest.raises(CineDataError, match="reference frame 2"):
        refine_tracking(cine, truth, reference=2)
    with pytest.raises(ValueError, match="iterations"):
        refine_tracking(cine, truth, iterations=-1)


def test_lncc_recovers_a_shift_despite_an_intensity_change():
    """Frame 1 is the moved blob at 60 % contrast on a brighter background: LNCC still finds the shift."""
    cine, truth = blob_cine()
    cine[1] = 0.6 * cine[1] + 0.2
    inside = cine[0] > 0.3
    start = torch.linalg.norm(truth[1], dim=0)[inside].mean()
    refined = refine_tracking(cine, torch.zeros_like(truth), iterations=300, smoothness=0.1, learning_rate=0.1,
                              similarity="lncc", window=9)
    assert torch.linalg.norm(refined[1] - truth[1], dim=0)[inside].mean() < 0.4 * start
    assert torch.equal(refined[0], torch.zeros_like(refined[0]))


def test_a_coarse_level_first_recovers_a_larger_shift():
    cine, truth = blob_cine(shift=(6.0, -5.0), size=48)
    inside = cine[0] > 0.3
    zero = float(np.hypot(6.0, 5.0))
    refined = refine_tracking(cine, torch.zeros_like(truth), iterations=150, smoothness=0.1, learning_rate=0.1,
                              levels=(4, 2, 1))
    assert refined.shape == truth.shape
    assert torch.equal(refined[0], torch.zeros_like(refined[0]))
    assert float(torch.linalg.norm(refined[1] - truth[1], dim=0)[inside].mean()) < 0.2 * zero


def test_bad_options_are_refused():
    cine, truth = blob_cine()
    with pytest.raises(ValueError, match="similarity"):
        refine_tracking(cine, truth, similarity="ssd")
    with pytest.raises(ValueError, match="levels"):
        refine_tracking(cine, truth, levels=(2, 0))
    with pytest.raises(ValueError, match="window"):
        refine_tracking(cine, truth, similarity="lncc", window=4)


def test_the_temporal_term_ties_each_field_to_its_neighbours():
    """On a flat cine the images give no gradient: only the temporal term moves the fields."""
    cine = torch.full((4, 16, 16), 0.5)
    cine[0, 0, 0] = 0.0  # two intensities, so the percentile scaling is defined
    start = torch.zeros(4, 2, 16, 16)
    start[1], start[2], start[3] = 1.0, 3.0, -2.0
    untouched = refine_tracking(cine, start, iterations=20, smoothness=0.0, temporal_smoothness=0.0)
    inner = (slice(None), slice(None), slice(4, 12), slice(4, 12))  # away from the one dark voxel
    assert torch.allclose(untouched[inner], start[inner])
    tied = refine_tracking(cine, start, iterations=200, smoothness=0.0, temporal_smoothness=1.0, learning_rate=0.05)
    steps = lambda u: (u[1:] - u[:-1])[inner].abs().mean()  # noqa: E731
    assert steps(tied) < 0.5 * steps(start)
    # the chain starts at the reference's zero field: every field is pulled towards it
    assert tied[inner][1:].abs().mean() < start[inner][1:].abs().mean()
    assert torch.equal(tied[0], torch.zeros_like(tied[0]))
    with pytest.raises(ValueError, match="temporal_smoothness"):
        refine_tracking(cine, start, temporal_smoothness=-1.0)


def test_the_segmentation_term_moves_fields_the_images_cannot_see():
    """Flat images, a disk segmentation that moves by 2 voxels: only the segmentation term recovers the motion."""
    size, shift = 32, 2.0
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    disks = [((yy - 16 - s) ** 2 + (xx - 16) ** 2 < 36).float() for s in (0.0, shift)]
    probabilities = torch.stack([torch.stack([1 - d, d]) for d in disks])  # (T, C, H, W): background, disk
    cine = torch.full((2, size, size), 0.5)
    cine[:, 0, 0] = 0.0  # two intensities, so the percentile scaling is defined
    start = torch.zeros(2, 2, size, size)
    options = {"iterations": 300, "smoothness": 0.03, "learning_rate": 0.1, "levels": (1,)}
    without = refine_tracking(cine, start, segmentation=probabilities, segmentation_weight=0.0, **options)
    refined = refine_tracking(cine, start, segmentation=probabilities, segmentation_weight=1.0, **options)
    edge = (disks[1] > 0) & ~(torch.roll(disks[1], 2, 0) * torch.roll(disks[1], -2, 0) > 0)  # rows near its rim
    assert without[1].abs().max() < 1e-3
    assert refined[1, 0][edge].mean() < -0.5 * shift  # pulls from shift voxels above: u_y about -2
    assert refined[1, 1][edge].abs().mean() < 0.3 * shift  # no sideways motion invented
    assert torch.equal(refined[0], torch.zeros_like(refined[0]))
    assert torch.equal(refine_tracking(cine, start, segmentation_weight=1.0, **options), without)  # no P: no term
    with pytest.raises(ValueError, match="segmentation_weight"):
        refine_tracking(cine, start, segmentation=probabilities, segmentation_weight=-1.0)
    with pytest.raises(CineDataError, match=r"class probabilities \(T, C, H, W\)"):
        refine_tracking(cine, start, segmentation=probabilities[:, 0], segmentation_weight=1.0)
    with pytest.raises(CineDataError, match="finite"):
        refine_tracking(cine, start, segmentation=probabilities * float("nan"), segmentation_weight=1.0)


@pytest.mark.parametrize("similarity", ["mse", "lncc"])
def test_the_steps_minimise_the_documented_objective(similarity):
    """A few steps equal plain Adam on the module docstring's objective, written out term by term."""
    generator = torch.Generator().manual_seed(3)
    cine = torch.rand(3, 16, 16, generator=generator)
    cine[:, :, :6] = 0.01 * cine[:, :, :6]  # a nearly flat band, where LNCC's variance floor matters
    start = torch.randn(3, 2, 16, 16, generator=generator)
    probabilities = torch.softmax(torch.randn(3, 4, 16, 16, generator=generator), 1)
    options = {"smoothness": 0.2, "segmentation_weight": 0.5, "learning_rate": 0.05, "temporal_smoothness": 0.1}
    refined = refine_tracking(cine, start, reference=1, iterations=5, levels=(1,), similarity=similarity,
                              window=5, segmentation=probabilities, **options)
    low, high = torch.quantile(cine.flatten(), torch.tensor([0.01, 0.99]))
    frames = ((cine - low) / (high - low)).clamp(0, 1)[:, None]
    lncc = BandedLocalNormalizedCrossCorrelationLoss(spatial_dims=2, kernel_size=5, kernel_type="rectangular")
    fields = start.clone()
    fields[1] = 0.0
    fields.requires_grad_(True)
    optimizer = torch.optim.Adam([fields], lr=options["learning_rate"])
    for _ in range(5):
        warped = warp_image(frames[1:2].expand_as(frames), fields)
        warped_p = warp_image(probabilities[1:2].expand_as(probabilities), fields)
        image_term = torch.mean((warped - frames) ** 2) if similarity == "mse" else 1.0 + lncc(warped, frames)
        diffusion = torch.mean((fields[:, :, 1:] - fields[:, :, :-1]) ** 2) + torch.mean(
            (fields[..., 1:] - fields[..., :-1]) ** 2)
        ordered = torch.cat([fields[1:], fields[:1]])
        loss = (image_term + options["smoothness"] * diffusion
                + options["segmentation_weight"] * ((warped_p - probabilities) ** 2).sum(1).mean()
                + options["temporal_smoothness"] * torch.mean((ordered[1:] - ordered[:-1]) ** 2))
        optimizer.zero_grad()
        loss.backward()
        fields.grad[1] = 0.0
        optimizer.step()
    assert torch.allclose(refined, fields.detach(), atol=1e-4)
    assert (refined - start).abs().max() > 0.1  # the steps moved the fields


def test_labels_become_one_hot_probabilities_for_the_segmentation_term():
    labels = torch.tensor([[[0, 1], [2, 3]], [[3, 3], [0, 1]]])  # (T=2, H=2, W=2)
    probabilities = label_probabilities(labels)
    assert probabilities.shape == (2, 4, 2, 2) and probabilities.dtype == torch.float32
    assert torch.equal(probabilities.argmax(1), labels) and torch.equal(probabilities.sum(1), torch.ones(2, 2, 2))
    with pytest.raises(CineDataError, match=r"label values outside the classes \[0, 1, 2, 3\]: found \[5\]"):
        label_probabilities(labels + 2 * (labels == 3))
    with pytest.raises(CineDataError, match=r"labels \(T, H, W\)"):
        label_probabilities(labels[0])


def test_the_dictionary_transform_reads_the_probabilities_under_its_key():
    """RefineTrackingd with segmentation_key: the same fields as refine_tracking given those probabilities."""
    cine, truth = blob_cine()
    disk = (cine > 0.3).float()
    probabilities = torch.stack([1 - disk, disk], dim=1)  # (T, 2, H, W)
    options = {"iterations": 20, "learning_rate": 0.1, "levels": (1,)}
    data = {"image": cine, "ddf": torch.zeros_like(truth), "prob": probabilities}
    refined = RefineTrackingd(segmentation_key="prob", segmentation_weight=0.5, **options)(data)["ddf"]
    expected = refine_tracking(cine, torch.zeros_like(truth), segmentation=probabilities, segmentation_weight=0.5,
                               **options)
    assert torch.equal(refined, expected)
    image_only = RefineTrackingd(segmentation_weight=0.5, **options)(data)["ddf"]
    assert torch.equal(image_only, refine_tracking(cine, torch.zeros_like(truth), **options))
    assert not torch.equal(image_only, refined)
