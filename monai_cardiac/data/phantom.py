"""Synthetic short-axis cardiac cine phantom with exact ground-truth labels and motion.

The phantom is the project's built-in data: it needs no download, it is reproducible from a seed, and it
comes with what real data never has, the labels of every frame and the true displacement of every voxel.

Anatomy (end-diastole, ED = frame 0)
    Everything is defined as continuous functions of the ED position ``X`` (mm), so that any frame can be
    drawn by evaluating them at the ED position of each of its voxels.

    - LV: blood pool inside a slightly elliptical endocardium (area-equivalent radius ``r_endo``, eccentricity
      and orientation random); myocardium out to an epicardium whose thickness varies smoothly around the
      circumference (low-order harmonics, a thicker septum in HCM, a thinned sector in MINF). Two small,
      slightly darker papillary muscles lie in the cavity and are labelled LV blood pool, as in ACDC.
    - RV: a crescent hugging the LV epicardium over a random angular sector (in polar coordinates about
      the LV centre: depth ``rv_depth * (1 - u^2)^0.6 * (1 + skew u)`` for ``u`` in (-1, 1) across the
      sector), with a thin dark free wall that is labelled background, as in ACDC.
    - Surroundings: epicardial fat, a body outline (elliptical, with a bright subcutaneous fat layer and a
      muscle layer), two dark lungs, a mid-grey liver-like blob and a few random tissue blobs.
    - Contrast is bSSFP-like: bright blood (LV slightly brighter than RV), dark myocardium, bright fat, dark
      lungs. Intensities, sizes and positions are drawn per subject; a smooth random texture fixed in ED
      coordinates (it moves with the tissue) modulates each tissue.
    - Stacks of slices run base to apex: the LV narrows as a half-ellipsoid (the wall thins a little), the
      RV shrinks and vanishes before the apex, the heart centre shifts slightly from slice to slice (long
      axis tilt and breath-hold misalignment).
    - Subjects belong to one of ACDC's groups (NOR, DCM, HCM, MINF, RV), drawn at random, which sets the
      ranges of LV size, wall thickness, EF, RV size and RV function (DCM: large thin-walled LV, EF
      0.12-0.38; HCM: small cavity, thick asymmetric wall, EF 0.62-0.80; MINF: infarcted sector that is
      thinner and hypokinetic, EF 0.20-0.45; RV: large, poorly contracting RV; NOR: EF 0.55-0.72).

Motion
    The motion is defined analytically as a BACKWARD map ``psi_t``: frame-t position ``x`` to ED position
    ``X``. Frame ``t`` is drawn as ``image_t(x) = A(psi_t(x))`` and ``label_t(x) = L(psi_t(x))`` with ``A``,
    ``L`` the continuous ED anatomy, so the true displacement in the project's convention is exactly
    ``u_{ED->t}(x) = psi_t(x) - x`` (converted to voxels), on frame ``t``'s grid, with
    ``warp(I_ED, u_{ED->t}) ~ I_t``. ``psi_0`` is the identity (the field of frame 0 is exactly zero).
    ``psi_t`` is the composition, applied to ``x`` in this order, of

    1. drift: a smooth in-time translation of a few mm (breath-hold drift), weighted by a broad Gaussian
       about the heart so that the body wall moves less than the heart;
    2. twist: rotation about the LV centre by ``tau * c(t) * w(r)``, ``w`` = 1 inside the heart and
       decaying smoothly to 0 outside (a rotation of each circle, hence always one-to-one and area
       preserving); ``tau`` runs from clockwise at the base to counter-clockwise at the apex;
    3. RV contraction: in polar coordinates ``(r, phi)`` about the LV centre, the distance ``s`` beyond
       the epicardium is stretched by ``1 + beta c(t) w_rv(phi) exp(-s^2 / 2 sigma^2)`` over the RV sector
       (the free wall moves towards the septum; ``beta <= 2`` keeps the map monotone in ``r``). ``beta`` is
       solved per slice so that the RV cavity area at ES is ``1 - RV EF`` times its ED area, the RV EF drawn
       from the group's range (low in the RV group);
    4. LV contraction, in coordinates where the endocardial ellipse is a circle: inside the cavity
       ``R = r R_endo / r_endo(t, phi)``; outside ``R = sqrt(r^2 + D(t, phi) g(r))`` where
       ``D = R_endo^2 - r_endo(t, phi)^2`` and ``g`` = 1 through the myocardium, decaying to 0 a few cm
       outside it. With ``g`` = 1 the map preserves area (2D incompressibility of the myocardium), so the
       wall thickens in systole by itself; ``g``'s decay length is chosen so that ``R`` stays monotone. ``D``
       may vary with ``phi`` (regional wall motion; a hypokinetic sector in MINF) while its mean sets the
       cavity area exactly.

    Every step maps circles (or rays) onto themselves monotonically, so ``psi_t`` is one-to-one and its
    Jacobian determinant is positive. The map is continuous everywhere; its gradient jumps at the
    endocardium and on the RV side of the epicardium (blood and muscle slide differently).

Volume curve
    The LV cavity area of every slice follows ``A(t) / A(ED) = 1 - EF c(t / T)``, so the volume does too and
    the EF of the true labels equals the drawn EF up to the discretisation of the labels. ``c`` is a
    monotone piecewise cubic (PCHIP) through key points: 0 at ED, a short isovolumic contraction, fast
    ejection to 1 at ES (phase 0.30-0.42, snapped to a frame so that ES is a frame), isovolumic relaxation,
    rapid filling (back to 15-50 % of the stroke volume within 0.13-0.20 of the cycle, slower in
    pathological groups), a diastasis plateau, and the atrial kick from phase ~0.8 back to 0 at the end of
    the cycle (phase 1, one frame after the last, as in ACDC-like cines covering one cycle). The RV
    contraction follows the same ``c``.

Image formation
    Anti-aliased edges (a logistic function of an approximate signed distance, ~1.5 px from 10 % to 90 %),
    the texture above, then a static (not moving) smooth multiplicative bias field, then Rician noise
    (``sqrt((I + n1)^2 + n2^2)``, ``n1, n2`` Gaussian with ``noise_std``). Intensities lie roughly in [0, 1.2].

What is not realistic
    In-plane motion only: no through-plane motion, so the basal slices do not lose the LV in systole as the
    valve plane descends, and the volume of every slice changes by the same fraction. No blood-flow
    artefacts, no dark bands, no trabeculae beyond two papillary muscles, no atria, aorta or pulmonary
    artery, no breathing within a frame, no Gibbs ringing. Tissue outside the heart is deformed only by
    the smooth decay of the cardiac motion plus the drift. Shapes are smooth and simple; the RV is a
    crescent in every slice. The phantom is for testing and for checking motion estimates against truth,
    not a substitute for real data.

Use :func:`make_cine_phantom` for arrays and :func:`write_phantom_dataset` for a folder in the ACDC layout
that :func:`monai_cardiac.data.acdc_datalist` and the NIfTI readers read unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from monai.utils import optional_import
from scipy.interpolate import PchipInterpolator

from monai_cardiac.data.nifti import file_to_array_affine, nifti_image

nib, _ = optional_import("nibabel")

__all__ = ["PHANTOM_GROUPS", "make_cine_phantom", "write_phantom_dataset"]

PHANTOM_GROUPS = ("NOR", "DCM", "HCM", "MINF", "RV")
"""Diagnosis groups of the phantom, ACDC's names."""

_VERSION = 1  # bump when the generated data changes, so that write_phantom_dataset regenerates
_MIN_FRAMES, _MAX_FRAMES = 2, 100
_MIN_SIZE = 16
_MAX_SLICES = 64
_EDGE_PX = 2.0  # width of the anti-aliasing ramp in pixels (10-90 % over ~1.2 px)
_BETA_MAX = 2.0  # RV bump amplitude bound; the bump map is monotone for beta < 2.24


@dataclass(frozen=True)
class _GroupPrior:
    """Ranges ``(low, high)`` drawn uniformly for one diagnosis group (lengths in mm at mid-ventricle)."""

    ef: tuple[float, float]
    r_endo: tuple[float, float]  # ED endocardial area-equivalent radius
    wall: tuple[float, float]  # mean ED wall thickness
    septal_extra: tuple[float, float]  # extra septal thickness
    infarct: bool  # thinned, hypokinetic sector
    rv_depth: tuple[float, float]  # largest radial depth of the RV cavity at ED
    rv_half_angle: tuple[float, float]  # half the angular extent of the RV, degrees
    rv_ef: tuple[float, float]  # RV ejection fraction (reached per slice where beta <= 2 allows)
    filling_left: tuple[float, float]  # share of the stroke volume not yet refilled after rapid filling


_PRIORS = {
    "NOR": _GroupPrior(
        (0.55, 0.72), (21, 26), (7, 10), (0, 1.5), False, (12, 20), (55, 75), (0.45, 0.65), (0.15, 0.32)
    ),
    "DCM": _GroupPrior((0.12, 0.38), (28, 34), (5, 8), (0, 1.0), False, (12, 20), (55, 75), (0.25, 0.45), (0.3, 0.5)),
    "HCM": _GroupPrior((0.62, 0.80), (15, 21), (12, 17), (3, 7), False, (10, 17), (50, 70), (0.45, 0.65), (0.3, 0.5)),
    "MINF": _GroupPrior((0.20, 0.45), (25, 31), (7, 10), (0, 1.0), True, (12, 20), (55, 75), (0.35, 0.55), (0.3, 0.5)),
    "RV": _GroupPrior((0.45, 0.65), (19, 25), (6, 9), (0, 1.5), False, (22, 30), (70, 88), (0.15, 0.35), (0.15, 0.35)),
}

_ANGLES = np.linspace(-np.pi, np.pi, 720, endpoint=False)
_RV_DIRECTION = np.arctan2(0.6, -0.8)  # LV -> RV direction in (H, W) array coordinates, as in ACDC images


@dataclass(frozen=True)
class _Heart:
    """The heart of one slice at ED, plus its motion parameters (lengths in mm, angles in radians).

    Polar quantities refer to the ``q`` frame: ``q = Q (X - centre)``, ``Q`` rotating by ``-theta`` and
    scaling the axes by ``1 / (1 + ecc)`` and ``1 + ecc`` (area preserving), which turns the endocardial
    ellipse into the circle ``|q| = r_endo``.
    """

    centre: tuple[float, float]
    theta: float
    ecc: float
    r_endo: float
    wall: float
    wall_harmonics: tuple[float, float, float, float]  # a1, p1, a2, p2
    septal_extra: float
    infarct_dir: float
    infarct_thinning: float
    motion_harmonic: tuple[float, float]  # b1, q1
    hypokinesis: float
    motion_gain: float  # scales the regional variation of D so that the cavity never collapses
    rv_dir: float
    rv_half: float
    rv_depth: float
    rv_skew: float
    rv_wall: float
    rv_beta: float
    fat: float
    fat_dir: float
    papillary: tuple[tuple[float, float], ...]  # (angle, radius)
    twist: float
    drift: tuple[tuple[float, float, float, float], ...]  # per axis: (a1, phase1, a2, phase2) in mm
    drift_far: float
    z_mm: float

    @property
    def q_matrix(self) -> np.ndarray:
        c, s = np.cos(self.theta), np.sin(self.theta)
        return np.diag([1.0 / (1.0 + self.ecc), 1.0 + self.ecc]) @ np.array([[c, s], [-s, c]])

    def epicardium(self, phi: np.ndarray) -> np.ndarray:
        """ED epicardial radius (q frame) at angle ``phi``."""
        a1, p1, a2, p2 = self.wall_harmonics
        wall = self.wall * (1 + a1 * np.cos(phi - p1) + a2 * np.cos(2 * (phi - p2)))
        wall = wall * (1 - self.infarct_thinning * _von_mises(phi - self.infarct_dir, 3.0))
        return self.r_endo + wall + self.septal_extra * _von_mises(phi - self.rv_dir, 2.0)

    def motion_profile(self, phi: np.ndarray) -> np.ndarray:
        """Regional share of the cavity's area change at angle ``phi`` (mean 1 over the circle)."""
        return 1 + self.motion_gain * (self._raw_motion(phi) / self._raw_motion_mean - 1)

    @cached_property
    def _raw_motion_mean(self) -> float:
        return _mean_over_circle(self._raw_motion)

    def _raw_motion(self, phi: np.ndarray) -> np.ndarray:
        b1, q1 = self.motion_harmonic
        return 1 + b1 * np.cos(phi - q1) - self.hypokinesis * _von_mises(phi - self.infarct_dir, 3.0)

    def rv_depth_at(self, phi: np.ndarray, extra_angle: float = 0.0, extra_depth: float = 0.0):
        """RV depth beyond the epicardium at ``phi`` and its derivative in ``phi`` (0 outside the sector).

        ``extra_angle``/``extra_depth`` widen and deepen the sector (for the RV free wall).
        """
        if self.rv_depth <= 0:
            zero = np.zeros_like(phi)
            return zero, zero
        half = self.rv_half + extra_angle
        u = _wrap(phi - self.rv_dir) / half
        base = np.clip(1 - u**2, 1e-6, None)
        power = base**0.6
        shape = (1 + self.rv_skew * u) * power
        dshape = (self.rv_skew * power - 1.2 * u * (1 + self.rv_skew * u) * power / base) / half
        inside = np.abs(u) < 1
        depth = self.rv_depth + extra_depth
        return np.where(inside, depth * shape, 0.0), np.where(inside, depth * dshape, 0.0)

    def outer_radius(self, phi: np.ndarray) -> np.ndarray:
        """ED radius (q frame) of the outer surface of the heart: epicardium or RV free wall, plus fat."""
        rv, _ = self.rv_depth_at(phi, self.rv_wall / max(self.r_endo + self.wall, 1.0), self.rv_wall)
        return self.epicardium(phi) + rv + self.fat


@dataclass(frozen=True)
class _Scene:
    """Everything of one subject that is not the heart: body, organs, intensities, texture, bias."""

    body: tuple[float, float, float, float, float]  # centre i, centre j, semi-axis i, semi-axis j, angle
    body_fat: float
    body_muscle: float
    organs: tuple[tuple[float, ...], ...]  # lungs and liver: (ci, cj, a, b, angle, value, texture amplitude)
    slice_blobs: tuple[tuple[tuple[float, ...], ...], ...]  # tissue blobs of each slice, same fields
    values: dict
    texture: np.ndarray  # (K, 5): k_i, k_j, k_z (rad/mm), phase, amplitude
    bias: np.ndarray  # polynomial coefficients of the bias field


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _von_mises(delta: np.ndarray, kappa: float) -> np.ndarray:
    return np.exp(kappa * (np.cos(delta) - 1.0))


def _mean_over_circle(func) -> float:
    return float(np.mean(func(_ANGLES)))


def _smootherstep(u: np.ndarray) -> np.ndarray:
    """C2 step from 0 (u <= 0) to 1 (u >= 1); its slope is at most 1.875."""
    u = np.clip(u, 0.0, 1.0)
    return u**3 * (u * (6 * u - 15) + 10)


def _soft(sd: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased indicator of ``sd < 0``: a cubic ramp from 1 to 0 over ``sd`` in ``[-width/2, width/2]``."""
    u = np.clip(0.5 - sd / width, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _ellipse_sd(xi, xj, ellipse) -> np.ndarray:
    """Approximate signed distance (mm) to the ellipse ``(ci, cj, a, b, angle)`` (first-order, exact on it)."""
    ci, cj, a, b, ang = ellipse[:5]
    c, s = np.cos(ang), np.sin(ang)
    u = c * (xi - ci) + s * (xj - cj)
    v = -s * (xi - ci) + c * (xj - cj)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
    return np.where(grad > 1e-12, (rho - 1) * rho / np.maximum(grad, 1e-12), -min(a, b))


class _Profile:
    """The LV contraction profile ``c(phase)``: 0 at ED, 1 at ES, back to 0 at phase 1 (see module doc)."""

    def __init__(self, rng: np.random.Generator, num_frames: int, filling_left: tuple[float, float]):
        es_frame = int(np.clip(round(rng.uniform(0.30, 0.42) * num_frames), 1, max(1, num_frames // 2)))
        es = es_frame / num_frames
        rapid_end = es + rng.uniform(0.13, 0.20)
        left = rng.uniform(*filling_left)
        dia_end = rng.uniform(0.78, 0.86)
        knots = [
            (0.0, 0.0),
            (0.12 * es, 0.03),
            (0.55 * es, rng.uniform(0.55, 0.65)),
            (es, 1.0),
            (es + 0.03, 0.97),
            (rapid_end, left),
            (dia_end, left * rng.uniform(0.6, 0.8)),
            (1.0, 0.0),
        ]
        self.es_frame = es_frame
        self.knots = tuple((float(p), float(v)) for p, v in knots)
        self._interp = PchipInterpolator(*np.array(knots).T)

    def __call__(self, phase: np.ndarray) -> np.ndarray:
        return np.clip(self._interp(np.clip(phase, 0.0, 1.0)), 0.0, 1.0)


def _draw_group(rng: np.random.Generator, group: str | None, ejection_fraction: float | None) -> str:
    if group is not None:
        return group
    if ejection_fraction is None:
        return PHANTOM_GROUPS[int(rng.integers(len(PHANTOM_GROUPS)))]
    # a group whose EF range holds the requested EF (or the nearest range), so that the label fits the data
    gaps = {g: max(_PRIORS[g].ef[0] - ejection_fraction, ejection_fraction - _PRIORS[g].ef[1], 0.0)
            for g in PHANTOM_GROUPS}
    best = min(gaps.values())
    fitting = [g for g in PHANTOM_GROUPS if gaps[g] == best]
    return fitting[int(rng.integers(len(fitting)))]


def _draw_hearts(rng, prior: _GroupPrior, ef: float, num_slices: int | None, slice_thickness: float,
                 akinetic: bool = False):
    """Draw the subject's heart and derive one :class:`_Heart` per slice (centres relative to the LV axis).

    ``akinetic``: the infarct sector does not move at its centre (its hypokinesis cancels the regional motion there).
    """
    u = rng.uniform
    r_endo = u(*prior.r_endo)
    wall = u(*prior.wall)
    theta = u(-np.pi, np.pi)
    ecc = u(0.0, 0.08)
    harmonics = (u(0, 0.12), u(-np.pi, np.pi), u(0, 0.08), u(-np.pi, np.pi))
    rv_dir_phys = _RV_DIRECTION + np.deg2rad(u(-35, 35))
    septal_extra = u(*prior.septal_extra)
    infarct_dir = rv_dir_phys + np.pi + u(-1.5, 1.5)
    infarct_thinning = u(0.3, 0.5) if prior.infarct else 0.0
    hypokinesis = u(0.6, 0.85) if prior.infarct else 0.0
    motion_harmonic = (u(0.0, 0.15), u(-np.pi, np.pi))
    rv_half = np.deg2rad(u(*prior.rv_half_angle))
    rv_depth = u(*prior.rv_depth)
    rv_skew = u(-0.3, 0.3)
    rv_wall = u(2.0, 3.5)
    rv_ef = u(*prior.rv_ef)
    fat = u(0.5, 3.0)
    fat_dir = u(-np.pi, np.pi)
    pap_dir = rv_dir_phys + np.pi
    papillary_base = ((pap_dir + u(0.6, 1.0), u(2.0, 3.5)), (pap_dir - u(0.6, 1.0), u(2.0, 3.5)))
    twist_ends = np.deg2rad(u(-7, -2)), np.deg2rad(u(6, 14))  # base, apex
    twist_scale = min(1.0, ef / 0.55)
    tilt = (u(-4, 4), u(-4, 4))  # LV centre shift from base to apex, mm
    rv_end = u(0.7, 0.88)  # normalised slice position where the RV vanishes

    # q-frame angles of physical directions
    rotation = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    q_of = np.diag([1.0 / (1.0 + ecc), 1.0 + ecc]) @ rotation

    def q_angle(phys_angle: float) -> float:
        v = q_of @ np.array([np.cos(phys_angle), np.sin(phys_angle)])
        return float(np.arctan2(v[1], v[0]))

    positions = [0.5] if num_slices is None or num_slices == 1 else list(np.linspace(0.0, 1.0, num_slices))
    hearts = []
    for k, zeta in enumerate(positions):
        s = 0.15 + 0.7 * zeta  # distance from the base plane, as a share of the long axis
        shrink = np.sqrt(1 - s**2) / np.sqrt(0.75)
        rv_profile = float(np.clip(1 - (max(zeta - 0.2, 0.0) / (rv_end - 0.2)) ** 2, 0.0, 1.0)) ** 0.5
        depth_k = rv_depth * rv_profile * (1.05 - 0.1 * zeta)
        if depth_k < 3.0:
            depth_k = 0.0
        half_k = rv_half * (0.6 + 0.4 * rv_profile)
        twist = twist_ends[0] + (twist_ends[1] - twist_ends[0]) * zeta if num_slices else np.deg2rad(u(-4, 10))
        jitter = (u(-1.5, 1.5), u(-1.5, 1.5)) if num_slices else (0.0, 0.0)
        drift_amp = u(0.5, 3.0)
        drift = tuple(
            (drift_amp * u(0.4, 1.0) * rng.choice((-1, 1)), u(-np.pi, np.pi), drift_amp * u(0, 0.4), u(-np.pi, np.pi))
            for _ in range(2)
        )
        r_endo_k = r_endo * shrink
        heart = _Heart(
            centre=(tilt[0] * zeta + jitter[0], tilt[1] * zeta + jitter[1]),
            theta=theta,
            ecc=ecc,
            r_endo=r_endo_k,
            wall=wall * (1.1 - 0.2 * zeta),
            wall_harmonics=harmonics,
            septal_extra=septal_extra * (1.25 - 0.5 * zeta),
            infarct_dir=q_angle(infarct_dir),
            infarct_thinning=infarct_thinning,
            motion_harmonic=motion_harmonic,
            # akinetic: the raw regional motion 1 + b1 cos(phi - q1) - hypokinesis vM(phi - infarct) is 0 at the centre
            hypokinesis=(1 + motion_harmonic[0] * np.cos(q_angle(infarct_dir) - motion_harmonic[1])) if akinetic
            else hypokinesis,
            motion_gain=1.0,
            rv_dir=q_angle(rv_dir_phys),
            rv_half=half_k,
            rv_depth=depth_k,
            rv_skew=rv_skew,
            rv_wall=rv_wall,
            rv_beta=0.0,
            fat=fat,
            fat_dir=fat_dir,
            papillary=tuple((q_angle(a), r) for a, r in papillary_base) if r_endo_k > 12 else (),
            twist=float(twist * twist_scale),
            drift=drift,
            drift_far=u(0.3, 0.6),
            z_mm=k * slice_thickness,
        )
        # keep the regional variation of the wall motion from closing the cavity anywhere
        peak = float(np.max(heart.motion_profile(_ANGLES)))
        if ef * peak > 0.9:
            heart = _replace(heart, motion_gain=(0.9 / ef - 1) / (peak - 1))
        hearts.append(_calibrate_rv(heart, ef, rv_ef))
    return hearts, rv_ef


def _replace(heart: _Heart, **changes) -> _Heart:
    fields = {name: getattr(heart, name) for name in heart.__dataclass_fields__}
    fields.update(changes)
    return _Heart(**fields)


def _heart_box(hearts: Sequence[_Heart], margin: float) -> np.ndarray:
    """Bounding box ``[[min_i, max_i], [min_j, max_j]]`` (mm, relative to the subject's LV axis) of all slices."""
    points = []
    for h in hearts:
        q = h.outer_radius(_ANGLES) * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)])
        points.append(np.linalg.solve(h.q_matrix, q) + np.asarray(h.centre)[:, None])
    pts = np.concatenate(points, axis=1)
    return np.stack([pts.min(axis=1) - margin, pts.max(axis=1) + margin], axis=1)


def _place_hearts(rng, hearts, fov: np.ndarray, spacing: np.ndarray) -> list[_Heart]:
    """Put the hearts in the field of view (random offset near the centre), or raise if they do not fit."""
    margin = 3.0 + 3.0 + 2 * float(spacing.max())  # drift, papillary/edge blur, a couple of voxels
    box = _heart_box(hearts, margin)
    extent = box[:, 1] - box[:, 0]
    slack = fov - extent
    if np.any(slack < 0):
        need = np.ceil(extent / spacing).astype(int)
        raise ValueError(
            f"the field of view {tuple(np.round(fov, 1))} mm (spatial_size x spacing) is too small for this "
            f"subject's heart, which needs about {tuple(np.round(extent, 1))} mm: use a spatial_size of at least "
            f"{tuple(need)} at this spacing, or a larger spacing."
        )
    offset = rng.uniform(-1, 1, 2) * np.minimum(slack / 2, 0.08 * fov)
    lv_axis = fov / 2 - (box[:, 0] + box[:, 1]) / 2 + offset
    return [_replace(h, centre=(h.centre[0] + lv_axis[0], h.centre[1] + lv_axis[1])) for h in hearts]


def _draw_scene(rng, hearts: Sequence[_Heart], fov: np.ndarray) -> _Scene:
    """Draw the body, organs, intensities, texture and bias field around the placed hearts."""
    u = rng.uniform
    centre = np.mean([h.centre for h in hearts], axis=0)
    box = _heart_box([_replace(h, centre=(0.0, 0.0)) for h in hearts], 0.0)
    heart_radius = float(np.max(np.abs(box)))
    body_c = fov / 2 + u(-0.03, 0.03, 2) * fov
    body_fat, body_muscle = u(5, 12), u(4, 9)
    semi = np.maximum(u(0.43, 0.49, 2) * fov, np.abs(centre - body_c) + heart_radius + body_fat + body_muscle + 10)
    body = (float(body_c[0]), float(body_c[1]), float(semi[0]), float(semi[1]), float(u(-0.2, 0.2)))

    values = {
        "air": 0.0,
        "fat": u(0.75, 0.95),
        "muscle": u(0.2, 0.3),
        "tissue": u(0.25, 0.38),
        "lung": u(0.03, 0.08),
        "liver": u(0.42, 0.55),
        "myo": u(0.18, 0.3),
        "lv": u(0.85, 1.0),
    }
    values["rv"] = values["lv"] * u(0.88, 1.0)
    values["papillary"] = values["myo"] + u(0.1, 0.25)

    # lungs beside the heart, the liver on the side opposite the RV, all in physical directions
    h = hearts[len(hearts) // 2]
    rv_phys = np.linalg.solve(h.q_matrix, np.array([np.cos(h.rv_dir), np.sin(h.rv_dir)]))
    rv_angle = float(np.arctan2(rv_phys[1], rv_phys[0]))
    organs = []
    for angle, value, tex in (
        (rv_angle + np.deg2rad(u(95, 130)), "lung", 0.3),
        (rv_angle - np.deg2rad(u(80, 115)), "lung", 0.3),
        (rv_angle + np.pi + np.deg2rad(u(-25, 25)), "liver", 0.08),
    ):
        radial, tangential = (u(18, 30), u(35, 60)) if value == "lung" else (u(30, 45), u(45, 70))
        dist = heart_radius + u(3, 8) + radial
        ci, cj = centre + dist * np.array([np.cos(angle), np.sin(angle)])
        organs.append((float(ci), float(cj), radial, tangential, angle, values[value], tex))

    slice_blobs = []
    for _ in hearts:
        blobs = []
        for _ in range(int(rng.integers(3, 7))):
            angle, dist = u(-np.pi, np.pi), heart_radius + u(5, 40)
            ci, cj = centre + dist * np.array([np.cos(angle), np.sin(angle)])
            blobs.append((float(ci), float(cj), u(3, 10), u(3, 10), u(-np.pi, np.pi), u(0.15, 0.7), 0.1))
        slice_blobs.append(tuple(blobs))

    k = 12
    wavelength = u(6.0, 25.0, k)
    direction = rng.normal(size=(k, 3)) * np.array([1.0, 1.0, 0.5])
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    texture = np.concatenate(
        [direction * (2 * np.pi / wavelength)[:, None], u(-np.pi, np.pi, (k, 1)), np.full((k, 1), np.sqrt(2.0 / k))],
        axis=1,
    )
    return _Scene(
        body=body,
        body_fat=body_fat,
        body_muscle=body_muscle,
        organs=tuple(organs),
        slice_blobs=tuple(slice_blobs),
        values=values,
        texture=texture.astype(np.float32),
        bias=rng.normal(size=9),
    )


def _backward_map(xi, xj, h: _Heart, c: float, ef: float, drift: tuple[float, float]):
    """ED positions ``psi_t(x)`` (mm) of the frame positions ``(xi, xj)`` (mm) at contraction ``c``."""
    ci, cj = h.centre
    # 1. drift, weighted towards the heart
    wd = h.drift_far + (1 - h.drift_far) * np.exp(-((xi - ci) ** 2 + (xj - cj) ** 2) / (2 * 60.0**2))
    vi, vj = xi - wd * drift[0] - ci, xj - wd * drift[1] - cj
    # 2. twist (undo a rotation by twist * c * w(r))
    r_phys = np.hypot(vi, vj)
    reach = (h.r_endo + h.wall + h.septal_extra) * (1 + h.ecc) * 1.3 + 2.0
    angle = -h.twist * c * (1 - _smootherstep((r_phys - reach) / 15.0))
    ca, sa = np.cos(angle), np.sin(angle)
    vi, vj = ca * vi - sa * vj, sa * vi + ca * vj
    # 3.-4. radial maps in the q frame
    qmat = h.q_matrix
    qi, qj = qmat[0, 0] * vi + qmat[0, 1] * vj, qmat[1, 0] * vi + qmat[1, 1] * vj
    r = np.hypot(qi, qj)
    big_r, cavity_scale = _radial_map(r, np.arctan2(qj, qi), h, c, ef)
    scale = np.where(r > 1e-9, big_r / np.maximum(r, 1e-9), cavity_scale)
    qi, qj = qi * scale, qj * scale
    vi, vj = np.linalg.solve(qmat, np.stack([qi.ravel(), qj.ravel()])).reshape(2, *qi.shape)
    return vi + ci, vj + cj


def _radial_map(r: np.ndarray, phi: np.ndarray, h: _Heart, c: float, ef: float, decay: float | None = None):
    """Steps 3 (RV) and 4 (LV) of the backward map: frame radius ``r`` at angle ``phi`` (q frame) to the ED
    radius, monotone in ``r``. Also returns the cavity's scale factor (the map's value of ``R / r`` at 0).
    ``decay`` is :func:`_decay_length` (computed when not given)."""
    d = h.r_endo**2 * ef * c * h.motion_profile(phi)
    r_epi_t = np.sqrt(h.epicardium(phi) ** 2 - d)
    r_endo_t = np.sqrt(h.r_endo**2 - d)
    # 3. RV: stretch the distance beyond the epicardium over the RV sector
    r1 = r
    if h.rv_beta > 0:
        s = np.maximum(r - r_epi_t, 0.0)
        weight = 1 - _smootherstep((np.abs(_wrap(phi - h.rv_dir)) / h.rv_half - 0.75) / 0.5)
        r1 = r + s * h.rv_beta * c * weight * np.exp(-(s**2) / (2 * h.rv_depth**2))
    # 4. LV: scale the cavity, keep area outside it, blend to the identity beyond the heart
    decay = _decay_length(h, c, ef) if decay is None else decay
    g = 1 - _smootherstep((r1 - r_epi_t - 2.0) / decay)
    cavity_scale = h.r_endo / r_endo_t
    return np.where(r1 < r_endo_t, r1 * cavity_scale, np.sqrt(r1**2 + d * g)), cavity_scale


def _calibrate_rv(h: _Heart, ef: float, rv_ef: float) -> _Heart:
    """Set the RV bump amplitude so that the slice's RV cavity area at ES (``c = 1``) is ``1 - rv_ef`` times
    its ED area (as close as ``beta <= 2`` allows). The area is integrated over angles; the frame radius of the
    RV free wall is found by bisection, as the map is monotone in ``r``."""
    depth, _ = h.rv_depth_at(_ANGLES)
    phi = _ANGLES[depth > 0]
    if h.rv_depth <= 0 or phi.size == 0:
        return _replace(h, rv_beta=0.0)
    inner, outer = h.epicardium(phi), h.epicardium(phi) + depth[depth > 0]
    inner_t = np.sqrt(inner**2 - h.r_endo**2 * ef * h.motion_profile(phi))
    area_ed = np.sum(outer**2 - inner**2)
    decay = _decay_length(h, 1.0, ef)

    def es_area_ratio(beta: float) -> float:
        hb = _replace(h, rv_beta=beta)
        lo, hi = inner_t.copy(), outer.copy()
        for _ in range(25):
            mid = 0.5 * (lo + hi)
            below = _radial_map(mid, phi, hb, 1.0, ef, decay)[0] < outer
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return float(np.sum(lo**2 - inner_t**2) / area_ed)

    lo, hi = 0.0, _BETA_MAX
    if es_area_ratio(lo) <= 1 - rv_ef:
        return _replace(h, rv_beta=0.0)
    for _ in range(16):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if es_area_ratio(mid) > 1 - rv_ef else (lo, mid)
    return _replace(h, rv_beta=0.5 * (lo + hi))


def _decay_length(h: _Heart, c: float, ef: float) -> float:
    """Length (mm) over which the LV map returns to the identity outside the heart.

    ``R = sqrt(r^2 + D g(r))`` is monotone where ``2 r + D g'(r) > 0``; with ``|g'| <= 1.875 / length`` and
    ``r`` beyond the epicardium, a length above ``1.875 max(D) / (2 min(r_epi))`` suffices (x1.5 margin).
    """
    d = h.r_endo**2 * ef * c * h.motion_profile(_ANGLES)
    r_epi = np.sqrt(h.epicardium(_ANGLES) ** 2 - d)
    return max(20.0, 1.5 * 1.875 * float(d.max()) / (2 * float(r_epi.min())))


def _texture(xi, xj, z, scene: _Scene) -> np.ndarray:
    k = scene.texture
    arg = k[:, 0, None, None] * xi + k[:, 1, None, None] * xj + k[:, 2, None, None] * z + k[:, 3, None, None]
    return np.einsum("k,kij->ij", k[:, 4], np.cos(arg))


def _render(xi, xj, h: _Heart, scene: _Scene, blobs, width: float):
    """Image (bSSFP-like, no bias or noise) and labels of the ED anatomy at the points ``(xi, xj)`` (mm)."""
    val = scene.values
    tex = _texture(xi, xj, h.z_mm, scene)
    image = np.full(xi.shape, val["air"], np.float32)

    def paint(mask, value, texture_amp):
        nonlocal image
        image = image * (1 - mask) + value * (1 + texture_amp * tex) * mask

    sd_body = _ellipse_sd(xi, xj, scene.body)
    inner = _soft(sd_body + scene.body_fat + scene.body_muscle, width)
    paint(_soft(sd_body, width), val["fat"], 0.05)
    paint(_soft(sd_body + scene.body_fat, width), val["muscle"], 0.1)
    paint(inner, val["tissue"], 0.12)
    for organ in scene.organs + blobs:
        paint(_soft(_ellipse_sd(xi, xj, organ), width) * inner, organ[5], organ[6])

    ci, cj = h.centre
    qmat = h.q_matrix
    qi = qmat[0, 0] * (xi - ci) + qmat[0, 1] * (xj - cj)
    qj = qmat[1, 0] * (xi - ci) + qmat[1, 1] * (xj - cj)
    r, phi = np.hypot(qi, qj), np.arctan2(qj, qi)
    r_epi = h.epicardium(phi)
    rv, drv = h.rv_depth_at(phi)
    rv_wall, drv_wall = h.rv_depth_at(phi, h.rv_wall / max(h.r_endo + h.wall, 1.0), h.rv_wall)
    fat = h.fat * np.clip(0.5 + np.cos(phi - h.fat_dir), 0.0, None)
    rmin = np.maximum(r, 1.0)
    sd_rv = (r - r_epi - rv) / np.sqrt(1 + (drv / rmin) ** 2)
    sd_rv_wall = (r - r_epi - rv_wall) / np.sqrt(1 + (drv_wall / rmin) ** 2)
    paint(_soft(r - r_epi - rv_wall - fat, width), val["fat"], 0.05)
    paint(_soft(sd_rv_wall, width), val["myo"], 0.07)
    paint(_soft(sd_rv, width), val["rv"], 0.04)
    paint(_soft(r - r_epi, width), val["myo"], 0.07)
    paint(_soft(r - h.r_endo, width), val["lv"], 0.04)
    for angle, radius in h.papillary:
        dist = h.r_endo - radius - 1.0
        pap = np.hypot(qi - dist * np.cos(angle), qj - dist * np.sin(angle)) - radius
        paint(_soft(pap, width), val["papillary"], 0.05)

    label = np.zeros(xi.shape, np.uint8)
    label[(sd_rv < 0) & (rv > 0)] = 1
    label[r < r_epi] = 2
    label[r < h.r_endo] = 3
    return image, label


def _bias_field(shape: tuple[int, ...], coefficients: np.ndarray, strength: float) -> np.ndarray:
    """Static multiplicative bias ``exp(strength * p)``, ``p`` a random quadratic in normalised coordinates
    scaled to ``max |p| = 1`` over the grid. ``shape`` is ``(Z, H, W)``."""
    z, i, j = np.meshgrid(*[np.linspace(-1, 1, n) if n > 1 else np.zeros(1) for n in shape], indexing="ij")
    terms = [i, j, z * 0.5, i * i, j * j, i * j, i * z * 0.5, j * z * 0.5, z * z * 0.25]
    poly = sum(c * t for c, t in zip(coefficients, terms))
    poly = poly - poly.mean()
    peak = np.abs(poly).max()
    return np.exp(strength * poly / peak) if peak > 0 else np.ones(shape)


def _check_pair(name: str, value, kind=float, minimum: float | None = None) -> tuple:
    try:
        pair = tuple(kind(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}.") from err
    if len(pair) != 2 or not all(np.isfinite(pair)):
        raise ValueError(f"{name} must be a pair of finite numbers (H, W), got {value!r}.")
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{name} must be at least {minimum} along each axis, got {value!r}.")
    return pair


def make_cine_phantom(
    seed: int,
    num_frames: int = 30,
    spatial_size: Sequence[int] = (128, 128),
    spacing: Sequence[float] = (1.5, 1.5),
    num_slices: int | None = None,
    slice_thickness: float = 8.0,
    ejection_fraction: float | None = None,
    group: str | None = None,
    noise_std: float = 0.03,
    bias_strength: float = 0.2,
    akinetic: bool = False,
) -> dict:
    """Generate one subject's synthetic cine with labels on every frame and the true displacements.

    See the module documentation for the model. The same arguments always give identical arrays; the
    anatomy depends only on ``seed``, ``num_slices``, ``slice_thickness``, ``ejection_fraction`` and ``group``
    (not on the frame count, the noise or the bias), its placement also on the field of view.

    Args:
        seed: seed of the numpy random generators (any non-negative integer).
        num_frames: frames ``T`` covering one cardiac cycle, ED first. 13-50 is the physiological design
            range (ACDC's); 2-100 is accepted.
        spatial_size: in-plane size ``(H, W)`` in voxels, each at least 16.
        spacing: in-plane voxel size ``(H, W)`` in mm.
        num_slices: ``None`` for one mid-ventricular slice ``(T, H, W)``; an integer ``Z`` for a stack
            ``(T, Z, H, W)`` from base (``z = 0``) to apex.
        slice_thickness: distance between slices in mm (also the slice thickness used for volumes of a
            single slice).
        ejection_fraction: LV ejection fraction in [0, 0.85]; ``None`` draws it from the group's range
            (overall 0.12-0.80, pathological values included).
        group: one of :data:`PHANTOM_GROUPS`; ``None`` draws one (uniformly, or among the groups whose EF
            range holds ``ejection_fraction`` when that is given).
        noise_std: standard deviation of the Rician noise's Gaussian components (intensities ~[0, 1]);
            0 for a noise-free cine.
        bias_strength: strength of the static multiplicative bias field (``exp(strength * p)``, ``|p| <= 1``);
            0 for none.
        akinetic: make the infarct sector of a MINF subject akinetic: its centre does not contract at all (the
            regional motion is zero there and recovers over about +-40 degrees), a regional motion defect for the
            strain's segment analysis. Implies ``group="MINF"``; the same seed gives the same anatomy and other
            draws as without it.

    Returns:
        dict with

        - ``image``: float32 ``(T, H, W)`` or ``(T, Z, H, W)``.
        - ``label``: uint8, same shape, 0 BG 1 RV 2 Myo 3 LV on every frame; ``label_mask``: ``(T,)`` all True.
        - ``ddf``: float32 ``(T, 2, H, W)`` or ``(T, 3, Z, H, W)``, the true ``u_{ED->t}`` in voxels, channels in
          the order of the spatial axes (the ``Z`` channel is zero: in-plane motion), field 0 exactly zero.
        - ``ed``: 0. ``es``: the frame of the true minimum LV volume (the drawn ES, snapped to a frame).
        - ``spacing``: mm per spatial axis of the array, ``(H, W)`` or ``(Z, H, W)``.
        - ``affine``: 4 x 4 array mapping the array's spatial indices (``(h, w)`` with the slice position in
          the translation, or ``(z, h, w)``) to world mm; the file affine is ``diag(-sH, -sW, sZ)`` plus a
          translation centring the grid.
        - ``lv_volume_ml``, ``rv_volume_ml``: ``(T,)`` from the label counts (voxel count x voxel volume).
        - ``ejection_fraction``: the drawn LV EF; ``group``: the diagnosis group.
        - ``params``: JSON-serialisable summary (sizes in mm, angles in degrees, volume curve knots, ...).

    Raises:
        ValueError: ``num_frames`` outside 2-100, a size below 16 voxels, non-positive spacing or slice
            thickness, ``num_slices`` outside 1-64, ``ejection_fraction`` outside [0, 0.85], an unknown
            ``group``, ``akinetic`` with a group other than MINF, negative noise or bias, or a field of view too
            small for the drawn heart.
    """
    num_frames = _check_int("num_frames", num_frames, _MIN_FRAMES, _MAX_FRAMES)
    size = _check_pair("spatial_size", spatial_size, int, _MIN_SIZE)
    sp = np.array(_check_pair("spacing", spacing, float))
    if np.any(sp <= 0):
        raise ValueError(f"spacing must be positive, got {tuple(spacing)}.")
    if num_slices is not None:
        num_slices = _check_int("num_slices", num_slices, 1, _MAX_SLICES)
    if not (np.isfinite(slice_thickness) and slice_thickness > 0):
        raise ValueError(f"slice_thickness must be a positive number of mm, got {slice_thickness!r}.")
    if ejection_fraction is not None and not 0.0 <= float(ejection_fraction) <= 0.85:
        raise ValueError(f"ejection_fraction must lie in [0, 0.85] (or be None), got {ejection_fraction!r}.")
    if group is not None and group not in PHANTOM_GROUPS:
        raise ValueError(f"group must be one of {PHANTOM_GROUPS} or None, got {group!r}.")
    if akinetic:
        if group not in (None, "MINF"):
            raise ValueError(f"an akinetic sector is an infarct's: akinetic needs group 'MINF' or None, got {group!r}.")
        group = "MINF"
    for name, value in (("noise_std", noise_std), ("bias_strength", bias_strength)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    seed = _check_int("seed", seed, 0, None)

    streams = np.random.SeedSequence(seed).spawn(4)
    rng_heart, rng_curve, rng_scene, rng_noise = (np.random.default_rng(s) for s in streams)
    group = _draw_group(rng_heart, group, ejection_fraction)
    prior = _PRIORS[group]
    ef_drawn = float(rng_heart.uniform(*prior.ef))
    ef = ef_drawn if ejection_fraction is None else float(ejection_fraction)
    hearts, rv_ef_target = _draw_hearts(rng_heart, prior, ef, num_slices, slice_thickness, akinetic)
    profile = _Profile(rng_curve, num_frames, prior.filling_left)
    fov = (np.array(size) - 1) * sp
    hearts = _place_hearts(rng_scene, hearts, fov, sp)
    scene = _draw_scene(rng_scene, hearts, fov)

    xi, xj = np.meshgrid(np.arange(size[0]) * sp[0], np.arange(size[1]) * sp[1], indexing="ij")
    width = _EDGE_PX * float(sp.min())
    nz = len(hearts)
    image = np.empty((num_frames, nz, *size), np.float32)
    label = np.empty((num_frames, nz, *size), np.uint8)
    ddf = np.zeros((num_frames, 2, nz, *size), np.float32)
    phases = np.arange(num_frames) / num_frames
    contraction = profile(phases)
    for z, (h, blobs) in enumerate(zip(hearts, scene.slice_blobs)):
        for t in range(num_frames):
            if t == 0:  # psi_0 is the identity: ED is drawn on its own grid and its field stays exactly 0
                pi, pj = xi, xj
            else:
                drift = tuple(
                    a1 * (np.sin(2 * np.pi * phases[t] + p1) - np.sin(p1))
                    + a2 * (np.sin(4 * np.pi * phases[t] + p2) - np.sin(p2))
                    for a1, p1, a2, p2 in h.drift
                )
                pi, pj = _backward_map(xi, xj, h, float(contraction[t]), ef, drift)
                ddf[t, 0, z] = (pi - xi) / sp[0]
                ddf[t, 1, z] = (pj - xj) / sp[1]
            image[t, z], label[t, z] = _render(pi.astype(np.float32), pj.astype(np.float32), h, scene, blobs, width)

    if bias_strength > 0:
        image *= _bias_field((nz, *size), scene.bias, bias_strength).astype(np.float32)[None]
    if noise_std > 0:
        real = image + np.float32(noise_std) * rng_noise.standard_normal(image.shape, dtype=np.float32)
        imaginary = np.float32(noise_std) * rng_noise.standard_normal(image.shape, dtype=np.float32)
        image = np.sqrt(real**2 + imaginary**2)

    voxel_ml = float(np.prod(sp)) * slice_thickness / 1000.0
    lv_ml = (label == 3).sum(axis=(1, 2, 3)) * voxel_ml
    rv_ml = (label == 1).sum(axis=(1, 2, 3)) * voxel_ml
    file_affine = np.diag([-sp[0], -sp[1], slice_thickness, 1.0])
    file_affine[:3, 3] = [sp[0] * (size[0] - 1) / 2, sp[1] * (size[1] - 1) / 2, -slice_thickness * (nz - 1) / 2]
    mid = hearts[nz // 2]
    params = {
        "seed": seed,
        "group": group,
        "ejection_fraction": ef,
        "rv_ejection_fraction_target": rv_ef_target,
        "es_frame": profile.es_frame,
        "volume_curve_knots": [list(k) for k in profile.knots],
        "lv_endocardial_radius_mm": [h.r_endo for h in hearts],
        "lv_wall_thickness_mm": [h.wall for h in hearts],
        "septal_extra_thickness_mm": mid.septal_extra,
        "ellipse_eccentricity": mid.ecc,
        "rv_depth_mm": [h.rv_depth for h in hearts],
        "twist_deg": [float(np.rad2deg(h.twist)) for h in hearts],
        "infarct": bool(prior.infarct),
        "akinetic": bool(akinetic),
        "lv_centre_mm": [list(h.centre) for h in hearts],
    }
    out = {
        "image": image,
        "label": label,
        "label_mask": np.ones(num_frames, bool),
        "ddf": np.concatenate([np.zeros_like(ddf[:, :1]), ddf], axis=1),
        "ed": 0,
        "es": profile.es_frame,
        "spacing": (float(slice_thickness), float(sp[0]), float(sp[1])),
        "affine": file_to_array_affine(file_affine),
        "lv_volume_ml": lv_ml,
        "rv_volume_ml": rv_ml,
        "ejection_fraction": ef,
        "group": group,
        "params": params,
    }
    if num_slices is None:  # drop the slice axis; the affine maps (h, w) and keeps the slice position
        out["image"], out["label"], out["ddf"] = image[:, 0], label[:, 0], ddf[:, :, 0]
        out["spacing"] = (float(sp[0]), float(sp[1]))
        out["affine"] = file_affine
    return out


def _check_int(name: str, value, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {bound}, got {value}.")
    return int(value)


def _save_atomic(write, path: Path) -> None:
    """Write ``path`` through a hidden temporary file in the same folder, then rename it into place."""
    tmp = path.with_name(f".partial-{path.name}")
    write(tmp)
    os.replace(tmp, path)


def _patient_files(name: str, es: int) -> list[str]:
    frames = sorted({1, es + 1})
    names = [f"{name}_4d.nii.gz", "Info.cfg", f"{name}_4d_gt.nii.gz", f"{name}_ddf.nii.gz"]
    for f in frames:
        names += [f"{name}_frame{f:02d}.nii.gz", f"{name}_frame{f:02d}_gt.nii.gz"]
    return names


def _range_arg(name: str, value, low: int, high: int) -> tuple[int, int]:
    """``value`` as an inclusive range ``(lo, hi)``: an integer ``n`` is ``(n, n)``."""
    pair = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{name} must be an integer or a pair (low, high) of integers, got {value!r}.")
    lo, hi = int(pair[0]), int(pair[1])
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must lie in {low}..{high} with low <= high, got {value!r}.")
    return lo, hi


def write_phantom_dataset(
    root: str | os.PathLike,
    num_subjects: int,
    seed: int = 0,
    num_frames: int | Sequence[int] = (13, 50),
    num_slices: int | Sequence[int] | None = (6, 10),
    spatial_size: Sequence[int] = (128, 128),
    spacing: Sequence[float] = (1.5, 1.5),
    slice_thickness: float = 8.0,
    noise_std: float = 0.03,
    bias_strength: float = 0.2,
) -> list[str]:
    """Write phantom subjects in the ACDC layout, plus their dense labels and true displacements.

    Layout (``NNN`` 1-based, 3 digits; frame numbers ``FF`` 1-based, 2 digits)::

        root/manifest.json                      generation arguments; per patient T, ED/ES (0-based), EF,
                                                spacing, seed, group
        root/patientNNN/Info.cfg                ED: 1, ES, Group, Height, NbFrame, Weight (ACDC's fields)
        root/patientNNN/patientNNN_4d.nii.gz    cine (X, Y, Z, T) float32 = image (T, Z, H, W).transpose(2, 3, 1, 0)
        root/patientNNN/patientNNN_frameFF.nii.gz, patientNNN_frameFF_gt.nii.gz
                                                ED and ES frames (X, Y, Z) and their labels (uint8)
        root/patientNNN/patientNNN_4d_gt.nii.gz labels of every frame (X, Y, Z, T) uint8
        root/patientNNN/patientNNN_ddf.nii.gz   true u_{ED->t} in voxels (X, Y, Z, T, 2) float32, components
                                                along X (= H, i) and Y (= W, j)

    Every file has the affine ``diag(-sx, -sy, sz)`` plus a translation and header zooms ``(sx, sy, sz[, 1])``.
    Subject ``k`` (0-based) gets its frame count, slice count and seed from ``(seed, k)`` alone, so it is
    the same whatever ``num_subjects`` is. Running again with the same arguments rewrites nothing: a subject
    is reused when ``manifest.json`` lists it with the same generation arguments and its files exist;
    otherwise it is (re)generated. Phantom subjects listed in the manifest beyond ``num_subjects`` have
    their files removed (other files are never touched). Files are written under hidden temporary names
    and renamed into place, and the manifest is updated after each subject, so an interrupted run resumes.

    Args:
        root: output folder (created if needed).
        num_subjects: number of subjects, at least 1.
        seed: dataset seed.
        num_frames: frames per subject, an integer or an inclusive range ``(low, high)`` drawn per subject
            (2-100; 13-50 is ACDC's range).
        num_slices: slices per subject, an integer, an inclusive range, or ``None`` for single
            mid-ventricular slices (stored with ``Z = 1``).
        spatial_size, spacing, slice_thickness, noise_std, bias_strength: as for :func:`make_cine_phantom`.

    Returns:
        the patient folders, in order.

    Raises:
        ValueError: bad arguments (see :func:`make_cine_phantom`); a field of view too small for a subject's
            heart.
    """
    num_subjects = _check_int("num_subjects", num_subjects, 1, None)
    seed = _check_int("seed", seed, 0, None)
    frames_range = _range_arg("num_frames", num_frames, _MIN_FRAMES, _MAX_FRAMES)
    slices_range = None if num_slices is None else _range_arg("num_slices", num_slices, 1, _MAX_SLICES)
    arguments = {
        "version": _VERSION,
        "seed": seed,
        "num_frames": list(frames_range),
        "num_slices": None if slices_range is None else list(slices_range),
        "spatial_size": [int(v) for v in _check_pair("spatial_size", spatial_size, int, _MIN_SIZE)],
        "spacing": [float(v) for v in _check_pair("spacing", spacing, float)],
        "slice_thickness": float(slice_thickness),
        "noise_std": float(noise_std),
        "bias_strength": float(bias_strength),
    }
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    previous = {}
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if isinstance(old, dict) and old.get("generator") == __name__:
            same = old.get("arguments") == arguments
            previous = {e["patient"]: (e, same) for e in old.get("patients", []) if "patient" in e}

    changed = False
    for name, (entry, _) in previous.items():
        if int(name[len("patient") :]) > num_subjects:
            changed = True
            folder = root / name
            for file_name in entry.get("files", []):
                (folder / file_name).unlink(missing_ok=True)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    entries, folders = [], []
    for k in range(num_subjects):
        name = f"patient{k + 1:03d}"
        folder = root / name
        folders.append(str(folder))
        entry, same = previous.get(name, ({}, False))
        if same and entry.get("files") and all((folder / f).is_file() for f in entry["files"]):
            entries.append(entry)
            continue
        entries.append(_write_patient(folder, name, k, arguments))
        changed = True
        _write_manifest(manifest_path, arguments, entries)  # lets an interrupted run resume
    if changed or not manifest_path.is_file():
        _write_manifest(manifest_path, arguments, entries)
    return folders


def _write_manifest(path: Path, arguments: dict, entries: list[dict]) -> None:
    content = {"generator": __name__, "arguments": arguments, "patients": entries}
    _save_atomic(lambda tmp: tmp.write_text(json.dumps(content, indent=1)), path)


def _write_patient(folder: Path, name: str, index: int, arguments: dict) -> dict:
    """Generate subject ``index`` and write its files; returns its manifest entry."""
    rng = np.random.default_rng([arguments["seed"], index])
    num_frames = int(rng.integers(arguments["num_frames"][0], arguments["num_frames"][1] + 1))
    slices = arguments["num_slices"]
    num_slices = None if slices is None else int(rng.integers(slices[0], slices[1] + 1))
    subject_seed = int(rng.integers(0, 2**31 - 1))
    height, weight = round(float(rng.uniform(150, 195)), 1), round(float(rng.uniform(50, 110)), 1)
    phantom = make_cine_phantom(
        subject_seed,
        num_frames=num_frames,
        spatial_size=arguments["spatial_size"],
        spacing=arguments["spacing"],
        num_slices=num_slices,
        slice_thickness=arguments["slice_thickness"],
        noise_std=arguments["noise_std"],
        bias_strength=arguments["bias_strength"],
    )
    image, label, ddf = phantom["image"], phantom["label"], phantom["ddf"]
    if num_slices is None:  # store a single slice as Z = 1
        image, label, ddf = image[:, None], label[:, None], ddf[:, :, None]
        inplane = ddf
    else:
        inplane = ddf[:, 1:]
    sx, sy = arguments["spacing"]
    sz = arguments["slice_thickness"]
    nz, nx, ny = image.shape[1:]
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [sx * (nx - 1) / 2, sy * (ny - 1) / 2, -sz * (nz - 1) / 2]
    es = int(phantom["es"])

    folder.mkdir(parents=True, exist_ok=True)
    to_file = (2, 3, 1, 0)  # (T, Z, H, W) -> (X, Y, Z, T)
    arrays = {
        f"{name}_4d.nii.gz": image.transpose(to_file).astype(np.float32),
        f"{name}_4d_gt.nii.gz": label.transpose(to_file).astype(np.uint8),
        f"{name}_ddf.nii.gz": inplane.transpose(3, 4, 2, 0, 1).astype(np.float32),  # (X, Y, Z, T, 2)
    }
    for frame in sorted({0, es}):
        arrays[f"{name}_frame{frame + 1:02d}.nii.gz"] = image[frame].transpose(1, 2, 0).astype(np.float32)
        arrays[f"{name}_frame{frame + 1:02d}_gt.nii.gz"] = label[frame].transpose(1, 2, 0).astype(np.uint8)
    for file_name, data in arrays.items():
        image_file = nifti_image(np.ascontiguousarray(data), affine)
        _save_atomic(lambda tmp, img=image_file: nib.save(img, str(tmp)), folder / file_name)
    info = (
        f"ED: 1\nES: {es + 1}\nGroup: {phantom['group']}\nHeight: {height:.1f}\n"
        f"NbFrame: {num_frames}\nWeight: {weight:.1f}\n"
    )
    _save_atomic(lambda tmp: tmp.write_text(info), folder / "Info.cfg")
    lv = phantom["lv_volume_ml"]
    return {
        "patient": name,
        "group": phantom["group"],
        "seed": subject_seed,
        "T": num_frames,
        "Z": nz,
        "ED": 0,
        "ES": es,
        "ejection_fraction": phantom["ejection_fraction"],
        "ejection_fraction_labels": float(1 - lv[es] / lv[0]) if lv[0] > 0 else float("nan"),
        "spacing_mm": [sx, sy, sz],
        "spacing_known": True,
        "files": _patient_files(name, es),
    }
