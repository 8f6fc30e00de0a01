"""Tests of the motion reconstruction study and the motion transport figure (Krebs et al., Fig. 4)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from monai.transforms import Compose, ScaleIntensityRangePercentilesd

from monai_cardiac.data import acdc_datalist
from monai_cardiac.engines.motion_reconstruction import (
    METHODS,
    SUBSETS,
    interpolate_velocities,
    reconstruction_curves,
    reconstruction_study,
    select_slice,
    subset_indices,
    transport_figure,
    volume_generator,
)
from monai_cardiac.errors import CineDataError
from monai_cardiac.networks import ProbabilisticMotionModel
from monai_cardiac.transforms import CropAroundHeartd, LoadCined, ReorderFromEDd

SIZE = (32, 32)
D = 8


class IntensityEncoder(torch.nn.Module):
    """Stub encoder: every code entry is the frame's mean intensity change from ED (scaled), log-variance 0."""

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        change = 20.0 * (fixed.mean(dim=(1, 2, 3)) - moving.mean(dim=(1, 2, 3)))
        mu = change[:, None].expand(-1, D).contiguous()
        return mu, torch.zeros_like(mu)


class RadialDecoder(torch.nn.Module):
    """Stub decoder: a radial velocity about the image centre whose rate follows the code (contraction > 0)."""

    def forward(self, z: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        rate = 0.3 * torch.tanh(z.mean(dim=1))
        grid = torch.stack(torch.meshgrid(*(torch.arange(s, dtype=z.dtype) - s / 2 for s in SIZE), indexing="ij"))
        return rate[:, None, None, None] * grid[None]


def make_model(stubs: bool = True) -> ProbabilisticMotionModel:
    """Tiny model. With ``stubs``, encoder and decoder are replaced by :class:`IntensityEncoder` and
    :class:`RadialDecoder` (the TCN stays), so that the LV volume changes over the cycle as an untrained network's
    nearly constant, nearly rigid motion does not."""
    torch.manual_seed(0)
    model = ProbabilisticMotionModel(spatial_size=SIZE, latent_dim=D, encoder_channels=(4, 8, 8, 2),
                                     decoder_channels=(8, 8, 8), decoder_latent_channels=8)
    torch.nn.init.normal_(model.decoder.velocity.conv.weight, std=0.3)
    if stubs:
        model.encoder, model.decoder = IntensityEncoder(), RadialDecoder()
    return model.eval()


def preprocessing() -> Compose:
    return Compose([
        LoadCined(dense_label_key=None, ddf_key=None),
        ReorderFromEDd(keys=["image", "label"]),
        ScaleIntensityRangePercentilesd("image", lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True),
        CropAroundHeartd(keys=["image", "label"], roi_size=SIZE),
    ])


@pytest.fixture
def datalist(tmp_path, make_acdc_subject):
    """Two subjects of 10 frames (T = 9 after ED), two slices each, ED and ES labelled, spacing 1.5 x 1.25 x 8."""
    for name in ("patient001", "patient002"):
        make_acdc_subject(tmp_path / "data", name, num_frames=10, num_slices=2, es=4)
    entries = acdc_datalist(tmp_path / "data", per="slice")
    for entry in entries:
        entry["group"] = "DCM" if entry["subject"] == "patient001" else "NOR"
    return entries


# ----------------------------------------------------------------------------------------- subsets
def test_subsets_are_indices_into_the_frames_after_ed():
    assert subset_indices("every 2nd", 20) == list(range(1, 20, 2))  # cine frames 2, 4, ..., 20
    assert subset_indices("every 5th", 20) == [4, 9, 14, 19]  # cine frames 5, 10, 15, 20
    assert subset_indices("first five", 20) == [0, 1, 2, 3, 4]  # cine frames 1-5
    assert subset_indices("only the 10th", 20) == [8]  # cine frame 9 (0-based), the 10th counting ED as 1st
    assert subset_indices("only the 10th", 9) == [8]
    assert subset_indices("only the 10th", 8) is None  # too short: skipped
    assert subset_indices("none (sampling)", 20) == []
    assert subset_indices("first five", 3) == [0, 1, 2]
    assert list(SUBSETS) == ["every 2nd", "every 5th", "first five", "only the 10th", "none (sampling)"]
    with pytest.raises(ValueError):
        subset_indices("every 3rd", 20)
    with pytest.raises(ValueError):
        subset_indices("every 2nd", 0)


# ----------------------------------------------------------------------------------------- interpolation
def velocity_in_time(coefficients, num_steps: int, dtype=torch.float64) -> torch.Tensor:
    """``v_i = sum_k A_k(x) t_i^k`` at ``t_i = (i + 1) / T`` (zero at ED), ``(T, 2, 6, 5)``."""
    gen = torch.Generator().manual_seed(3)
    times = torch.arange(1, num_steps + 1, dtype=dtype) / num_steps
    fields = [torch.randn(2, 6, 5, generator=gen, dtype=dtype) for _ in coefficients]
    powers = [times[:, None, None, None] ** (k + 1) for k in range(len(coefficients))]
    return sum(c * f[None] * p for c, f, p in zip(coefficients, fields, powers))


@pytest.mark.parametrize("kind", ["linear", "cubic"])
def test_interpolation_keeps_the_given_velocities_exactly(kind):
    velocity = torch.randn(2, 12, 2, 6, 5, generator=torch.Generator().manual_seed(0))
    given = [1, 4, 5, 9]
    out = interpolate_velocities(velocity, given, kind)
    assert out.shape == velocity.shape and out.dtype == torch.float32
    assert torch.equal(out[:, given], velocity[:, given])
    missing = [i for i in range(12) if i not in given]
    assert (out[:, missing] - velocity[:, missing]).abs().max() > 1e-3  # the others are really replaced
    # a bool mask and the indices mean the same; unbatched input gives the same as each batch element
    mask = torch.zeros(12, dtype=torch.bool)
    mask[given] = True
    assert torch.equal(interpolate_velocities(velocity, mask, kind), out)
    assert torch.equal(interpolate_velocities(velocity[1], given, kind), out[1])
    # all given: unchanged
    assert torch.equal(interpolate_velocities(velocity, list(range(12)), kind), velocity)


def test_linear_interpolation_of_a_velocity_linear_in_time_is_exact():
    velocity = velocity_in_time([1.0], 12)
    out = interpolate_velocities(velocity, [2, 6, 11], "linear")  # ED (v = 0) is a knot as well
    assert torch.allclose(out, velocity, atol=1e-12)
    # the missing steps 0 and 1 lie between ED and step 2: 1/3 and 2/3 of v_2
    assert torch.allclose(out[0], velocity[2] / 3, atol=1e-12)


def test_cubic_interpolation_of_a_cubic_in_time_is_exact_and_linear_is_not():
    velocity = velocity_in_time([1.0, -2.0, 1.5], 15)
    given = [3, 7, 10, 14]
    cubic = interpolate_velocities(velocity, given, "cubic")
    assert torch.allclose(cubic, velocity, atol=1e-10)
    assert (interpolate_velocities(velocity, given, "linear") - velocity).abs().max() > 1e-2


def test_interpolation_holds_the_last_given_velocity_and_degenerate_knots():
    velocity = velocity_in_time([1.0, -2.0], 10)
    for kind in ("linear", "cubic"):
        out = interpolate_velocities(velocity, [2, 5], kind)
        assert torch.equal(out[6:], velocity[5].expand(4, 2, 6, 5))  # held after the last given step
        # nothing given: no motion; one given step: the cubic is the line from ED (2 knots)
        assert torch.equal(interpolate_velocities(velocity, [], kind), torch.zeros_like(velocity))
        single = interpolate_velocities(velocity, [3], kind)
        assert torch.allclose(single[1], velocity[3] * 2 / 4, atol=1e-12)
        assert torch.equal(single[4:], velocity[3].expand(6, 2, 6, 5))


def test_interpolation_rejects_bad_input():
    with pytest.raises(CineDataError, match="velocity"):
        interpolate_velocities(torch.zeros(5, 3, 4, 4), [1])
    with pytest.raises(CineDataError, match=r"\[0, 5\)"):
        interpolate_velocities(torch.zeros(5, 2, 4, 4), [5])
    with pytest.raises(CineDataError, match="shape"):
        interpolate_velocities(torch.zeros(5, 2, 4, 4), torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError):
        interpolate_velocities(torch.zeros(5, 2, 4, 4), [1], "quadratic")


# ----------------------------------------------------------------------------------------- prior draws
def test_volume_generator_gives_all_slices_of_a_volume_the_same_prior_codes():
    model = make_model(stubs=False)
    gen = torch.Generator().manual_seed(1)
    slices = torch.rand(2, 7, *SIZE, generator=gen)  # two slices of one volume, 6 steps after ED
    given = [1, 4]
    codes = [model.reconstruct(s[None, :1], s[None, 1:], given, volume_generator(0, "patient007"))["z_tilde"][0]
             for s in slices]
    missing = [0, 2, 3, 5]
    assert torch.equal(codes[0][missing], codes[1][missing])
    assert not torch.allclose(codes[0][given], codes[1][given])  # the given steps are the slices' own codes
    other = model.reconstruct(slices[:1, :1], slices[:1, 1:], given, volume_generator(0, "patient008"))["z_tilde"][0]
    assert not torch.allclose(other[missing], codes[0][missing])
    redraw = model.reconstruct(slices[:1, :1], slices[:1, 1:], given, volume_generator(0, "patient007", 1))["z_tilde"]
    assert not torch.allclose(redraw[0][missing], codes[0][missing])


# ----------------------------------------------------------------------------------------- curves and study
def test_all_frames_given_reproduces_tracking(datalist):
    model = make_model()
    d = preprocessing()(datalist[0])
    image, ed = d["image"], d["label"][0]
    curves = reconstruction_curves(model, image, ed, (1.5, 1.25, 8.0), "patient001",
                                   {"all": lambda t: list(range(t)), "first five": SUBSETS["first five"]})
    tracking = curves["tracking"]
    assert tracking.shape == (10,)
    assert tracking[0] == pytest.approx(float((ed == 3).sum()) * 1.5 * 1.25 * 8.0 / 1000)
    assert np.ptp(tracking) > 0  # the tiny model moves the LV
    everything = curves["subsets"]["all"]
    for method in METHODS:
        np.testing.assert_array_equal(np.asarray(everything[method]).reshape(-1), tracking)
    # with frames missing, the model no longer reproduces the tracking curve
    assert np.abs(curves["subsets"]["first five"]["model"][0] - tracking).max() > 0


def test_reconstruction_study_writes_every_subset_and_method(datalist, tmp_path):
    model = make_model()
    out = tmp_path / "study"
    result = reconstruction_study(model, datalist, preprocessing(), "cpu", out, seed=0, num_draws=2)
    names = list(SUBSETS)
    assert result["num_slices"] == 4 and result["skipped"] == []
    assert list(result["summary"]) == names  # T = 9: "only the 10th" exists
    assert len(result["rows"]) == 4 * len(names) * len(METHODS)
    for row in result["rows"]:
        assert row["mae_pct_edv"] == pytest.approx(100 * row["mae_ml"] / row["edv_ml"])
        assert row["num_given"] == len(subset_indices(row["subset"], 9))
    # with no frame given the interpolations are no motion: the error is the tracking curve's mean change
    d = preprocessing()(datalist[0])
    tracking = reconstruction_curves(model, d["image"], d["label"][0], (1.5, 1.25, 8.0), "patient001", {})["tracking"]
    row = next(r for r in result["rows"] if r["subject"] == "patient001" and r["slice"] == 0
               and r["subset"] == "none (sampling)" and r["method"] == "linear")
    assert row["mae_ml"] == pytest.approx(np.abs(tracking[1:] - tracking[0]).mean())
    assert row["mae_missing_ml"] == pytest.approx(row["mae_ml"])
    # files: tables with every subset and method, one CSV row per slice, subset and method, JSON, PNG
    tables = (out / "reconstruction_study.md").read_text()
    for name in names:
        assert f"| {name} |" in tables
    assert "| model | linear | cubic |" in tables
    with open(out / "reconstruction_study.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result["rows"]) and {r["method"] for r in rows} == set(METHODS)
    payload = json.loads((out / "reconstruction_study.json").read_text())
    assert set(payload["summary"]) == set(names) and payload["settings"]["num_draws"] == 2
    # 1-5 frames besides ED given: with T = 9 "every 2nd" gives 4 and "every 5th" 2 frames; sampling is left out
    assert set(payload["target"]["subsets"]) == {"every 2nd", "every 5th", "first five", "only the 10th"}
    model_rows = [r for r in result["rows"] if r["subset"] == "first five" and r["method"] == "model"]
    model_mean = np.mean([r["mae_pct_edv"] for r in model_rows])
    assert payload["target"]["subsets"]["first five"]["model"] == pytest.approx(model_mean)
    assert (out / "reconstruction_study.png").stat().st_size > 0


def test_reconstruction_study_is_reproducible_and_skips_unlabelled_ed(datalist):
    model = make_model()
    first = reconstruction_study(model, datalist[:2], preprocessing(), seed=5)
    second = reconstruction_study(model, datalist[:2], preprocessing(), seed=5)
    assert [r["mae_ml"] for r in first["rows"]] == [r["mae_ml"] for r in second["rows"]]
    pipeline = Compose([preprocessing(), lambda d: {**d, "label_mask": torch.zeros_like(d["label_mask"])}])
    skipped = reconstruction_study(model, datalist[:1], pipeline)
    assert skipped["num_slices"] == 0 and skipped["skipped"] == ["patient001 slice 0"]


def test_reconstruction_rejects_a_cine_of_another_size():
    model = make_model()
    with pytest.raises(CineDataError, match="spatial_size"):
        reconstruction_curves(model, torch.rand(5, 24, 24), torch.zeros(24, 24), (1, 1, 1), "p")


# ----------------------------------------------------------------------------------------- transport
def test_select_slice_picks_the_middle_slice_of_a_group(datalist):
    entry = select_slice(datalist, "NOR", position=1.0)
    assert entry["subject"] == "patient002" and entry["slice"] == 1
    assert select_slice(datalist, "DCM", position=0.0)["slice"] == 0
    with pytest.raises(CineDataError, match="HCM"):
        select_slice(datalist, "HCM")


def test_transport_of_a_subject_onto_itself_reproduces_tracking(datalist, tmp_path):
    model = make_model()
    entry = select_slice(datalist, "DCM")
    numbers = transport_figure(model, entry, entry, preprocessing(), tmp_path / "fig" / "transport.png")
    assert numbers["transported"]["curve"] == numbers["source"]["curve"]
    assert numbers["transported"]["ef"] == numbers["source"]["ef"] > 0
    assert numbers["phases"][0] == 0 and numbers["phases"] == sorted(numbers["phases"])
    assert (tmp_path / "fig" / "transport.png").stat().st_size > 0
    saved = json.loads((tmp_path / "fig" / "transport.json").read_text())
    assert saved["source"]["ef"] == pytest.approx(numbers["source"]["ef"])


def test_transport_onto_another_subject_keeps_the_source_length(datalist, make_acdc_subject, tmp_path):
    model = make_model()
    make_acdc_subject(tmp_path / "other", "patient003", num_frames=7, num_slices=1, es=3)
    target = acdc_datalist(tmp_path / "other", per="slice")[0]
    numbers = transport_figure(model, datalist[0], target, preprocessing())
    assert len(numbers["transported"]["curve"]) == 10 and len(numbers["target"]["curve"]) == 7
    assert numbers["output_file"] is None
