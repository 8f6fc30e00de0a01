"""Summaries of per-case scores that leave out undefined (NaN) values and say how many were left out."""

from __future__ import annotations

import numpy as np
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

__all__ = ["nanmean_excluded"]


def nanmean_excluded(values: NdarrayOrTensor | list[float]) -> tuple[float, int]:
    """Mean of the defined values and the count of NaN values left out (docs/conventions.md).

    Args:
        values: scores of any shape, e.g. one HD95 per subject, NaN where undefined.

    Returns:
        ``(mean, excluded)``: the mean of the non-NaN values (NaN if there are none) and the number of NaN
        values. Infinite values are kept, so they show in the mean rather than being hidden.
    """
    flat = convert_to_numpy(values, dtype=np.float64, wrap_sequence=True).reshape(-1)
    defined = flat[~np.isnan(flat)]
    mean = float(defined.mean()) if defined.size else float("nan")
    return mean, int(flat.size - defined.size)
