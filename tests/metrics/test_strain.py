"""Tests for myocardial strain, AHA segments and wall thickness, against analytic deformations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from monai_cardiac.data.phantom import make_cine_phantom
from monai_cardiac.errors import CineDataError
from monai_cardiac.metrics import (
    DEFAULT_SEPTUM_ANGLE_DEG,
    aha_segments,
    deformation_gradient,
    global_strain_curves,
    lagrangian_displacement,
    lagrangian_strain,
    lv_centre,
    radial_circumferential_strain,
    rv_insertion_points,
    segmental_strain_curves,
    strain_directions,
    wall_thickness,
)

torch.set_num_threads(1)

SPACING = (0.8, 0.6)  # anisotropic on purpose: every length below is in mm
SHAPE = (90, 120)
CENTRE_MM = np.array([36.1, 35.7])
A_MM, B_MM = 20.0, 28.0  # inner and outer radius of the annulus


def _coords(shape=SHAPE, spacing=SPACING) -> np.ndarray:
    """Physical coordinates (2, H, W) in mm of the voxel centres."""
    grid = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    return np.stack([g * s for g, s in zip(grid, spacing)])


def _annulus(shape=SHAPE, spacing=SPACING, centre=CENTRE_MM, a=A_MM, b=B_MM):
    """(myo, lv, r) of an annulus a <= r < b about ``centre`` (mm); r = distance of every voxel in mm."""
    rel = _coords(shape, spacing) - np.asarray(centre)[:, None, None]
    r = np.hypot(rel[0], rel[1])
    return (r >= a) & (r < b), r < a, r


def _radial_field(k: float, shape=SHAPE, spacing=SPACING, centre=CENTRE_MM) -> np.ndarray:
    """Lagrangian displacement (2, H, W) in mm of the incompressible radial map R(r)^2 = r^2 + k."""
    rel = _coords(shape, spacing) - np.asarray(centre)[:, None, None]
    r = np.hypot(rel[0], rel[1])
    big_r = np.sqrt(np.maximum(r**2 + k, 1e-6))
    return (big_r - r) / np.maximum(r, 1e-9) * rel


def _analytic_means(k: float, a: float = A_MM, b: float = B_MM) -> tuple[float, float]:
    """Area means over a <= r < b of E_rr = ((dR/dr)^2 - 1) / 2 = (r^2 / (r^2 + k) - 1) / 2 and
    E_cc = ((R / r)^2 - 1) / 2 = k / (2 r^2), for R^2 = r^2 + k."""
    area = b * b - a * a
    e_rr = -0.5 * k * math.log((b * b + k) / (a * a + k)) / area
    e_cc = k * math.log(b / a) / area
    return e_rr, e_cc


# ------------------------------------------------------------------------------------------- strain tensor
def test_uniform_stretch_gives_exact_green_strain():
    a, b = 0.15, -0.2
    x = _coords((12, 9), SPACING)
    d = torch.as_tensor(np.stack([a * x[0], b * x[1]]))[None]  # mm
    e = lagrangian_strain(d, SPACING)
    assert e.shape == (1, 2, 2, 12, 9)
    expected = torch.tensor([[a + a * a / 2, 0.0], [0.0, b + b * b / 2]], dtype=torch.float64)
    torch.testing.assert_close(e[0].permute(2, 3, 0, 1), expected.expand(12, 9, 2, 2), atol=1e-12, rtol=0)
    f = deformation_gradient(d, SPACING)
    torch.testing.assert_close(f[0, :, :, 5, 4], torch.tensor([[1 + a, 0.0], [0.0, 1 + b]], dtype=torch.float64))
    # the same field in voxels of another spacing is another stretch: spacing is really used
    e_wrong = lagrangian_strain(d, (1.0, 1.0))
    assert abs(e_wrong[0, 0, 0, 5, 4].item() - (a + a * a / 2)) > 0.01


def test_rotation_has_zero_green_strain_but_nonzero_small_strain():
    angle = math.radians(25.0)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    rel = _coords((16, 14), SPACING) - np.array([5.0, 4.0])[:, None, None]
    d = torch.as_tensor(np.einsum("ij,j...->i...", rot - np.eye(2), rel) + np.array([2.0, -1.0])[:, None, None])[None]
    e = lagrangian_strain(d, SPACING)
    assert e.abs().max().item() < 1e-12
    grad = deformation_gradient(d, SPACING) - torch.eye(2, dtype=torch.float64)[None, :, :, None, None]
    small = 0.5 * (grad + grad.transpose(1, 2))
    torch.testing.assert_close(small[0, 0, 0], torch.full((16, 14), math.cos(angle) - 1, dtype=torch.float64))
    assert small.abs().max().item() > 0.09  # cos(25 deg) - 1 = -0.094: small strain sees a deformation


def test_masked_differences_stay_inside_the_mask():
    """A field whose gradient jumps at a boundary: inside the mask the strain is that of the inner field."""
    x = _coords((20, 10), (1.0, 1.0))
    inside = x[0] < 9.5  # rows 0-9
    d = np.zeros((2, 20, 10))
    d[0] = np.where(inside, 0.1 * x[0], 0.95 + 0.5 * (x[0] - 9.5))  # continuous, slope 0.1 then 0.5
    d_t = torch.as_tensor(d)[None]
    e_masked = lagrangian_strain(d_t, (1.0, 1.0), mask=inside)
    e_plain = lagrangian_strain(d_t, (1.0, 1.0))
    torch.testing.assert_close(e_masked[0, 0, 0][inside], torch.full((100,), 0.1 + 0.005, dtype=torch.float64))
    # the plain central difference at row 9 mixes both slopes: (1.2 - 0.8) / 2 = 0.2, E = 0.2 + 0.2^2 / 2
    assert e_plain[0, 0, 0, 9, 0].item() == pytest.approx(0.22)


def test_strain_is_differentiable():
    myo, lv, _ = _annulus()
    d = torch.as_tensor(_radial_field(-140.0)[None].repeat(2, 0), dtype=torch.float32).requires_grad_(True)
    out = global_strain_curves(d, myo, lv, SPACING)
    (out["radial"].sum() - out["circumferential"].sum()).backward()
    assert d.grad is not None and torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ radial / circumferential
def test_directions_and_sign_convention():
    myo, lv, _ = _annulus()
    e_r, e_c = strain_directions(lv, myo, SPACING)
    centre = lv_centre(lv, myo) * np.array(SPACING)
    h, w = 60, 60  # a voxel at +H, +W of the centre
    rel = np.array([h * SPACING[0], w * SPACING[1]]) - centre
    np.testing.assert_allclose(e_r[:, h, w].numpy(), rel / np.linalg.norm(rel), atol=1e-12)
    np.testing.assert_allclose(e_c[:, h, w].numpy(), np.array([-rel[1], rel[0]]) / np.linalg.norm(rel), atol=1e-12)
    np.testing.assert_allclose((e_r * e_c).sum(0).numpy(), 0.0, atol=1e-12)
    # the LV centre is the blood pool's centroid, near the true centre (discretisation)
    np.testing.assert_allclose(centre, CENTRE_MM, atol=0.2)


def test_annulus_incompressible_thickening_matches_analytic_means():
    k = -140.0  # cavity area -35 % at the endocardium; R^2 = r^2 + k keeps the wall's area
    myo, lv, r = _annulus()
    d = torch.as_tensor(np.stack([np.zeros((2,) + SHAPE), _radial_field(k)]))  # frames ED, ES
    out = global_strain_curves(d, myo, lv, SPACING)
    e_rr, e_cc = _analytic_means(k)
    assert e_rr == pytest.approx(0.16534, abs=1e-4) and e_cc == pytest.approx(-0.12267, abs=1e-4)
    assert out["radial"][0].item() == 0.0 and out["circumferential"][0].item() == 0.0
    assert abs(out["radial"][1].item() - e_rr) < 0.01
    assert abs(out["circumferential"][1].item() - e_cc) < 0.01
    # and close to the mean of the pointwise analytic values over the same voxels
    assert out["radial"][1].item() == pytest.approx(np.mean((0.5 * (r**2 / (r**2 + k) - 1))[myo]), abs=2e-3)
    assert out["circumferential"][1].item() == pytest.approx(np.mean((k / (2 * r**2))[myo]), abs=2e-3)
    assert out["radial_percent"][1].item() == pytest.approx(100 * out["radial"][1].item())
    assert out["num_voxels"] == int(myo.sum())


def test_curves_peaks_time_to_peak_and_rates():
    ks = [0.0, -70.0, -140.0, -100.0, -30.0]
    myo, lv, _ = _annulus()
    d = torch.as_tensor(np.stack([_radial_field(k) if k else np.zeros((2,) + SHAPE) for k in ks]))
    out = global_strain_curves(d, myo, lv, SPACING, frame_interval=0.04)
    radial, circ = out["radial"].numpy(), out["circumferential"].numpy()
    for t, k in enumerate(ks):
        e_rr, e_cc = _analytic_means(k) if k else (0.0, 0.0)
        assert abs(radial[t] - e_rr) < 0.01 and abs(circ[t] - e_cc) < 0.01
    assert out["time_to_peak_radial"] == 2 and out["time_to_peak_circumferential"] == 2
    assert out["peak_radial"] == pytest.approx(radial[2]) and out["peak_circumferential"] == pytest.approx(circ[2])
    assert out["peak_circumferential_percent"] == pytest.approx(100 * circ[2])
    rate = out["radial_rate"].numpy()
    assert rate[2] == pytest.approx((radial[3] - radial[1]) / 2)  # central difference, per frame
    assert rate[0] == pytest.approx(radial[1] - radial[0]) and rate[4] == pytest.approx(radial[4] - radial[3])
    np.testing.assert_allclose(out["circumferential_rate_per_s"].numpy(), out["circumferential_rate"].numpy() / 0.04)
    assert out["time_to_peak_radial_s"] == pytest.approx(0.08)
    assert "radial_rate_per_s" not in global_strain_curves(d, myo, lv, SPACING)


def test_lagrangian_displacement_inverts_the_tracking_field():
    """u_{ED->t} of a uniform contraction X -> s X (about a centre): d(X) = (s - 1)(X - c), in mm."""
    s, sp = 0.8, (1.5, 1.0)
    centre = np.array([15.0, 12.0])  # mm
    x = _coords((20, 24), sp) - centre[:, None, None]
    u_ed_to_t = (x / s - x) / np.array(sp)[:, None, None]  # frame-t voxel x pulls from ED position x / s
    u = torch.as_tensor(np.stack([np.zeros_like(u_ed_to_t), u_ed_to_t]), dtype=torch.float64)
    d = lagrangian_displacement(u, sp, tolerance=1e-8, num_iterations=200)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # the inverse is approximate at the grid's border
    torch.testing.assert_close(d[1][inner], torch.as_tensor((s - 1) * x)[inner], atol=1e-5, rtol=0)
    assert d[0].abs().max().item() == 0.0
    # u_{t->ED} (the motion-compensation direction) is only scaled to mm
    u_t_to_ed = u.clone()
    u_t_to_ed[1] = torch.as_tensor((s - 1) * x / np.array(sp)[:, None, None])
    d_direct = lagrangian_displacement(u_t_to_ed, sp, direction="t_to_ed")
    torch.testing.assert_close(d_direct[1], torch.as_tensor((s - 1) * x))


def test_phantom_true_motion_matches_its_analytic_strain():
    """The phantom's LV map is R^2 = r^2 + D through the myocardium (frame radius r, ED radius R; area preserving),
    with D = EF * r_endo^2 at ES (c = 1). Forward, ED radius R goes to sqrt(R^2 - D), so
    E_cc = -D / (2 R^2) and E_rr = D / (2 (R^2 - D)) at ED radius R. This holds up to the phantom's regional
    variation of D, its small eccentricity and the drift's weight; the twist is rigid inside the heart."""
    p = make_cine_phantom(3, num_frames=10, spatial_size=(112, 112), group="NOR", noise_std=0.0, bias_strength=0.0)
    es, sp, label = p["es"], p["spacing"], p["label"]
    myo, lv = label[0] == 2, label[0] == 3
    d = lagrangian_displacement(torch.as_tensor(p["ddf"]), sp)  # true u_{ED->t} inverted onto the ED grid
    out = global_strain_curves(d, myo, lv, sp)
    big_d = p["params"]["ejection_fraction"] * p["params"]["lv_endocardial_radius_mm"][0] ** 2
    rel = _coords(myo.shape, sp) - (lv_centre(lv) * np.array(sp))[:, None, None]
    radius = np.hypot(rel[0], rel[1])
    e_rr_true, e_cc_true = big_d / (2 * (radius**2 - big_d)), -big_d / (2 * radius**2)
    assert out["time_to_peak_circumferential"] == es and out["time_to_peak_radial"] == es
    assert abs(out["circumferential"][es].item() - e_cc_true[myo].mean()) < 0.01
    # E_rr is steep at the endocardium, where the gradient of the true field jumps (blood and muscle) and the
    # pull field interpolated across it blurs d: the wall's boundary voxels read low, the interior agrees
    assert abs(out["radial"][es].item() - e_rr_true[myo].mean()) < 0.03
    strain = lagrangian_strain(d[es : es + 1], sp, myo)
    e_rr, e_cc, _ = radial_circumferential_strain(strain, *strain_directions(lv, myo, sp))
    interior = ndimage.binary_erosion(myo)
    assert abs(e_rr[0][interior].mean().item() - e_rr_true[interior].mean()) < 0.01
    assert abs(e_cc[0][interior].mean().item() - e_cc_true[interior].mean()) < 0.01


# ----------------------------------------------------------------------------------------------- segments
def _heart(rv: bool = True, spacing=(1.0, 1.0)):
    """Annulus radii 12-18 mm about (40, 40) mm, RV crescent 18-28 mm over theta = 143.13 +- 60 degrees."""
    shape = (80, 80)
    rel = _coords(shape, spacing) - np.array([40.0, 40.0])[:, None, None]
    r = np.hypot(rel[0], rel[1])
    theta = np.degrees(np.arctan2(rel[1], rel[0]))
    myo, lv = (r >= 12) & (r < 18), r < 12
    off = (theta - DEFAULT_SEPTUM_ANGLE_DEG + 180.0) % 360.0 - 180.0
    rv_mask = (r >= 18) & (r < 28) & (np.abs(off) <= 60.0) if rv else np.zeros(shape, bool)
    return myo, lv, rv_mask, theta


def _psi(theta, start, clockwise=True):
    return ((start - theta) if clockwise else (theta - start)) % 360.0


def test_insertion_points_are_the_ends_of_the_rv_span():
    myo, lv, rv, _ = _heart()
    found = rv_insertion_points(myo, lv, rv)
    # ends of the RV-adjacent myocardium: the RV edges at 143.13 +- 60 degrees, up to a voxel wider
    assert found["anterior_angle"] == pytest.approx(DEFAULT_SEPTUM_ANGLE_DEG + 60.0, abs=2.0)
    assert found["inferior_angle"] == pytest.approx(DEFAULT_SEPTUM_ANGLE_DEG - 60.0, abs=2.0)
    assert found["septum_angle"] == pytest.approx(DEFAULT_SEPTUM_ANGLE_DEG, abs=2.0)
    for key in ("anterior", "inferior"):
        h, w = found[key]
        assert myo[h, w] and rv[max(h - 1, 0) : h + 2, max(w - 1, 0) : w + 2].any()
    ccw = rv_insertion_points(myo, lv, rv, direction="counterclockwise")
    assert ccw["anterior_angle"] == pytest.approx(found["inferior_angle"])
    assert rv_insertion_points(myo, lv, np.zeros_like(rv)) is None


@pytest.mark.parametrize("direction", ["clockwise", "counterclockwise"])
def test_basal_and_mid_segments_start_at_the_anterior_insertion_point(direction):
    myo, lv, rv, theta = _heart()
    clockwise = direction == "clockwise"
    start = rv_insertion_points(myo, lv, rv, direction=direction)["anterior_angle"]
    seg = aha_segments(myo, lv, rv, "basal", direction=direction).numpy()
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 3, 4, 5, 6}
    assert np.array_equal(seg > 0, myo)
    counts = np.array([(seg == s).sum() for s in range(1, 7)])
    assert counts.min() > 0.9 * myo.sum() / 6 and counts.max() < 1.1 * myo.sum() / 6  # equal 60 degree sectors
    psi = _psi(theta, start, clockwise)
    # the anterior insertion point is the border of segment 1 (anterior) and 2 (anteroseptal): 2 just past it
    # in the numbering direction (into the septum, the RV side), 1 just before it
    assert np.all(seg[myo & (psi > 2) & (psi < 58)] == 2)
    assert np.all(seg[myo & (psi > 302) & (psi < 358)] == 1)
    assert np.all(seg[myo & (psi > 122) & (psi < 178)] == 4)
    septum = np.isin(seg, (2, 3)) & myo
    assert rv[ndimage.binary_dilation(septum, iterations=1)].sum() > 0.9 * rv[ndimage.binary_dilation(myo)].sum()
    mid = aha_segments(myo, lv, rv, "mid", direction=direction).numpy()
    np.testing.assert_array_equal(mid[myo], seg[myo] + 6)


def test_apical_segments_and_fallback_without_rv():
    myo, lv, rv, theta = _heart()
    apical = aha_segments(myo, lv, rv, "apical").numpy()
    assert set(np.unique(apical).tolist()) == {0, 13, 14, 15, 16}
    counts = np.array([(apical == s).sum() for s in range(13, 17)])
    assert counts.min() > 0.9 * myo.sum() / 4 and counts.max() < 1.1 * myo.sum() / 4
    # the septal segment is centred on the septum
    off = (theta - DEFAULT_SEPTUM_ANGLE_DEG + 180.0) % 360.0 - 180.0
    assert np.all(apical[myo & (np.abs(off) < 40)] == 14)
    # without an RV: the default septum direction, which this phantom-like heart shares
    no_rv, _, _, _ = _heart(rv=False)
    fallback = aha_segments(no_rv, lv, None, "basal").numpy()
    with_rv = aha_segments(myo, lv, rv, "basal").numpy()
    assert np.mean(fallback[myo] == with_rv[myo]) > 0.95
    psi = _psi(theta, DEFAULT_SEPTUM_ANGLE_DEG + 60.0)
    assert np.all(fallback[myo & (psi > 1) & (psi < 59)] == 2)
    # an explicit fallback angle, and an explicit anterior angle overriding the RV
    rotated = aha_segments(myo, lv, np.zeros_like(rv), "basal", fallback_septum_angle=DEFAULT_SEPTUM_ANGLE_DEG - 60)
    assert np.all(rotated.numpy()[myo & (_psi(theta, DEFAULT_SEPTUM_ANGLE_DEG) > 1)
                                  & (_psi(theta, DEFAULT_SEPTUM_ANGLE_DEG) < 59)] == 2)
    forced = aha_segments(myo, lv, rv, "basal", anterior_angle=0.0).numpy()
    assert np.all(forced[myo & (_psi(theta, 0.0) > 1) & (_psi(theta, 0.0) < 59)] == 2)


def test_segmental_strain_of_an_axisymmetric_thickening():
    myo, lv, rv, _ = _heart()
    seg = aha_segments(myo, lv, rv, "mid")
    # annulus 12-18 mm about (40, 40) mm at 1 mm voxels
    d = torch.as_tensor(np.stack([np.zeros((2, 80, 80)), _radial_field(-50.0, (80, 80), (1.0, 1.0), (40.0, 40.0))]))
    curves = segmental_strain_curves(d, seg, lv, (1.0, 1.0), frame_interval=0.05)
    assert sorted(curves) == list(range(7, 13))
    e_rr, e_cc = _analytic_means(-50.0, 12.0, 18.0)
    for sid, c in curves.items():
        assert abs(c["radial"][1].item() - e_rr) < 0.015, sid
        assert abs(c["circumferential"][1].item() - e_cc) < 0.01, sid
        assert c["time_to_peak_radial"] == 1 and "radial_rate_per_s" in c
    assert sum(c["num_voxels"] for c in curves.values()) == int(myo.sum())


# ---------------------------------------------------------------------------------------------- thickness
@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.9, 1.2)])
def test_wall_thickness_of_an_annulus(spacing):
    shape = (int(80 / spacing[0]), int(80 / spacing[1]))
    myo, lv, _ = _annulus(shape, spacing, (40.0, 40.0), 20.0, 28.0)
    out = wall_thickness(myo, lv, spacing, num_rays=180)
    assert abs(out["mean"] - 8.0) < min(spacing)
    assert np.all(np.abs(out["rays"].numpy() - 8.0) < max(spacing) + 0.1)
    assert out["rays"].shape == (180,) and out["angles"][1].item() == pytest.approx(2.0)


def test_wall_thickness_per_segment_and_thickening():
    myo, lv, rv, _ = _heart()  # wall 12-18 mm
    seg = aha_segments(myo, lv, rv, "basal")
    out = wall_thickness(myo, lv, (1.0, 1.0), segments=seg)
    assert sorted(out["segments"]) == [1, 2, 3, 4, 5, 6]
    for value in out["segments"].values():
        assert abs(value - 6.0) < 1.0
    # an end-systolic wall 9-18 mm is thicker
    rel = _coords((80, 80), (1.0, 1.0)) - 40.0
    r = np.hypot(rel[0], rel[1])
    es = wall_thickness((r >= 9) & (r < 18), r < 9, (1.0, 1.0))
    assert abs(es["mean"] - 9.0) < 1.0


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    myo, lv, rv, _ = _heart()
    d = torch.zeros(2, 2, 80, 80)
    with pytest.raises(ValueError, match=r"\(B, S, \*spatial\)"):
        lagrangian_strain(torch.zeros(2, 80, 80), (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be 2 positive"):
        lagrangian_strain(d, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be 2 positive"):
        lagrangian_strain(d, (1.0, -1.0))
    with pytest.raises(ValueError, match="mask must have shape"):
        lagrangian_strain(d, (1.0, 1.0), mask=np.ones((10, 10)))
    with pytest.raises(ValueError, match=r"\(T, 2, H, W\)"):
        global_strain_curves(d[0], myo, lv, (1.0, 1.0))
    with pytest.raises(ValueError, match="ED masks must have the shape"):
        global_strain_curves(d, myo[:40], lv[:40], (1.0, 1.0))
    with pytest.raises(CineDataError, match="myocardium mask is empty"):
        global_strain_curves(d, np.zeros_like(myo), lv, (1.0, 1.0))
    with pytest.raises(CineDataError, match="non-finite"):
        global_strain_curves(torch.full((2, 2, 80, 80), float("nan")), myo, lv, (1.0, 1.0))
    with pytest.raises(ValueError, match="frame_interval"):
        global_strain_curves(d, myo, lv, (1.0, 1.0), frame_interval=0.0)
    with pytest.raises(ValueError, match="direction"):
        lagrangian_displacement(d, (1.0, 1.0), direction="forward")
    with pytest.raises(CineDataError, match="LV blood pool and the myocardium are empty"):
        lv_centre(np.zeros_like(lv), np.zeros_like(myo))
    with pytest.raises(ValueError, match="level"):
        aha_segments(myo, lv, rv, "basal-ish")
    with pytest.raises(ValueError, match="direction"):
        aha_segments(myo, lv, rv, "mid", direction="left")
    with pytest.raises(ValueError, match="2D mask"):
        aha_segments(myo[None], lv, rv, "mid")
    with pytest.raises(ValueError, match="rv_mask must have shape"):
        aha_segments(myo, lv, rv[:10], "mid")
    with pytest.raises(CineDataError, match="myocardium mask is empty"):
        aha_segments(np.zeros_like(myo), lv, rv, "mid")
    with pytest.raises(CineDataError, match="myocardium mask is empty"):
        wall_thickness(np.zeros_like(myo), lv, (1.0, 1.0))
    with pytest.raises(ValueError, match="num_rays"):
        wall_thickness(myo, lv, (1.0, 1.0), num_rays=3)
    with pytest.raises(ValueError, match="AHA segment ids"):
        segmental_strain_curves(d, np.full((80, 80), 17), lv, (1.0, 1.0))
    with pytest.raises(ValueError, match=r"\(B, 2, 2, H, W\)"):
        radial_circumferential_strain(torch.zeros(1, 3, 3, 4, 4), torch.zeros(2, 4, 4), torch.zeros(2, 4, 4))
