"""Pieces shared by every dataset reader: per-slice expansion, header look-ups and subject-level splits.

A data list is a list of dicts in MONAI style (see docs/conventions.md, "Data lists").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monai_cardiac.data.nifti import load_image
from monai_cardiac.errors import CineDataError

__all__ = ["cine_header_shape", "expand_slices", "split_by_subject"]


def cine_header_shape(path: str | Path) -> tuple[int, int, int, int]:
    """Read only the header of a 4D cine NIfTI and return its ``(X, Y, Z, T)`` shape.

    Args:
        path: the cine file.

    Raises:
        CineDataError: missing or unreadable file, or not 4D.
    """
    path = Path(path)
    if not path.is_file():
        raise CineDataError("file not found", path)
    try:
        shape = tuple(int(s) for s in load_image(path).shape)
    except Exception as err:  # nibabel raises several types for unreadable headers
        raise CineDataError(f"cannot read NIfTI header: {err}", path) from err
    if len(shape) == 5 and shape[4] == 1:
        shape = shape[:4]
    if len(shape) != 4:
        raise CineDataError(f"expected a 4D cine (X, Y, Z, T) but the image has shape {shape}", path)
    return shape  # type: ignore[return-value]


def expand_slices(entry: dict, num_slices: int) -> list[dict]:
    """Turn one per-volume data-list entry into one entry per short-axis slice (key ``slice`` = z)."""
    return [{**entry, "slice": z} for z in range(num_slices)]


def split_by_subject(
    datalist: Sequence[dict],
    fractions: Sequence[float] = (0.8, 0.2),
    seed: int = 0,
    linked: Sequence[Sequence[str]] = (),
) -> list[list[dict]]:
    """Split a data list by subject, so that no subject's slices end up in two parts.

    Args:
        datalist: entries with a ``subject`` key (per-volume or per-slice).
        fractions: share of subjects in each part; must sum to 1.
        seed: seed of the shuffle of subjects.
        linked: groups of subject ids that must share a part (e.g. ACDC patient074 and patient076, which
            hold the same cine).

    Returns:
        one data list per fraction, entries in their original order.

    Raises:
        ValueError: fractions that do not sum to 1, or more parts than subjects.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1, got {list(fractions)}")
    subjects = sorted({e["subject"] for e in datalist})
    group_of = {s: s for s in subjects}
    for group in linked:
        members = [s for s in group if s in group_of]
        for s in members:
            group_of[s] = members[0]
    units = sorted(set(group_of.values()))
    if len(units) < len(fractions):
        raise ValueError(f"cannot split {len(units)} subject groups into {len(fractions)} parts")
    order = np.random.default_rng(seed).permutation(len(units))
    bounds = np.round(np.cumsum(fractions) * len(units)).astype(int)
    part_of_unit = {}
    start = 0
    for part, stop in enumerate(bounds):
        stop = max(stop, start + 1) if part < len(fractions) - 1 else len(units)
        for i in order[start:stop]:
            part_of_unit[units[i]] = part
        start = stop
    parts: list[list[dict]] = [[] for _ in fractions]
    for e in datalist:
        parts[part_of_unit[group_of[e["subject"]]]].append(e)
    return parts
