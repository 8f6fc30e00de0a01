"""Myocardial strain from motion: Green-Lagrange strain, radial and circumferential curves, AHA segments, wall
thickness.

Which field is the Lagrangian displacement
    Strain is measured on the material, i.e. on the end-diastolic (ED, frame 0) grid: the tissue at ED
    position ``X`` (mm) is at ``x = X + d(X)`` in frame ``t``, and ``d`` (mm) is the *Lagrangian
    displacement*. The project's fields are in MONAI's pull convention (docs/conventions.md): the tracking
    field ``u_{ED->t}`` lives on frame ``t``'s grid and points from each frame-``t`` voxel back to its ED
    position (``warp(I_ED, u_{ED->t}) ~ I_t``), so it is *not* ``d``. Its inverse ``u_{t->ED}`` lives on the ED
    grid and satisfies ``warp(I_t, u_{t->ED})(X) = I_t(X + u_{t->ED}(X)) ~ I_ED(X)``: the ED tissue at ``X`` is
    found at ``X + u_{t->ED}(X)`` in frame ``t``. Hence ``d = u_{t->ED} * spacing``, either the inverse of the
    tracking field (:func:`monai_cardiac.displacement.invert_displacement`) or a network's native
    ``u_{t->ED}`` (motion-compensation direction) taken as it is; :func:`lagrangian_displacement` does both.

Strain
    ``F = I + grad d`` (derivatives in mm per mm, ``F[i, j] = delta_ij + d d_i / d X_j``) and the Green-Lagrange
    tensor ``E = (F^T F - I) / 2``, exact for large deformations and zero for any rigid motion (unlike the
    small-strain tensor ``(grad d + grad d^T) / 2``). Derivatives are finite differences: central
    ``(d[k+1] - d[k-1]) / (2 s)`` inside, one-sided at the array's edges (``torch.gradient``). With a ``mask``
    (the ED myocardium) only voxels of the mask enter a difference: central where both neighbours along the
    axis are in the mask, one-sided where one is, the unmasked difference where neither is. This keeps the
    blood pool (whose motion differs from the muscle's: the gradient jumps at the endocardium) out of the
    myocardial strain. Components are along the array axes ``(H, W)`` (``(Z, H, W)`` in 3D), in physical (mm)
    coordinates, so anisotropic voxels are handled.

Directions and signs
    The angle of a point about the LV centre ``c`` is ``theta = atan2(X_w - c_w, X_h - c_h)`` (mm, array axes):
    0 along ``+H``, 90 degrees along ``+W``. ``e_r = (X - c) / |X - c| = (cos theta, sin theta)`` and
    ``e_c = d e_r / d theta = (-sin theta, cos theta)``, ``e_r`` rotated by +90 degrees from ``+H`` towards ``+W``,
    i.e. the direction of increasing ``theta``: counter-clockwise on screen when the ``(H, W)`` array is drawn
    with ``H`` down the rows and ``W`` across the columns (``matplotlib.pyplot.imshow(array)``). ``E_rr`` and
    ``E_cc`` do not depend on the sign of ``e_c``; the shear ``E_rc`` does. Strains are fractions (multiply by
    100 for %): in systole ``E_rr > 0`` (wall thickening) and ``E_cc < 0`` (shortening).

AHA segments (Cerqueira et al., Circulation 2002)
    In a short-axis slice the segments are numbered from the *anterior* RV insertion point, going through the
    septum towards the inferior insertion point: basal 1 anterior, 2 anteroseptal, 3 inferoseptal, 4 inferior,
    5 inferolateral, 6 anterolateral (mid 7-12 the same; apical 13 anterior, 14 septal, 15 inferior,
    16 lateral). Segment 17 (the apical cap, no cavity) is not assigned. The anterior insertion point is the
    boundary between segments 1 and 2 (7 and 8): with ``psi`` the angle from it in the numbering direction,
    basal/mid segments are 60 degree sectors, ``psi`` in [0, 60) the anteroseptal one, [300, 360) the anterior
    one; apical segments are 90 degree sectors with the septal one centred on ``psi = 60`` (the middle of an
    ideal 120 degree septum), [15, 105) septal, [285, 375) anterior.

    Which RV insertion point is anterior cannot be told from a 2D label map alone (its mirror image is as
    plausible), so ``direction`` says which way the numbering runs in the array's angle ``theta``:
    ``"clockwise"`` (decreasing ``theta``, clockwise in ``imshow(array)``) or ``"counterclockwise"``.
    Assumption for ACDC (and the phantom, whose RV lies along ``(-0.8, 0.6)`` in ``(H, W)`` "as in ACDC
    images"): the standard radiological short-axis view (anterior up, RV on the viewer's left, numbering
    counter-clockwise on screen) is ``imshow(array.T)``, a mirror of ``imshow(array)``, so the numbering is
    ``"clockwise"`` in array terms, the default. The anterior insertion point is then the RV-adjacent
    myocardium at the end of the RV's angular span reached last going round in increasing ``theta``. Check the
    default against your data's orientation (e.g. ``meta["original_affine"]``) before trusting segment names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy, convert_to_tensor
from scipy import ndimage

from monai_cardiac.displacement import check_ddf, invert_displacement
from monai_cardiac.errors import CineDataError

__all__ = [
    "AHA_LEVELS",
    "DEFAULT_SEPTUM_ANGLE_DEG",
    "aha_segments",
    "deformation_gradient",
    "global_strain_curves",
    "lagrangian_displacement",
    "lagrangian_strain",
    "lv_centre",
    "radial_circumferential_strain",
    "rv_insertion_points",
    "segmental_strain_curves",
    "strain_directions",
    "wall_thickness",
]

AHA_LEVELS = ("basal", "mid", "apical")
"""Short-axis levels of the AHA model: segments 1-6, 7-12 and 13-16."""

DEFAULT_SEPTUM_ANGLE_DEG = math.degrees(math.atan2(0.6, -0.8))
"""Fallback direction (``theta``, degrees, about 143.1) from the LV centre to the middle of the septum when a slice
has no RV: the phantom's mean LV-to-RV direction, which it takes from ACDC images."""

_DIRECTIONS = ("clockwise", "counterclockwise")


# ----------------------------------------------------------------------------------------------- input checks
def _spacing(spacing: Sequence[float] | NdarrayOrTensor, dims: int) -> tuple[float, ...]:
    values = convert_to_numpy(spacing, dtype=np.float64, wrap_sequence=True).reshape(-1)
    if values.shape != (dims,) or not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ValueError(f"spacing must be {dims} positive voxel sizes in mm (one per spatial axis), got {spacing}.")
    return tuple(float(v) for v in values)


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}.")
    return value


@overload
def _mask2d(mask: NdarrayOrTensor, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray: ...


@overload
def _mask2d(mask: NdarrayOrTensor | None, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None: ...


def _mask2d(mask: NdarrayOrTensor | None, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    """A 2D mask ``(H, W)`` as a bool numpy array (nonzero = inside), or ``None``."""
    if mask is None:
        return None
    arr = convert_to_numpy(mask, wrap_sequence=True)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2D mask (H, W) of one short-axis slice, got shape {arr.shape}.")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}.")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise CineDataError(f"{name} holds non-finite values", name)
    return arr != 0


def _check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x.detach()).all()):
        raise CineDataError("displacement holds non-finite values (NaN or inf)", name)


def _coordinates(shape: tuple[int, ...], spacing: Sequence[float]) -> np.ndarray:
    """Physical coordinates ``(2, H, W)`` in mm of the voxel centres."""
    grid = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    return np.stack([g * s for g, s in zip(grid, spacing)])


# ------------------------------------------------------------------------------------------- tensors and fields
def lagrangian_displacement(
    ddf: NdarrayOrTensor,
    spacing: Sequence[float] | NdarrayOrTensor,
    direction: str = "ed_to_t",
    num_iterations: int = 100,
    tolerance: float = 1e-3,
) -> torch.Tensor:
    """The Lagrangian displacement ``d`` (mm, on the ED grid) from the project's displacement fields.

    ``d(X)`` is where the ED tissue at ``X`` has moved in frame ``t``, minus ``X`` (module docstring). It is
    ``u_{t->ED}`` scaled to mm:

    - ``direction="ed_to_t"``: ``ddf`` is the project's tracking field ``u_{ED->t}`` (phantom truth, ``track``,
      inference ``ddf``), on frame ``t``'s grid; it is inverted with
      :func:`monai_cardiac.displacement.invert_displacement` (fixed-point iteration; a ``RuntimeWarning`` if it
      does not converge, e.g. for a folding field).
    - ``direction="t_to_ed"``: ``ddf`` already is ``u_{t->ED}`` (a motion-compensation network's native
      output), on the ED grid; it is only scaled.

    Args:
        ddf: displacements ``(T, S, *spatial)`` in voxels (``S`` = 2 for ``(H, W)``, 3 for ``(Z, H, W)``),
            one per frame (frames as the batch).
        spacing: voxel size in mm per spatial axis, in array order.
        direction: ``"ed_to_t"`` or ``"t_to_ed"``, as above.
        num_iterations: largest number of inversion updates (``"ed_to_t"`` only).
        tolerance: inversion stopping threshold in voxels (``"ed_to_t"`` only).

    Returns:
        ``d``, same shape, in mm, on the ED grid; differentiable.

    Raises:
        ValueError: ``ddf`` not shaped ``(T, S, *spatial)``, a bad ``spacing`` or ``direction``.
        CineDataError: non-finite displacements.
    """
    direction = _choice("direction", direction, ("ed_to_t", "t_to_ed"))
    u = check_ddf(convert_to_tensor(ddf, track_meta=False), "ddf")
    _check_finite(u, "lagrangian_displacement(ddf)")
    sp = _spacing(spacing, u.shape[1])
    if direction == "ed_to_t":
        u = invert_displacement(u, num_iterations=num_iterations, tolerance=tolerance)
    scale = torch.as_tensor(sp, dtype=u.dtype, device=u.device).reshape((1, -1) + (1,) * (u.ndim - 2))
    return u * scale


def _masked_gradient(values: torch.Tensor, mask: torch.Tensor | None, dim: int, step: float) -> torch.Tensor:
    """Finite differences of ``values`` along ``dim`` in units of ``step``, restricted to ``mask`` (see module)."""
    plain = torch.gradient(values, spacing=step, dim=dim)[0]
    if mask is None:
        return plain
    n = values.shape[dim]
    forward = (values.narrow(dim, 1, n - 1) - values.narrow(dim, 0, n - 1)) / step  # between k and k + 1
    pair = mask.narrow(dim, 1, n - 1) & mask.narrow(dim, 0, n - 1)
    pad_v = torch.zeros_like(values.narrow(dim, 0, 1))
    pad_m = torch.zeros_like(mask.narrow(dim, 0, 1))
    fwd, fwd_ok = torch.cat([forward, pad_v], dim), torch.cat([pair, pad_m], dim)  # k to k + 1, both inside
    bwd, bwd_ok = torch.cat([pad_v, forward], dim), torch.cat([pad_m, pair], dim)  # k - 1 to k, both inside
    out = torch.where(bwd_ok, bwd, plain)
    out = torch.where(fwd_ok, fwd, out)
    return torch.where(fwd_ok & bwd_ok, 0.5 * (fwd + bwd), out)


def deformation_gradient(
    d: NdarrayOrTensor, spacing: Sequence[float] | NdarrayOrTensor, mask: NdarrayOrTensor | None = None
) -> torch.Tensor:
    """Deformation gradient ``F = I + grad d`` of a Lagrangian displacement, per voxel of the ED grid.

    Args:
        d: Lagrangian displacement ``(B, S, *spatial)`` in mm (e.g. from :func:`lagrangian_displacement`),
            ``S`` = 2 or 3 components along the spatial axes; frames go as the batch.
        spacing: voxel size in mm per spatial axis, in array order.
        mask: optional region ``(*spatial)`` or ``(B, *spatial)``, nonzero inside: differences use only voxels
            inside it where they can (module docstring).

    Returns:
        tensor ``(B, S, S, *spatial)``, ``[b, i, j] = delta_ij + d d_i / d X_j`` (dimensionless); differentiable
        with respect to ``d``.

    Raises:
        ValueError: ``d`` not shaped ``(B, S, *spatial)`` or not floating point, a spatial axis shorter than
            2 voxels, a bad ``spacing`` or a mask of the wrong shape.
    """
    d_t = check_ddf(convert_to_tensor(d, track_meta=False), "d")
    dims = d_t.shape[1]
    sp = _spacing(spacing, dims)
    if min(d_t.shape[2:]) < 2:
        raise ValueError(f"every spatial axis of d needs at least 2 voxels, got shape {tuple(d_t.shape)}.")
    mask_t = None
    if mask is not None:
        mask_t = convert_to_tensor(mask, device=d_t.device, track_meta=False) != 0
        spatial = tuple(d_t.shape[2:])
        if tuple(mask_t.shape) not in (spatial, (d_t.shape[0],) + spatial):
            raise ValueError(
                f"mask must have shape {spatial} or {(d_t.shape[0],) + spatial}, got {tuple(mask_t.shape)}."
            )
        mask_t = torch.broadcast_to(mask_t, (d_t.shape[0],) + spatial)[:, None].expand_as(d_t)
    grads = [_masked_gradient(d_t, mask_t, 2 + j, sp[j]) for j in range(dims)]
    grad = torch.stack(grads, dim=2)  # [b, i, j] = d d_i / d X_j
    eye = torch.eye(dims, dtype=grad.dtype, device=grad.device).reshape((1, dims, dims) + (1,) * (d_t.ndim - 2))
    return grad + eye


def lagrangian_strain(
    d: NdarrayOrTensor, spacing: Sequence[float] | NdarrayOrTensor, mask: NdarrayOrTensor | None = None
) -> torch.Tensor:
    """Green-Lagrange strain tensor ``E = (F^T F - I) / 2`` per voxel of the ED grid.

    ``d`` is the Lagrangian displacement on the ED grid in mm, *not* the tracking field ``u_{ED->t}``: get it
    with :func:`lagrangian_displacement` (module docstring). ``E`` is invariant under rigid rotations and
    translations and exact for large strains; for a uniform stretch ``d = (a X_h, b X_w)`` it is
    ``diag(a + a^2 / 2, b + b^2 / 2)``.

    Args:
        d: Lagrangian displacement ``(B, S, *spatial)`` in mm; frames go as the batch.
        spacing: voxel size in mm per spatial axis, in array order.
        mask: optional region (see :func:`deformation_gradient`), e.g. the ED myocardium.

    Returns:
        tensor ``(B, S, S, *spatial)``, symmetric, components along the array axes, dimensionless (strain as a
        fraction); differentiable with respect to ``d``.

    Raises:
        ValueError: as :func:`deformation_gradient`.
    """
    f = deformation_gradient(d, spacing, mask)
    dims = f.shape[1]
    eye = torch.eye(dims, dtype=f.dtype, device=f.device).reshape((1, dims, dims) + (1,) * (f.ndim - 3))
    return 0.5 * (torch.einsum("bki...,bkj...->bij...", f, f) - eye)


# ------------------------------------------------------------------------------------------------- geometry
def lv_centre(lv_mask: NdarrayOrTensor, myo_mask: NdarrayOrTensor | None = None) -> np.ndarray:
    """Centre of the LV in a short-axis slice: the centroid of the LV blood pool, else of the myocardium.

    Args:
        lv_mask: LV blood pool (label 3) ``(H, W)``, nonzero inside.
        myo_mask: myocardium (label 2) ``(H, W)``, used when the blood pool is empty (e.g. an apical slice).

    Returns:
        float64 array ``(2,)``: the centre in voxel coordinates ``(h, w)`` (multiply by the spacing for mm).

    Raises:
        ValueError: masks that are not 2D or of different shapes.
        CineDataError: both masks empty.
    """
    lv = _mask2d(lv_mask, "lv_mask")
    myo = _mask2d(myo_mask, "myo_mask", lv.shape)
    for region in (lv, myo):
        if region is not None and region.any():
            return np.argwhere(region).mean(axis=0)
    raise CineDataError("both the LV blood pool and the myocardium are empty: no LV centre", "lv_centre")


def strain_directions(
    lv_mask: NdarrayOrTensor,
    myo_mask: NdarrayOrTensor | None,
    spacing: Sequence[float] | NdarrayOrTensor,
    centre: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial and circumferential unit vectors at every ED voxel of a short-axis slice.

    ``e_r = (X - c) / |X - c|`` from the LV centre ``c`` (:func:`lv_centre` unless given) and ``e_c`` = ``e_r``
    rotated by +90 degrees from ``+H`` towards ``+W`` (increasing ``theta``; module docstring), both in physical
    (mm) components along ``(H, W)``. At the centre itself (``X = c`` exactly) both are zero.

    Args:
        lv_mask: LV blood pool ``(H, W)`` at ED.
        myo_mask: ED myocardium ``(H, W)`` (centre fallback), or ``None``.
        spacing: in-plane voxel size ``(sH, sW)`` in mm.
        centre: optional centre ``(h, w)`` in voxel coordinates, overriding the masks' centroid.

    Returns:
        ``(e_r, e_c)``, float64 tensors ``(2, H, W)``.

    Raises:
        ValueError: masks that are not 2D or of different shapes, a bad ``spacing`` or ``centre``.
        CineDataError: no centre (both masks empty, no ``centre``).
    """
    lv = _mask2d(lv_mask, "lv_mask")
    sp = _spacing(spacing, 2)
    c = lv_centre(lv, myo_mask) if centre is None else np.asarray(centre, dtype=np.float64).reshape(-1)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"centre must be two finite voxel coordinates (h, w), got {centre}.")
    rel = _coordinates(lv.shape, sp) - (c * np.asarray(sp))[:, None, None]
    norm = np.linalg.norm(rel, axis=0)
    e_r = np.where(norm > 0, rel / np.maximum(norm, 1e-300), 0.0)
    e_c = np.stack([-e_r[1], e_r[0]])
    return torch.as_tensor(e_r), torch.as_tensor(e_c)


def radial_circumferential_strain(
    strain: NdarrayOrTensor, e_r: NdarrayOrTensor, e_c: NdarrayOrTensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project 2D strain tensors on the radial and circumferential directions.

    Args:
        strain: ``E`` ``(B, 2, 2, H, W)``, e.g. from :func:`lagrangian_strain`.
        e_r: radial unit vectors ``(2, H, W)`` (:func:`strain_directions`).
        e_c: circumferential unit vectors ``(2, H, W)``.

    Returns:
        ``(E_rr, E_cc, E_rc)``, tensors ``(B, H, W)``: ``e_r^T E e_r``, ``e_c^T E e_c`` and the shear
        ``e_r^T E e_c`` (fractions); differentiable with respect to ``strain``.

    Raises:
        ValueError: shapes that do not match.
    """
    e = convert_to_tensor(strain, track_meta=False)
    if e.ndim != 5 or e.shape[1:3] != (2, 2):
        raise ValueError(f"strain must be 2D tensors (B, 2, 2, H, W), got shape {tuple(e.shape)}.")
    er = convert_to_tensor(e_r, track_meta=False).to(device=e.device, dtype=e.dtype)
    ec = convert_to_tensor(e_c, track_meta=False).to(device=e.device, dtype=e.dtype)
    if er.shape != (2,) + tuple(e.shape[3:]) or ec.shape != er.shape:
        raise ValueError(
            f"e_r and e_c must be shaped {(2,) + tuple(e.shape[3:])}, got {tuple(er.shape)} and {tuple(ec.shape)}."
        )

    def project(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.einsum("i...,bij...,j...->b...", a, e, b)

    return project(er, er), project(ec, ec), project(er, ec)


# ----------------------------------------------------------------------------------------------------- curves
def _summary(radial: torch.Tensor, circumferential: torch.Tensor, frame_interval: float | None) -> dict:
    """Curves, peaks, times to peak and strain rates of one region (see :func:`global_strain_curves`)."""
    out: dict = {
        "radial": radial,
        "circumferential": circumferential,
        "radial_percent": 100.0 * radial,
        "circumferential_percent": 100.0 * circumferential,
    }
    for name, curve, pick in (("radial", radial, np.nanargmax), ("circumferential", circumferential, np.nanargmin)):
        values = curve.detach().cpu().double().numpy()
        if np.all(np.isnan(values)):
            peak, frame = float("nan"), -1
        else:
            frame = int(pick(values))
            peak = float(values[frame])
        out[f"peak_{name}"] = peak
        out[f"peak_{name}_percent"] = 100.0 * peak
        out[f"time_to_peak_{name}"] = frame
        rate = torch.gradient(curve, dim=0)[0] if curve.shape[0] > 1 else torch.zeros_like(curve)
        out[f"{name}_rate"] = rate
        if frame_interval is not None:
            out[f"{name}_rate_per_s"] = rate / frame_interval
            out[f"time_to_peak_{name}_s"] = frame * frame_interval if frame >= 0 else float("nan")
    return out


def _masked_curve(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``(T, H, W)`` over ``mask`` ``(H, W)`` per frame; NaN for an empty mask."""
    count = mask.sum()
    if count == 0:
        return torch.full(values.shape[:1], float("nan"), dtype=values.dtype, device=values.device)
    return torch.where(mask, values, torch.zeros_like(values)).flatten(1).sum(dim=1) / count


def _strain_maps(
    d_sequence: NdarrayOrTensor,
    myo: np.ndarray,
    lv_mask_ed: NdarrayOrTensor | None,
    spacing: Sequence[float] | NdarrayOrTensor,
    within_mask: bool,
    frame_interval: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = convert_to_tensor(d_sequence, track_meta=False)
    if d.ndim != 4 or d.shape[1] != 2:
        raise ValueError(
            f"d_sequence must be a 2D Lagrangian displacement sequence (T, 2, H, W) in mm, got shape {tuple(d.shape)}."
        )
    if not d.is_floating_point():
        raise ValueError(f"d_sequence must be floating point (mm), got dtype {d.dtype}.")
    _check_finite(d, "d_sequence")
    if frame_interval is not None and not (math.isfinite(frame_interval) and frame_interval > 0):
        raise ValueError(f"frame_interval must be a positive number of seconds (or None), got {frame_interval}.")
    if myo.shape != tuple(d.shape[2:]):
        raise ValueError(f"the ED masks must have the shape {tuple(d.shape[2:])} of d_sequence, got {myo.shape}.")
    if not myo.any():
        raise CineDataError("the ED myocardium mask is empty: there is no myocardium to measure strain in", "strain")
    lv = np.zeros_like(myo) if lv_mask_ed is None else _mask2d(lv_mask_ed, "lv_mask_ed", myo.shape)
    e_r, e_c = strain_directions(lv, myo, spacing)
    mask_t = torch.as_tensor(myo, device=d.device)
    strain = lagrangian_strain(d, spacing, mask_t if within_mask else None)
    e_rr, e_cc, _ = radial_circumferential_strain(strain, e_r, e_c)
    return e_rr, e_cc, mask_t


def global_strain_curves(
    d_sequence: NdarrayOrTensor,
    myo_mask_ed: NdarrayOrTensor,
    lv_mask_ed: NdarrayOrTensor | None,
    spacing: Sequence[float] | NdarrayOrTensor,
    frame_interval: float | None = None,
    within_mask: bool = True,
) -> dict:
    """Global radial and circumferential strain of a short-axis slice over the cycle.

    Per frame, ``E_rr`` and ``E_cc`` (:func:`radial_circumferential_strain` of :func:`lagrangian_strain`, with
    directions about the ED LV centre) averaged over the voxels of the ED myocardium.

    Args:
        d_sequence: Lagrangian displacements ``(T, 2, H, W)`` in mm on the ED grid, frame 0 = ED
            (:func:`lagrangian_displacement`; *not* the tracking field ``u_{ED->t}`` itself).
        myo_mask_ed: ED myocardium (label 2) ``(H, W)``, nonzero inside.
        lv_mask_ed: ED LV blood pool (label 3) ``(H, W)`` for the centre, or ``None`` (centre of the
            myocardium).
        spacing: in-plane voxel size ``(sH, sW)`` in mm.
        frame_interval: time between frames in seconds (e.g. RR interval / T); adds rates per second.
        within_mask: differentiate inside the myocardium only (module docstring); ``False`` for plain
            central differences across its boundaries.

    Returns:
        dict with

        - ``radial``, ``circumferential``: tensors ``(T,)``, mean ``E_rr`` and ``E_cc`` (fractions;
          differentiable), and ``radial_percent``, ``circumferential_percent`` (x100, %).
        - ``peak_radial`` (largest ``E_rr``), ``peak_circumferential`` (smallest, most negative ``E_cc``):
          floats (fractions), also ``peak_*_percent``; ``time_to_peak_radial``, ``time_to_peak_circumferential``:
          frame index of the peak (0-based, from ED).
        - ``radial_rate``, ``circumferential_rate``: strain rate ``(T,)`` per frame (central differences in
          time, one-sided at the first and last frames); with ``frame_interval`` also ``*_rate_per_s`` (1/s)
          and ``time_to_peak_*_s`` (s).
        - ``num_voxels``: number of ED myocardial voxels averaged.

    Raises:
        ValueError: ``d_sequence`` not ``(T, 2, H, W)`` floating point, masks of the wrong shape, a bad
            ``spacing`` or ``frame_interval``.
        CineDataError: an empty ED myocardium, or non-finite displacements.
    """
    myo = _mask2d(myo_mask_ed, "myo_mask_ed")
    e_rr, e_cc, mask_t = _strain_maps(d_sequence, myo, lv_mask_ed, spacing, within_mask, frame_interval)
    out = _summary(_masked_curve(e_rr, mask_t), _masked_curve(e_cc, mask_t), frame_interval)
    out["num_voxels"] = int(myo.sum())
    return out


def segmental_strain_curves(
    d_sequence: NdarrayOrTensor,
    segments: NdarrayOrTensor,
    lv_mask_ed: NdarrayOrTensor | None,
    spacing: Sequence[float] | NdarrayOrTensor,
    frame_interval: float | None = None,
    within_mask: bool = True,
) -> dict[int, dict]:
    """Radial and circumferential strain curves of each AHA segment of a short-axis slice.

    As :func:`global_strain_curves`, with the ED myocardium given by ``segments > 0`` (derivatives inside the
    whole myocardium, not each segment) and the mean taken over each segment.

    Args:
        d_sequence: Lagrangian displacements ``(T, 2, H, W)`` in mm on the ED grid.
        segments: ED segment map ``(H, W)`` from :func:`aha_segments` (0 outside the myocardium).
        lv_mask_ed: ED LV blood pool ``(H, W)`` for the centre, or ``None``.
        spacing: in-plane voxel size ``(sH, sW)`` in mm.
        frame_interval: time between frames in seconds, or ``None``.
        within_mask: as for :func:`global_strain_curves`.

    Returns:
        ``{segment id: dict}`` for every id present in ``segments``, each dict as returned by
        :func:`global_strain_curves`.

    Raises:
        ValueError: as :func:`global_strain_curves`; ``segments`` holding values outside 0-16.
        CineDataError: no segment at all, or non-finite displacements.
    """
    seg = convert_to_numpy(segments, wrap_sequence=True)
    if seg.ndim != 2:
        raise ValueError(f"segments must be a 2D segment map (H, W), got shape {seg.shape}.")
    valid = np.all(np.isfinite(seg)) and np.array_equal(seg, np.rint(seg)) and np.all((seg >= 0) & (seg <= 16))
    if not valid:
        raise ValueError("segments must hold AHA segment ids 1-16 and 0 outside the myocardium.")
    seg = seg.astype(np.int64)
    e_rr, e_cc, _ = _strain_maps(d_sequence, seg > 0, lv_mask_ed, spacing, within_mask, frame_interval)
    out = {}
    for sid in np.unique(seg[seg > 0]).tolist():
        region = torch.as_tensor(seg == sid, device=e_rr.device)
        curves = _summary(_masked_curve(e_rr, region), _masked_curve(e_cc, region), frame_interval)
        curves["num_voxels"] = int((seg == sid).sum())
        out[int(sid)] = curves
    return out


# -------------------------------------------------------------------------------------------------- segments
def _angles(points: np.ndarray, centre_mm: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """``theta`` (radians, in (-pi, pi]) of voxel indices ``points`` ``(N, 2)`` about ``centre_mm``."""
    rel = points * np.asarray(spacing) - centre_mm
    return np.arctan2(rel[:, 1], rel[:, 0])


def _angular_span(angles: np.ndarray) -> tuple[float, float]:
    """``(start, end)`` of the smallest arc, run in increasing angle, holding all ``angles`` (radians)."""
    a = np.sort(np.mod(angles, 2 * np.pi))
    gaps = np.diff(np.concatenate([a, a[:1] + 2 * np.pi]))
    k = int(np.argmax(gaps))  # the largest empty arc runs from a[k] to a[k + 1]
    return float(a[(k + 1) % a.size]), float(a[k])


def rv_insertion_points(
    myo_mask: NdarrayOrTensor,
    lv_mask: NdarrayOrTensor,
    rv_mask: NdarrayOrTensor,
    spacing: Sequence[float] | NdarrayOrTensor = (1.0, 1.0),
    direction: str = "clockwise",
) -> dict | None:
    """The anterior and inferior RV insertion points of a short-axis slice.

    The myocardial voxels touching the RV blood pool (sharing a face with an RV voxel) are seen from the LV centre
    (:func:`lv_centre`); the insertion points are those at the two ends of their angular span (the smallest arc
    holding them all). Which end is anterior follows from ``direction`` (module docstring): for
    ``"clockwise"`` (ACDC assumption) the end reached last when the arc is run in increasing ``theta``. If the
    RV does not touch the myocardium the RV voxels' own span is used.

    Args:
        myo_mask: myocardium (label 2) ``(H, W)``.
        lv_mask: LV blood pool (label 3) ``(H, W)``.
        rv_mask: RV blood pool (label 1) ``(H, W)``.
        spacing: in-plane voxel size ``(sH, sW)`` in mm (angles are measured in mm).
        direction: AHA numbering direction in the array, ``"clockwise"`` or ``"counterclockwise"``.

    Returns:
        ``None`` when the RV is empty; else a dict with ``anterior``, ``inferior`` (voxel indices ``(h, w)``
        of the insertion points), ``anterior_angle``, ``inferior_angle`` (``theta`` in degrees, [0, 360)),
        ``septum_angle`` (the middle of the arc between them through the RV side) and ``centre`` (voxel
        coordinates of the LV centre).

    Raises:
        ValueError: masks not 2D or of different shapes, a bad ``spacing`` or ``direction``.
        CineDataError: empty LV and myocardium (no centre).
    """
    direction = _choice("direction", direction, _DIRECTIONS)
    myo = _mask2d(myo_mask, "myo_mask")
    lv = _mask2d(lv_mask, "lv_mask", myo.shape)
    rv = _mask2d(rv_mask, "rv_mask", myo.shape)
    sp = _spacing(spacing, 2)
    if not rv.any():
        return None
    centre = lv_centre(lv, myo)
    centre_mm = centre * np.asarray(sp)
    touching = myo & ndimage.binary_dilation(rv)  # sharing a face with an RV voxel
    points = np.argwhere(touching if touching.any() else rv)
    angles = _angles(points, centre_mm, sp)
    start, end = _angular_span(angles)
    wrapped = np.mod(angles, 2 * np.pi)

    def point_at(angle: float) -> np.ndarray:
        candidates = points[np.isclose(wrapped, angle)]
        dist = np.linalg.norm(candidates * np.asarray(sp) - centre_mm, axis=1)
        return candidates[int(np.argmin(dist))]  # innermost of the voxels on that ray

    anterior, inferior = (end, start) if direction == "clockwise" else (start, end)
    span = np.mod(end - start, 2 * np.pi)
    return {
        "anterior": point_at(anterior),
        "inferior": point_at(inferior),
        "anterior_angle": math.degrees(anterior) % 360.0,
        "inferior_angle": math.degrees(inferior) % 360.0,
        "septum_angle": math.degrees(start + span / 2) % 360.0,
        "centre": centre,
    }


def _segment_ids(psi_deg: np.ndarray, level: str) -> np.ndarray:
    """AHA ids from the angle ``psi`` (degrees) past the anterior insertion point in the numbering direction."""
    psi = np.mod(psi_deg, 360.0)
    if level == "apical":
        k = np.floor((psi - 15.0) / 90.0).astype(np.int64) % 4
        return 13 + (k + 1) % 4
    k = np.floor(psi / 60.0).astype(np.int64) % 6
    return (1 if level == "basal" else 7) + (k + 1) % 6


def _anterior_angle(
    myo: np.ndarray, lv: np.ndarray, rv: np.ndarray | None, sp, direction: str, anterior_angle, septum_angle
) -> tuple[float, np.ndarray]:
    """``theta`` (degrees) of the anterior insertion point and the LV centre (voxels), with the fallbacks."""
    centre = lv_centre(lv, myo)
    if anterior_angle is not None:
        return float(anterior_angle), centre
    found = None if rv is None else rv_insertion_points(myo, lv, rv, sp, direction)
    if found is not None:
        return found["anterior_angle"], centre
    sign = 1.0 if direction == "clockwise" else -1.0
    return float(septum_angle) + sign * 60.0, centre


def aha_segments(
    myo_mask: NdarrayOrTensor,
    lv_mask: NdarrayOrTensor,
    rv_mask: NdarrayOrTensor | None,
    level: str,
    spacing: Sequence[float] | NdarrayOrTensor = (1.0, 1.0),
    direction: str = "clockwise",
    anterior_angle: float | None = None,
    fallback_septum_angle: float = DEFAULT_SEPTUM_ANGLE_DEG,
) -> torch.Tensor:
    """AHA segment of every myocardial voxel of a short-axis slice.

    The angle ``theta`` of each voxel about the LV centre is measured from the anterior RV insertion point
    (:func:`rv_insertion_points`) in the numbering ``direction``, and cut into 60 degree (basal, mid) or 90
    degree (apical) sectors as in the module docstring. Without an RV (empty ``rv_mask`` or ``None``, typical
    of apical slices) the anterior insertion point is put 60 degrees from ``fallback_septum_angle`` against
    the numbering direction, i.e. where an ideal 120 degree septum centred on that angle would begin; better,
    pass ``anterior_angle`` found on a slice of the same stack that has an RV.

    Args:
        myo_mask: myocardium (label 2) ``(H, W)``.
        lv_mask: LV blood pool (label 3) ``(H, W)``, for the centre (myocardium centroid if empty).
        rv_mask: RV blood pool (label 1) ``(H, W)``, or ``None``.
        level: ``"basal"`` (segments 1-6), ``"mid"`` (7-12) or ``"apical"`` (13-16).
        spacing: in-plane voxel size ``(sH, sW)`` in mm.
        direction: AHA numbering direction in the array, ``"clockwise"`` (default, ACDC assumption) or
            ``"counterclockwise"`` (module docstring).
        anterior_angle: ``theta`` (degrees) of the anterior insertion point, overriding the RV.
        fallback_septum_angle: ``theta`` (degrees) of the middle of the septum when there is no RV; the default
            :data:`DEFAULT_SEPTUM_ANGLE_DEG` (about 143.1) is the phantom's and ACDC's usual LV-to-RV direction.

    Returns:
        int64 tensor ``(H, W)``: segment ids, 0 outside the myocardium.

    Raises:
        ValueError: masks not 2D or of different shapes, an unknown ``level`` or ``direction``, a bad
            ``spacing``.
        CineDataError: an empty myocardium.
    """
    level = _choice("level", level, AHA_LEVELS)
    direction = _choice("direction", direction, _DIRECTIONS)
    myo = _mask2d(myo_mask, "myo_mask")
    lv = _mask2d(lv_mask, "lv_mask", myo.shape)
    rv = _mask2d(rv_mask, "rv_mask", myo.shape)
    sp = _spacing(spacing, 2)
    if not myo.any():
        raise CineDataError("the myocardium mask is empty: no voxel to assign an AHA segment to", "aha_segments")
    start, centre = _anterior_angle(myo, lv, rv, sp, direction, anterior_angle, fallback_septum_angle)
    points = np.argwhere(myo)
    theta = np.degrees(_angles(points, centre * np.asarray(sp), sp))
    sign = -1.0 if direction == "clockwise" else 1.0
    out = np.zeros(myo.shape, np.int64)
    out[myo] = _segment_ids(sign * (theta - start), level)
    return torch.as_tensor(out)


# ------------------------------------------------------------------------------------------------ thickness
def wall_thickness(
    myo_mask: NdarrayOrTensor,
    lv_mask: NdarrayOrTensor | None,
    spacing: Sequence[float] | NdarrayOrTensor,
    segments: NdarrayOrTensor | None = None,
    num_rays: int = 360,
    centre: Sequence[float] | None = None,
) -> dict:
    """Myocardial wall thickness along rays from the LV centre, globally and per segment (mm).

    ``num_rays`` rays leave the LV centre at equal angles ``theta``. Along each ray (steps of a quarter of the
    smallest voxel size) the myocardium indicator is interpolated bilinearly; the endocardial boundary is the
    first crossing of 0.5 going in, the epicardial one the next crossing going out (both interpolated between
    steps), and the thickness is their distance in mm. Rays that miss the myocardium give NaN. For the ED and
    ES thickness call it with the ED and the ES masks (and segment maps).

    Args:
        myo_mask: myocardium (label 2) ``(H, W)``.
        lv_mask: LV blood pool (label 3) ``(H, W)`` for the centre, or ``None`` (myocardium centroid).
        spacing: in-plane voxel size ``(sH, sW)`` in mm.
        segments: optional segment map ``(H, W)`` (:func:`aha_segments`) of the same frame; each ray counts for
            the segment of the myocardial voxel nearest the middle of its wall.
        num_rays: number of rays, at least 8.
        centre: optional centre ``(h, w)`` in voxel coordinates.

    Returns:
        dict with ``mean`` (float, mm, mean over the rays that hit the wall), ``rays`` (float64 tensor
        ``(num_rays,)``, mm, NaN where a ray misses), ``angles`` (tensor ``(num_rays,)``, ``theta`` in degrees)
        and, with ``segments``, ``segments``: ``{segment id: mean thickness in mm}``.

    Raises:
        ValueError: masks not 2D or of different shapes, a bad ``spacing``, ``num_rays`` or ``centre``.
        CineDataError: an empty myocardium.
    """
    myo = _mask2d(myo_mask, "myo_mask")
    lv = np.zeros_like(myo) if lv_mask is None else _mask2d(lv_mask, "lv_mask", myo.shape)
    sp = np.asarray(_spacing(spacing, 2))
    if isinstance(num_rays, bool) or not isinstance(num_rays, (int, np.integer)) or num_rays < 8:
        raise ValueError(f"num_rays must be an integer of at least 8, got {num_rays!r}.")
    if not myo.any():
        raise CineDataError("the myocardium mask is empty: no wall to measure", "wall_thickness")
    seg = None
    if segments is not None:
        seg = convert_to_numpy(segments, wrap_sequence=True)
        if seg.shape != myo.shape:
            raise ValueError(f"segments must have shape {myo.shape}, got {seg.shape}.")
    c = lv_centre(lv, myo) if centre is None else np.asarray(centre, dtype=np.float64).reshape(-1)
    if c.shape != (2,) or not np.all(np.isfinite(c)):
        raise ValueError(f"centre must be two finite voxel coordinates (h, w), got {centre}.")

    step = float(sp.min()) / 4.0
    far = float(np.max(np.linalg.norm(np.argwhere(myo) * sp - c * sp, axis=1))) + 2.0 * float(sp.max())
    radii = np.arange(0.0, far + step, step)
    theta = np.arange(num_rays) * (2 * np.pi / num_rays)
    direction = np.stack([np.cos(theta), np.sin(theta)], axis=1)  # (N, 2) in mm
    pts = c[None, None] + radii[None, :, None] * direction[:, None] / sp  # (N, R, 2) voxel coordinates
    profile = ndimage.map_coordinates(myo.astype(np.float64), pts.reshape(-1, 2).T, order=1, mode="constant")
    profile = profile.reshape(num_rays, radii.size)

    thickness = np.full(num_rays, np.nan)
    middle = np.full(num_rays, np.nan)
    for n in range(num_rays):
        p = profile[n]
        inside = p >= 0.5
        if not inside.any():
            continue
        i_in = int(np.argmax(inside))
        outside_after = np.flatnonzero(~inside[i_in:])
        i_out = i_in + int(outside_after[0]) if outside_after.size else radii.size - 1

        def crossing(i: int) -> float:  # radius of the 0.5 crossing between samples i - 1 and i
            if i == 0:
                return 0.0
            a, b = p[i - 1], p[i]
            return float(radii[i - 1] + (0.5 - a) / (b - a) * step) if b != a else float(radii[i])

        r_endo, r_epi = crossing(i_in), crossing(i_out)
        thickness[n] = r_epi - r_endo
        middle[n] = 0.5 * (r_endo + r_epi)

    out: dict = {
        "mean": float(np.nanmean(thickness)) if np.isfinite(thickness).any() else float("nan"),
        "rays": torch.as_tensor(thickness),
        "angles": torch.as_tensor(np.degrees(theta)),
    }
    if seg is not None:
        per: dict[int, list[float]] = {}
        seg_points = np.argwhere(myo & (seg > 0))
        for ray in np.flatnonzero(np.isfinite(thickness)):
            if seg_points.size == 0:
                break
            mid = c + middle[ray] * direction[ray] / sp
            nearest = seg_points[np.argmin(np.linalg.norm((seg_points - mid) * sp, axis=1))]
            per.setdefault(int(seg[tuple(nearest)]), []).append(float(thickness[ray]))
        out["segments"] = {sid: float(np.mean(v)) for sid, v in sorted(per.items())}
    return out
