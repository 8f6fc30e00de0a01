"""The floor of the benchmark: no motion at all (``u_{ED->t} = 0``)."""

from __future__ import annotations

import numpy as np

from .base import SequenceRegistration

__all__ = ["IdentityRegistration"]


class IdentityRegistration(SequenceRegistration):
    """Zero displacement for every frame: the score of assuming the heart does not move."""

    name = "identity"

    def _register(self, frames: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        return np.zeros((frames.shape[0], 2, *frames.shape[1:]), dtype=np.float32)
