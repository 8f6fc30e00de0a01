"""Structure volumes over the cardiac cycle and the ejection fraction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

from monai_cardiac.data.nifti import NUM_CLASSES, check_label_values

__all__ = ["ejection_fraction", "structure_volume_curve"]


def structure_volume_curve(
    labels: NdarrayOrTensor,
    spacing: Sequence[float] | NdarrayOrTensor,
    label: int | Sequence[int],
    num_classes: int = NUM_CLASSES,
) -> torch.Tensor:
    """Volume of one structure (or a union of structures) in every frame, in mL.

    Volume = voxel count x product of the spacing / 1000.

    Args:
        labels: integer label maps ``(T, Z, H, W)``, or ``(T, H, W)`` for one short-axis slice.
        spacing: three voxel sizes in mm. For a volume, those of ``(Z, H, W)``; for a single slice, the two
            in-plane sizes and the slice thickness, without which a 2D area has no volume. Only their product
            is used.
        label: class id counted (e.g. 3 for the LV blood pool), or several ids counted together (e.g.
            ``(2, 3)`` for the LV inside the epicardium).
        num_classes: number of classes, background included; ``labels`` and ``label`` must lie in
            ``[0, num_classes)``.

    Returns:
        float64 tensor ``(T,)`` in mL.

    Raises:
        ValueError: ``labels`` not 3D or 4D, ``spacing`` not three positive numbers, or ``label`` outside
            the classes.
        CineDataError: ``labels`` holds values that are not integers in ``[0, num_classes)``.
    """
    labels_np = convert_to_numpy(labels, wrap_sequence=True)
    if labels_np.ndim not in (3, 4):
        raise ValueError(f"labels must be shaped (T, H, W) or (T, Z, H, W), got shape {labels_np.shape}.")
    spacing_np = convert_to_numpy(spacing, dtype=np.float64, wrap_sequence=True).reshape(-1)
    if spacing_np.shape != (3,) or not np.all(spacing_np > 0):
        raise ValueError(
            "spacing must be three positive sizes in mm (for a 2D slice: in-plane sizes and slice thickness), "
            f"got {spacing}."
        )
    ids = np.atleast_1d(np.asarray(label))
    if ids.size == 0 or not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= num_classes:
        raise ValueError(f"label must be class ids in [0, {num_classes}), got {label}.")
    labels_np = check_label_values(labels_np, "structure_volume_curve(labels)", num_classes)
    counts = np.isin(labels_np, ids).reshape(labels_np.shape[0], -1).sum(axis=1)
    return torch.as_tensor(counts * float(np.prod(spacing_np)) / 1000.0, dtype=torch.float64)


def ejection_fraction(
    volumes: NdarrayOrTensor, ed: int | None = None, es: int | None = None
) -> tuple[float, float, float]:
    """End-diastolic volume, end-systolic volume and ejection fraction from a volume curve.

    Args:
        volumes: volumes ``(T,)`` in mL, e.g. from :py:func:`structure_volume_curve` with the LV blood pool.
        ed: 0-based end-diastolic frame; ``None`` takes the largest volume as EDV.
        es: 0-based end-systolic frame; ``None`` takes the smallest volume as ESV.

    Returns:
        ``(EDV, ESV, EF)``: volumes in mL and ``EF = (EDV - ESV) / EDV`` as a fraction (NaN if ``EDV`` is 0).

    Raises:
        ValueError: ``volumes`` not a non-empty 1D curve, or ``ed`` / ``es`` outside its frames.
    """
    curve = convert_to_numpy(volumes, dtype=np.float64, wrap_sequence=True)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError(f"volumes must be a non-empty curve (T,), got shape {curve.shape}.")
    for name, frame in (("ed", ed), ("es", es)):
        if frame is not None and not 0 <= frame < curve.size:
            raise ValueError(f"{name} frame {frame} is outside the {curve.size} frames of the volume curve.")
    edv = float(curve.max() if ed is None else curve[ed])
    esv = float(curve.min() if es is None else curve[es])
    ef = (edv - esv) / edv if edv > 0 else float("nan")
    return edv, esv, ef
