"""Gaussian smoothing of a sequence of velocity fields in space (mm) and time (frames)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.layers import gaussian_1d
from torch import nn

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.layers import banded_separable_filtering

__all__ = ["SpatioTemporalGaussianSmoothing"]


def _check_spacing(spacing: Sequence[float], spatial_dims: int, source: str) -> tuple[float, ...]:
    """Return ``spacing`` as a tuple of floats after checking its length and values."""
    values = tuple(float(s) for s in spacing)
    if len(values) != spatial_dims or not all(math.isfinite(s) and s > 0 for s in values):
        raise CineDataError(f"spacing must be {spatial_dims} positive finite values in mm, got {spacing}.", source)
    return values


class SpatioTemporalGaussianSmoothing(nn.Module):
    """Diffusion-like regularisation of a velocity sequence: a Gaussian in space and another over time.

    Krebs et al. smooth the stationary velocity fields with ``sigma_G = 3 mm`` in space and
    ``sigma_T = 1.5`` (frames) over the sequence, before exponentiation. Here the spatial standard deviation
    is given in mm and converted to voxels with the image spacing, axis by axis:
    ``sigma_voxels[i] = sigma_mm / spacing[i]`` (3 mm at 1.5 mm spacing is 2 voxels). The kernels are
    MONAI's sampled Gaussians (:func:`monai.networks.layers.gaussian_1d`, ``approx="sampled"``,
    normalised to sum 1, truncated at ``truncated`` standard deviations) applied separably with
    :func:`~monai_cardiac.networks.layers.banded_separable_filtering` (the values of MONAI's
    ``separable_filtering``, a faster backward pass on the CPU). Borders, in space and at both ends of the sequence,
    are padded by replicating the edge value, so a constant field passes unchanged. A standard deviation of
    0 switches that smoothing off.

    Args:
        sigma_mm: spatial standard deviation in mm (``>= 0``).
        sigma_frames: temporal standard deviation in frames (``>= 0``).
        spacing: voxel spacing in mm along each spatial axis of the fields, in array order (``(H, W)`` in
            2D); its length (1 or 2) sets the number of spatial axes; can be overridden per call. (Three
            spatial axes plus time would need replicate padding of four axes, which PyTorch lacks.)
        truncated: kernel half-width in standard deviations.

    Raises:
        ValueError: on a negative or non-finite ``sigma_mm`` / ``sigma_frames``, a non-positive
            ``truncated``, or bad ``spacing``.
    """

    def __init__(
        self,
        sigma_mm: float = 3.0,
        sigma_frames: float = 1.5,
        spacing: Sequence[float] = (1.5, 1.5),
        truncated: float = 4.0,
    ) -> None:
        super().__init__()
        for name, value in (("sigma_mm", sigma_mm), ("sigma_frames", sigma_frames)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite value >= 0, got {value}.")
        if not truncated > 0:
            raise ValueError(f"truncated must be positive, got {truncated}.")
        self.sigma_mm = float(sigma_mm)
        self.sigma_frames = float(sigma_frames)
        if len(spacing) not in (1, 2):
            raise ValueError(f"spacing must have 1 or 2 values (spatial axes), got {spacing}.")
        self.spacing = _check_spacing(spacing, len(spacing), "SpatioTemporalGaussianSmoothing(spacing)")
        self.truncated = float(truncated)

    def spatial_sigma_voxels(self, spacing: Sequence[float] | None = None) -> tuple[float, ...]:
        """Spatial standard deviation in voxels along each axis: ``sigma_mm / spacing``.

        Args:
            spacing: spacing in mm per spatial axis; defaults to the one given at construction.

        Returns:
            one standard deviation (voxels) per spatial axis.
        """
        spacing = self.spacing if spacing is None else _check_spacing(spacing, len(self.spacing), "per-call spacing")
        return tuple(self.sigma_mm / s for s in spacing)

    def _kernel(self, sigma: float) -> torch.Tensor:
        """1-D normalised sampled Gaussian; the unit kernel ``[1]`` (no smoothing) for ``sigma == 0``."""
        if sigma == 0:
            return torch.ones(1)
        return gaussian_1d(torch.tensor(sigma), truncated=self.truncated, approx="sampled", normalize=True)

    def forward(self, velocity: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
        """
        Args:
            velocity: velocity sequence of shape ``(B, T, S, *spatial)`` (``S`` = number of spatial axes,
                voxels).
            spacing: spacing in mm per spatial axis for this call; defaults to the constructor's.

        Returns:
            the smoothed velocity sequence, same shape and units.

        Raises:
            CineDataError: when ``velocity`` does not have ``S = len(spacing)`` components over ``S``
                spatial axes, or ``spacing`` is bad.
        """
        spatial_dims = len(self.spacing)
        if velocity.ndim != spatial_dims + 3 or velocity.shape[2] != spatial_dims:
            raise CineDataError(
                f"expected a velocity sequence (B, T, {spatial_dims}, *spatial) with {spatial_dims} spatial axes, "
                f"got {tuple(velocity.shape)}.",
                "SpatioTemporalGaussianSmoothing input velocity",
            )
        sigmas = self.spatial_sigma_voxels(spacing)
        kernels = [self._kernel(s) for s in sigmas] + [self._kernel(self.sigma_frames)]
        # (B, T, S, *spatial) -> (B, S, *spatial, T): time becomes the last filtered axis
        fields = velocity.movedim(1, -1)
        smoothed = banded_separable_filtering(fields, kernels, mode="replicate")
        return smoothed.movedim(-1, 1)
