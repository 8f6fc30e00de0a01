"""Charbonnier ("approximate Huber") smoothness penalties on displacement fields, spatial and temporal.

Both follow Qin et al. (MICCAI 2018), eq. (1): ``H = sqrt(eps + sum of squared flow derivatives)``
evaluated per pixel, then averaged, with ``eps = 0.01``. Derivatives are forward differences between
neighbouring voxels (or consecutive frames), in the units of the field that is passed in: a field in voxels
gives voxels per voxel, a field in normalised [-1, 1] coordinates (the paper's) gives normalised units per
voxel. Convert with ``monai_cardiac.networks.blocks.voxel_to_normalized_ddf`` to use the paper's weights.
Both are computed in float32 under any autocast (:func:`~monai_cardiac.losses._precision.float32_loss`).
"""

from __future__ import annotations

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses._precision import float32_loss

__all__ = ["HuberFlowSmoothnessLoss", "TemporalHuberFlowSmoothnessLoss"]


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == LossReduction.MEAN.value:
        return values.mean()
    if reduction == LossReduction.SUM.value:
        return values.sum()
    return values


class _CharbonnierPenalty(_Loss):
    """Holds ``eps`` and the reduction shared by the spatial and temporal penalties."""

    def __init__(self, eps: float = 0.01, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}.")
        self.eps = eps


class HuberFlowSmoothnessLoss(_CharbonnierPenalty):
    """Spatial smoothness ``sqrt(eps + sum_i sum_a (D_a u_i)^2)`` per pixel of a displacement field ``u``.

    ``D_a u_i(x) = u_i(x + e_a) - u_i(x)`` is the forward difference of component ``i`` along spatial axis
    ``a``. It is evaluated on the ``(n_1 - 1) x ... x (n_S - 1)`` voxels where every forward difference
    exists (the last row / column / slice is dropped), so a field that is linear with slope ``a`` along one
    axis scores exactly ``sqrt(eps + a^2)`` everywhere, and a constant field scores ``sqrt(eps)``.

    Args:
        eps: the constant under the square root (0.01 in the paper); must be positive.
        reduction: ``"mean"`` (over batch and voxels), ``"sum"`` or ``"none"``.

    Raises:
        ValueError: if ``eps <= 0`` or ``reduction`` is unknown.
    """

    @float32_loss
    def forward(self, ddf: torch.Tensor) -> torch.Tensor:
        """Penalise spatial variation of ``ddf``.

        Args:
            ddf: ``(B, S, *spatial)`` displacement, ``S`` = number of spatial axes (2 or 3), every spatial
                size at least 2; any units (see the module docstring).

        Returns:
            A scalar for ``"mean"`` / ``"sum"``; for ``"none"`` the per-voxel penalty of shape
            ``(B, 1, *[n - 1 for n in spatial])``.

        Raises:
            CineDataError: if ``ddf`` is not shaped as described.
        """
        spatial_dims = ddf.ndim - 2
        if spatial_dims not in (2, 3) or ddf.shape[1] != spatial_dims or min(ddf.shape[2:]) < 2:
            raise CineDataError(
                "ddf must be shaped (B, S, *spatial) with S = 2 or 3 spatial axes of size >= 2, "
                f"got {tuple(ddf.shape)}.",
                type(self).__name__,
            )
        inner = [slice(0, n - 1) for n in ddf.shape[2:]]
        squared = torch.zeros((), dtype=ddf.dtype, device=ddf.device)
        for axis, n in enumerate(ddf.shape[2:]):
            ahead = list(inner)
            ahead[axis] = slice(1, n)
            diff = ddf[(slice(None), slice(None), *ahead)] - ddf[(slice(None), slice(None), *inner)]
            squared = squared + diff.pow(2).sum(dim=1, keepdim=True)
        return _reduce(torch.sqrt(self.eps + squared), self.reduction)


class TemporalHuberFlowSmoothnessLoss(_CharbonnierPenalty):
    """Temporal smoothness ``sqrt(eps + sum_i (u_{t+1,i} - u_{t,i})^2)`` per pixel and frame pair.

    The forward difference between consecutive displacement fields of a sequence (all on the same grid),
    summed over components ``i`` under the root, evaluated for ``t = 0 .. T - 2``. A sequence constant in time
    scores ``sqrt(eps)``; one growing linearly by ``v`` per frame scores ``sqrt(eps + |v|^2)``.

    The paper writes the sum as running over ``i = x, y, t``; this reads it as the sum over components of
    the temporal derivative at each time step, averaged over time steps like the spatial term over pixels.

    Args:
        eps: the constant under the square root (0.01 in the paper); must be positive.
        reduction: ``"mean"`` (over batch, frame pairs and voxels), ``"sum"`` or ``"none"``.

    Raises:
        ValueError: if ``eps <= 0`` or ``reduction`` is unknown.
    """

    @float32_loss
    def forward(self, ddf: torch.Tensor) -> torch.Tensor:
        """Penalise change of the displacement between consecutive frames.

        Args:
            ddf: ``(B, T, S, *spatial)`` displacement sequence, ``T >= 2``, ``S`` = number of spatial axes.

        Returns:
            A scalar for ``"mean"`` / ``"sum"``; for ``"none"`` the penalty of shape ``(B, T - 1, 1, *spatial)``.

        Raises:
            CineDataError: if ``ddf`` is not shaped as described.
        """
        spatial_dims = ddf.ndim - 3
        if spatial_dims not in (2, 3) or ddf.shape[2] != spatial_dims or ddf.shape[1] < 2:
            raise CineDataError(
                f"ddf must be shaped (B, T >= 2, S, *spatial) with S = 2 or 3 spatial axes, got {tuple(ddf.shape)}.",
                type(self).__name__,
            )
        squared = (ddf[:, 1:] - ddf[:, :-1]).pow(2).sum(dim=2, keepdim=True)
        return _reduce(torch.sqrt(self.eps + squared), self.reduction)
