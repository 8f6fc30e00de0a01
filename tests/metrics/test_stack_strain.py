from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_cardiac.data import make_cine_phantom
from monai_cardiac.errors import CineDataError
from monai_cardiac.metrics.stack_strain import AHA_SEGMENT_NAMES, stack_strain
from monai_cardiac.metrics.strain import global_strain_curves, lagrangian_displacement


@pytest.fixture(scope="module")
def phantom():
    """A normal phantom stack (base to apex, 3 slices, 8 frames) without noise, with its true u_{ED->t}."""
    p = make_cine_phantom(3, num_frames=8, spatial_size=(80, 80), num_slices=3, group="NOR", noise_std=0.0,
                          bias_strength=0.0)
    return p["label"], p["ddf"][:, 1:], tuple(p["spacing"][1:]), p["es"]


def test_global_curve_is_the_voxel_weighted_mean_of_the_slices_and_every_segment_contracts(phantom):
    labels, ddf, spacing, es = phantom
    out = stack_strain(labels, ddf, spacing, ed=0)
    assert out["es"] == es and out["frames"] == list(range(8))
    assert [(s["slice"], s["level"]) for s in out["slices"]] == [(0, "basal"), (1, "mid"), (2, "apical")]
    per_slice = []
    for z in range(3):
        d = lagrangian_displacement(torch.as_tensor(ddf[:, :, z]), spacing)
        c = global_strain_curves(d, labels[0, z] == 2, labels[0, z] == 3, spacing)
        per_slice.append((c["num_voxels"], c["circumferential_percent"].numpy()))
    expected = sum(w * c for w, c in per_slice) / sum(w for w, _ in per_slice)
    assert np.allclose(out["global"]["circumferential_percent"], expected, atol=1e-4)
    assert out["global"]["time_to_peak_circumferential"] == es
    assert -30 < out["global"]["peak_circumferential_percent"] < -10 < 10 < out["global"]["peak_radial_percent"]
    assert sorted(out["segments"]) == list(range(1, 17))
    for sid, entry in out["segments"].items():
        assert entry["name"] == AHA_SEGMENT_NAMES[sid]
        assert entry["level"] == ("basal" if sid <= 6 else "mid" if sid <= 12 else "apical")
        assert entry["peak_circumferential_percent"] < -5 and entry["peak_radial_percent"] > 5
        assert 3 < entry["thickness_ed_mm"] < entry["thickness_es_mm"] < 30  # the wall thickens in systole
        assert entry["thickening_percent"] == pytest.approx(
            100 * (entry["thickness_es_mm"] - entry["thickness_ed_mm"]) / entry["thickness_ed_mm"])


def test_ed_first_frame_order_and_apex_first_stacks(phantom):
    labels, ddf, spacing, _ = phantom
    shift = 3  # the same cine stored with ED as file frame 3
    rolled = stack_strain(np.roll(labels, shift, 0), np.roll(ddf, shift, 0), spacing, ed=shift)
    plain = stack_strain(labels, ddf, spacing, ed=0)
    assert rolled["frames"][:2] == [3, 4] and rolled["es"] == (plain["es"] + shift) % 8
    assert np.allclose(rolled["global"]["radial_percent"], plain["global"]["radial_percent"], atol=1e-5)
    flipped = stack_strain(labels[:, ::-1].copy(), ddf[:, :, ::-1].copy(), spacing, base_first=False)
    assert [s["level"] for s in flipped["slices"]] == ["apical", "mid", "basal"]
    assert flipped["global"]["peak_radial_percent"] == pytest.approx(plain["global"]["peak_radial_percent"], 1e-5)


def test_rigid_translation_has_no_strain(phantom):
    labels, _, spacing, _ = phantom
    still = np.repeat(labels[:1], 5, axis=0)
    shift = np.zeros((5, 2, *labels.shape[1:]), np.float32)
    shift[1:, 0], shift[1:, 1] = 1.5, -2.0  # every frame translated by the same voxels
    out = stack_strain(still, shift, spacing, es=2)
    assert max(abs(v) for v in out["global"]["radial_percent"] + out["global"]["circumferential_percent"]) < 0.5


def test_bad_inputs_raise(phantom):
    labels, ddf, spacing, _ = phantom
    with pytest.raises(CineDataError, match="tracking"):
        stack_strain(labels, ddf[:, :, :2], spacing)
    with pytest.raises(CineDataError, match="ED frame 9"):
        stack_strain(labels, ddf, spacing, ed=9)
    with pytest.raises(CineDataError, match="no myocardium"):
        stack_strain(np.where(labels == 2, 0, labels), ddf, spacing)
