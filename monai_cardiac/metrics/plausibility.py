"""Plausibility flags: inputs and results outside the ranges of adult cardiac cine MRI.

A run never stops on these (a child's heart or an unusual protocol can be right); it says so, in the log and in a
``flags`` entry of the tables, instead of letting an implausible number pass silently. The ranges are wide on
purpose: they catch wrong headers (spacing in cm or m, a 2D image saved as a cine) and failed segmentations, not
disease.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

__all__ = ["PLAUSIBLE_RANGES", "plausibility_flags", "report_plausibility"]

PLAUSIBLE_RANGES = {
    "in_plane_spacing_mm": (0.4, 4.0),
    "slice_spacing_mm": (1.0, 25.0),
    "num_frames": (10, 100),
    "lv_edv_ml": (20.0, 600.0),
    "rv_edv_ml": (20.0, 600.0),
    "lv_ef": (0.05, 0.9),
    "rv_ef": (0.05, 0.9),
}
"""Inclusive bounds of :func:`plausibility_flags`: short-axis cine MRI of adults, healthy or diseased (ACDC's
EF spans 0.1-0.8, its EDV 50-500 mL; spacing 0.7-1.9 mm in plane, 5-10 mm between slices; 12-35 frames)."""


def _outside(name: str, value: float, unit: str = "") -> str | None:
    low, high = PLAUSIBLE_RANGES[name]
    if value is None or not math.isfinite(value):
        return f"{name} is undefined"
    if not low <= value <= high:
        return f"{name} {value:.4g}{unit} outside [{low:g}, {high:g}]{unit}"
    return None


def plausibility_flags(
    spacing_mm: Sequence[float] | None = None,
    image_size: Sequence[int] | None = None,
    roi_size: Sequence[int] | None = None,
    num_frames: int | None = None,
    volumes: dict[str, float] | None = None,
) -> list[str]:
    """The checks that fail, as short phrases (empty list: nothing implausible).

    Args:
        spacing_mm: ``(sH, sW, sZ)`` in-plane and slice spacing in mm (or ``(sH, sW)``).
        image_size: in-plane size ``(H, W)`` of the input in voxels.
        roi_size: the network's crop ``(h, w)``; an image less than half as large on a side is flagged (the crop
            pads it; a few voxels short, as acdc_dev's 100 x 95 crops against 96 x 96, is not flagged).
        num_frames: frames of the cine.
        volumes: any of ``lv_edv_ml``, ``rv_edv_ml``, ``lv_ef``, ``rv_ef`` (EF as a fraction).

    Returns:
        the flags, in the order of the arguments.
    """
    flags: list[str | None] = []  # None: a check that passed
    if spacing_mm is not None:
        for s in spacing_mm[:2]:
            flags.append(_outside("in_plane_spacing_mm", float(s), " mm"))
        if len(spacing_mm) > 2:
            flags.append(_outside("slice_spacing_mm", float(spacing_mm[2]), " mm"))
    if image_size is not None and roi_size is not None and any(
            2 * int(i) < int(r) for i, r in zip(image_size, roi_size)):
        flags.append(f"image {tuple(int(i) for i in image_size)} less than half the network's crop "
                     f"{tuple(int(r) for r in roi_size)} (mostly zero padding)")
    if num_frames is not None:
        flags.append(_outside("num_frames", float(num_frames)))
    for name, value in (volumes or {}).items():
        flags.append(_outside(name, float(value), " mL" if name.endswith("_ml") else ""))
    return list(dict.fromkeys(f for f in flags if f))


def report_plausibility(subject: str, logger: logging.Logger, **checks) -> list[str]:
    """:func:`plausibility_flags` of ``checks``, logged once for ``subject`` as a warning when any fails.

    Args:
        subject: the subject the values belong to (named in the warning).
        logger: where the warning goes.
        checks: the keyword arguments of :func:`plausibility_flags`.

    Returns:
        the flags (empty when nothing is implausible).
    """
    flags = plausibility_flags(**checks)
    if flags:
        logger.warning(f"{subject}: implausible input or result: {'; '.join(flags)}")
    return flags
