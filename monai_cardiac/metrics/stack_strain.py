"""Strain and wall thickness of a whole short-axis stack: global curves and the 16 AHA segments.

The per-slice quantities of :mod:`monai_cardiac.metrics.strain` pooled over a subject's stack, as a cardiologist
reads them: a global radial and circumferential strain curve, the peak strain of each AHA segment (bull's-eye) and
the wall thickness of each segment at ED and ES.

Levels: the slices whose ED labels hold myocardium are split, in slice order, into three nearly equal groups,
basal, mid and apical (``numpy.array_split``); slice 0 is taken as the most basal, as in ACDC (``base_first``
reverses it). Segments of each slice follow :func:`~monai_cardiac.metrics.strain.aha_segments` (its ``direction``
assumption included); an apical slice without RV takes the anterior insertion angle of the nearest slice that has
one. Curves are pooled over slices as means weighted by each slice's number of ED myocardial voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

from monai_cardiac.data.nifti import LABEL_IDS
from monai_cardiac.errors import CineDataError
from monai_cardiac.metrics.strain import (
    AHA_LEVELS,
    aha_segments,
    global_strain_curves,
    lagrangian_displacement,
    rv_insertion_points,
    segmental_strain_curves,
    wall_thickness,
)

__all__ = ["AHA_SEGMENT_NAMES", "PEAK_STRAIN_KEYS", "stack_strain"]

AHA_SEGMENT_NAMES = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
    5: "basal inferolateral", 6: "basal anterolateral", 7: "mid anterior", 8: "mid anteroseptal",
    9: "mid inferoseptal", 10: "mid inferior", 11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral",
}
"""Names of the AHA segments 1-16 (Cerqueira et al., Circulation 2002)."""

PEAK_STRAIN_KEYS = ("peak_radial_percent", "peak_circumferential_percent")
"""The peak values of a :func:`stack_strain` result (its ``global`` entry and each segment's), in %."""


def _pooled(curves: Sequence[tuple[int, np.ndarray]]) -> np.ndarray:
    """Mean of curves weighted by their voxel counts."""
    weights = np.array([w for w, _ in curves], dtype=np.float64)
    return np.sum([w * c for w, c in curves], axis=0) / weights.sum()


def stack_strain(
    labels: NdarrayOrTensor,
    tracking: NdarrayOrTensor,
    spacing: Sequence[float],
    ed: int = 0,
    es: int | None = None,
    base_first: bool = True,
    direction: str = "clockwise",
) -> dict[str, Any]:
    """Global and per-segment radial / circumferential strain and wall thickness of a short-axis stack.

    Args:
        labels: class ids ``(T, Z, H, W)`` (0 BG, 1 RV, 2 Myo, 3 LV), frames in file order; the ED frame's labels
            define the myocardium the strain is measured on, the ES frame's the ES wall thickness.
        tracking: ``u_{ED->t}`` ``(T, 2, Z, H, W)`` in voxels, frames in file order (zero at ED).
        spacing: in-plane voxel size ``(sH, sW)`` in mm.
        ed: 0-based ED frame.
        es: 0-based ES frame (default: the frame of the smallest LV volume).
        base_first: slice 0 is the most basal one.
        direction: AHA numbering direction (:func:`~monai_cardiac.metrics.strain.aha_segments`).

    Returns:
        dict with ``frames`` (file frame indices, ED first, the order of every curve), ``es``, ``global``
        (``radial_percent`` / ``circumferential_percent`` lists, ``peak_radial_percent``,
        ``peak_circumferential_percent``, ``time_to_peak_*`` in frames from ED), ``segments`` (``{id: {"name",
        "level", "radial_percent", "circumferential_percent", "peak_radial_percent", "peak_circumferential_percent",
        "thickness_ed_mm", "thickness_es_mm", "thickening_percent", "num_voxels"}}`` for every segment found) and
        ``slices`` (``[{"slice", "level", "num_voxels"}]``).

    Raises:
        CineDataError: shapes that disagree, frames out of range, or no myocardium at ED.
    """
    lab = convert_to_numpy(labels)
    u = torch.as_tensor(convert_to_numpy(tracking, dtype=np.float32))
    if lab.ndim != 4 or tuple(u.shape) != (lab.shape[0], 2, *lab.shape[1:]):
        raise CineDataError(f"expected labels (T, Z, H, W) and tracking (T, 2, Z, H, W), got {lab.shape} and "
                            f"{tuple(u.shape)}", "stack_strain")
    num_frames = lab.shape[0]
    if not 0 <= ed < num_frames:
        raise CineDataError(f"ED frame {ed} is outside the {num_frames} frames", "stack_strain")
    lv_volume = (lab == LABEL_IDS["LV"]).sum(axis=(1, 2, 3))
    es = int(np.argmin(lv_volume)) if es is None else int(es)
    if not 0 <= es < num_frames:
        raise CineDataError(f"ES frame {es} is outside the {num_frames} frames", "stack_strain")
    order = [(ed + k) % num_frames for k in range(num_frames)]
    at_ed = lab[ed]
    with_myo = [z for z in range(lab.shape[1]) if (at_ed[z] == LABEL_IDS["Myo"]).any()]
    if not with_myo:
        raise CineDataError("no myocardium in the ED labels: no strain to measure", "stack_strain")
    levels = {}
    for level, group in zip(AHA_LEVELS, np.array_split(with_myo if base_first else with_myo[::-1], 3)):
        levels.update({int(z): level for z in group})
    with_rv = [z for z in with_myo if (at_ed[z] == LABEL_IDS["RV"]).any()]

    global_curves: list[tuple[int, np.ndarray]] = []
    segment_curves: dict[int, list[tuple[int, np.ndarray]]] = {}
    thickness: dict[int, dict[str, list[tuple[int, float]]]] = {}
    slices = []
    for z in with_myo:
        myo, lv, rv = (at_ed[z] == LABEL_IDS[k] for k in ("Myo", "LV", "RV"))
        d = lagrangian_displacement(u[order, :, z], spacing)
        curves = global_strain_curves(d, myo, lv, spacing)
        global_curves.append((curves["num_voxels"], np.stack([curves["radial_percent"].detach().numpy(),
                                                              curves["circumferential_percent"].detach().numpy()])))
        anterior = None
        if not rv.any() and with_rv:  # the anterior insertion point of the nearest slice with an RV
            nearest = min(with_rv, key=lambda k: abs(k - z))
            anterior = _anterior_of(at_ed[nearest], spacing, direction)
        segments = aha_segments(myo, lv, rv if rv.any() else None, levels[z], spacing, direction, anterior)
        for sid, c in segmental_strain_curves(d, segments, lv, spacing).items():
            segment_curves.setdefault(sid, []).append(
                (c["num_voxels"], np.stack([c["radial_percent"].detach().numpy(),
                                            c["circumferential_percent"].detach().numpy()])))
        es_myo, es_lv = lab[es, z] == LABEL_IDS["Myo"], lab[es, z] == LABEL_IDS["LV"]
        ed_wall = wall_thickness(myo, lv, spacing, segments)["segments"]
        es_wall = wall_thickness(es_myo, es_lv, spacing, _nearest_segments(segments, es_myo))["segments"] \
            if es_myo.any() else {}
        for sid, value in ed_wall.items():
            per_phase = thickness.setdefault(int(sid), {"ed": [], "es": []})
            weight = int((segments == sid).sum())
            per_phase["ed"].append((weight, value))
            if int(sid) in es_wall:
                per_phase["es"].append((weight, es_wall[int(sid)]))
        slices.append({"slice": int(z), "level": levels[z], "num_voxels": int(myo.sum())})

    pooled = _pooled(global_curves)
    out: dict[str, Any] = {"frames": order, "es": es, "global": _peaks(pooled), "slices": slices, "segments": {}}
    for sid in sorted(segment_curves):
        entry: dict[str, Any] = {
            "name": AHA_SEGMENT_NAMES[sid], "level": AHA_LEVELS[0 if sid <= 6 else 1 if sid <= 12 else 2],
            **_peaks(_pooled(segment_curves[sid])),
            "num_voxels": int(sum(w for w, _ in segment_curves[sid])),
        }
        walls = thickness.get(sid, {"ed": [], "es": []})
        for phase in ("ed", "es"):
            values = [(w, v) for w, v in walls[phase] if np.isfinite(v)]
            entry[f"thickness_{phase}_mm"] = float(_pooled([(w, np.asarray(v)) for w, v in values])) if values \
                else float("nan")
        ed_mm, es_mm = entry["thickness_ed_mm"], entry["thickness_es_mm"]
        entry["thickening_percent"] = 100.0 * (es_mm - ed_mm) / ed_mm if ed_mm > 0 else float("nan")
        out["segments"][sid] = entry
    return out


def _peaks(curves: np.ndarray) -> dict[str, Any]:
    """Curves ``(2, T)`` (radial, circumferential, %) with their peaks (largest radial, most negative
    circumferential) and the frames of the peaks."""
    radial, circumferential = curves
    return {"radial_percent": radial.tolist(), "circumferential_percent": circumferential.tolist(),
            "peak_radial_percent": float(radial.max()), "peak_circumferential_percent": float(circumferential.min()),
            "time_to_peak_radial": int(radial.argmax()), "time_to_peak_circumferential": int(circumferential.argmin())}


def _anterior_of(labels: np.ndarray, spacing: Sequence[float], direction: str) -> float:
    """The anterior RV insertion angle (``theta``, degrees) of a slice whose labels hold an RV."""
    myo, lv, rv = (labels == LABEL_IDS[k] for k in ("Myo", "LV", "RV"))
    found = rv_insertion_points(myo, lv, rv, spacing, direction)
    assert found is not None  # None only for an empty RV
    return float(found["anterior_angle"])


def _nearest_segments(segments: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """ED segment ids carried to the voxels of ``mask`` (another frame's myocardium) by nearest ED segment voxel."""
    from scipy import ndimage

    seg = convert_to_numpy(segments)
    _, (ih, iw) = ndimage.distance_transform_edt(seg == 0, return_indices=True)
    return np.where(mask, seg[ih, iw], 0)
