"""Pairwise ANTs SyN (symmetric diffeomorphic normalisation, ``antspyx``): the SyN baseline of Krebs et al.

Each frame ``t`` is the fixed image and the ED frame the moving one, so ANTs' forward transform (fixed point ->
moving point) is ``u_{ED->t}`` in MONAI's pull convention. ``ants.from_numpy`` keeps numpy's axis order, so the
field's components are already (row, column); they are in mm and divided by the spacing here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from monai.utils import optional_import

from .base import SequenceRegistration

ants, _ = optional_import("ants")

__all__ = ["AntsSyNRegistration"]


class AntsSyNRegistration(SequenceRegistration):
    """ED -> t SyN of every frame (``ants.registration(type_of_transform="SyNOnly")``, no affine stage).

    Args:
        metric: SyN similarity, ``"CC"`` (local cross-correlation), ``"mattes"`` or ``"meansquares"``.
        metric_radius: radius (voxels) of the CC window, or the number of histogram bins for ``"mattes"``.
        iterations: iterations per level, coarse to fine (ANTs' default ``(40, 20, 0)`` never runs the finest).
        flow_sigma: smoothing (voxels) of the update field.
        total_sigma: smoothing (voxels) of the total field.
        grad_step: gradient step.
    """

    name = "syn"
    requires = ("antspyx",)

    def __init__(
        self,
        metric: str = "CC",
        metric_radius: int = 2,
        iterations: tuple[int, ...] = (100, 70, 50),
        flow_sigma: float = 3.0,
        total_sigma: float = 0.0,
        grad_step: float = 0.2,
    ) -> None:
        self.metric = str(metric)
        self.metric_radius = int(metric_radius)
        self.iterations = tuple(int(i) for i in iterations)
        self.flow_sigma = float(flow_sigma)
        self.total_sigma = float(total_sigma)
        self.grad_step = float(grad_step)

    def _register(self, frames: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        ddf = np.zeros((frames.shape[0], 2, *frames.shape[1:]), dtype=np.float32)
        moving = ants.from_numpy(frames[0], spacing=spacing)
        with tempfile.TemporaryDirectory(prefix="monai_cardiac_syn_") as tmp:
            for t in range(1, frames.shape[0]):
                fixed = ants.from_numpy(frames[t], spacing=spacing)
                result = ants.registration(
                    fixed=fixed, moving=moving, type_of_transform="SyNOnly", initial_transform="identity",
                    syn_metric=self.metric, syn_sampling=self.metric_radius, reg_iterations=self.iterations,
                    flow_sigma=self.flow_sigma, total_sigma=self.total_sigma, grad_step=self.grad_step,
                    outprefix=str(Path(tmp) / f"t{t}_"),
                )
                composed = ants.apply_transforms(
                    fixed, moving, result["fwdtransforms"], compose=str(Path(tmp) / f"t{t}_field_")
                )
                field = ants.image_read(composed).numpy()  # (H, W, 2), mm, numpy axis order
                ddf[t] = np.stack([field[..., i] / spacing[i] for i in range(2)])
        return ddf
