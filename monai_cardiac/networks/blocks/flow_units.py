"""Conversion of displacement fields between normalised [-1, 1] coordinates and voxels.

A network that predicts a bounded displacement (e.g. through ``tanh``) naturally works in the normalised
coordinates of ``torch.nn.functional.grid_sample``; the project's convention (``docs/conventions.md``) is a
displacement in voxels with the channel order of the array's spatial axes, which is what
``monai.networks.blocks.Warp`` consumes. With ``align_corners=True`` the first and last voxel centres of an
axis of ``n`` voxels sit at -1 and +1, so one normalised unit is ``(n - 1) / 2`` voxels along that axis.
"""

from __future__ import annotations

import torch

from monai_cardiac.errors import CineDataError

__all__ = ["normalized_to_voxel_ddf", "voxel_to_normalized_ddf"]


def _voxels_per_unit(field: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Voxels per normalised unit along each spatial axis, shaped to broadcast against ``field``."""
    if spatial_dims not in (2, 3):
        raise CineDataError(f"spatial_dims must be 2 or 3, got {spatial_dims}.", "flow_units")
    if field.ndim < spatial_dims + 1 or field.shape[-spatial_dims - 1] != spatial_dims:
        raise CineDataError(
            f"expected a displacement of shape (..., {spatial_dims}, *spatial) with {spatial_dims} spatial axes, "
            f"got shape {tuple(field.shape)}.",
            "flow_units",
        )
    sizes = field.shape[-spatial_dims:]
    # a singleton axis has no extent in normalised coordinates; MONAI's Warp uses the same guard
    scale = [max(n - 1, 1) / 2.0 for n in sizes]
    dtype = field.dtype if field.is_floating_point() else torch.float32
    return torch.tensor(scale, dtype=dtype, device=field.device).view(spatial_dims, *([1] * spatial_dims))


def normalized_to_voxel_ddf(flow: torch.Tensor, spatial_dims: int = 2) -> torch.Tensor:
    """Convert a displacement from normalised [-1, 1] coordinates (``align_corners=True``) to voxels.

    ``u_i = flow_i * (n_i - 1) / 2`` for each spatial axis ``i`` of ``n_i`` voxels. The channel order is
    unchanged and must already be the array's spatial-axis order (``(H, W)`` in 2D), not grid_sample's
    reversed ``(x, y)`` order.

    Args:
        flow: displacement in normalised units, shape ``(..., S, *spatial)`` with ``S == spatial_dims``.
        spatial_dims: number of spatial axes ``S`` (2 or 3).

    Returns:
        The displacement in voxels, same shape and dtype as ``flow``.

    Raises:
        CineDataError: if ``spatial_dims`` is not 2 or 3, or ``flow`` is not shaped ``(..., S, *spatial)``.
    """
    return flow * _voxels_per_unit(flow, spatial_dims)


def voxel_to_normalized_ddf(ddf: torch.Tensor, spatial_dims: int = 2) -> torch.Tensor:
    """Convert a displacement in voxels to normalised [-1, 1] coordinates (``align_corners=True``).

    The inverse of :func:`normalized_to_voxel_ddf`: ``flow_i = u_i * 2 / (n_i - 1)``.

    Args:
        ddf: displacement in voxels, shape ``(..., S, *spatial)`` with ``S == spatial_dims``, channel order
            = spatial axes.
        spatial_dims: number of spatial axes ``S`` (2 or 3).

    Returns:
        The displacement in normalised units, same shape and dtype as ``ddf``.

    Raises:
        CineDataError: if ``spatial_dims`` is not 2 or 3, or ``ddf`` is not shaped ``(..., S, *spatial)``.
    """
    return ddf / _voxels_per_unit(ddf, spatial_dims)
