"""Symmetric local normalised cross-correlation between a pair of images registered both ways."""

from __future__ import annotations

import torch
from monai.losses import LocalNormalizedCrossCorrelationLoss
from monai.networks.blocks import Warp
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses._precision import float32_loss

__all__ = ["SymmetricLocalNormalizedCrossCorrelationLoss"]


class SymmetricLocalNormalizedCrossCorrelationLoss(_Loss):
    """Local normalised cross-correlation measured in both directions of a diffeomorphic registration.

    With ``u = u_{M->F}`` (on the fixed grid, ``warp(M, u) ~ F``) and its inverse ``u^-1 = u_{F->M}`` (on the
    moving grid, ``warp(F, u^-1) ~ M``), e.g. ``exp(v)`` and ``exp(-v)`` of a stationary velocity ``v``::

        loss = ( LNCC(warp(M, u), F) + LNCC(warp(F, u^-1), M) ) / 2

    where ``LNCC`` is MONAI's :class:`~monai.losses.LocalNormalizedCrossCorrelationLoss` (the negated
    squared local correlation, in ``[-1, 0]``, ``-1`` for a perfect local linear match). Of the two
    definitions used with Krebs et al.'s models (this average, or the half-way comparison of
    ``warp(M, exp(v/2))`` with ``warp(F, exp(-v/2))``), this one is chosen because both terms compare an
    image with an unresampled one on its own grid, and it needs no extra exponentiation beyond the two
    fields a diffeomorphic model already returns. Swapping ``(M, F)`` together with ``(u, u^-1)`` leaves it
    unchanged. Warping is bilinear with border padding (:class:`~monai.networks.blocks.Warp`).

    It is computed in float32 under any autocast (:func:`~monai_cardiac.losses._precision.float32_loss`): in
    float16 the product of two small local variances underflows to 0 (that of two floored ones,
    ``smooth_dr**2 = 1e-10``, is below the smallest float16, about ``6e-8``), which makes the loss NaN or
    infinite in flat windows (uniform regions, zero padding).

    Args:
        spatial_dims: number of spatial axes, 2 or 3.
        kernel_size: odd window size of the LNCC; at least 5 for the triangular kernel, whose size-3 version
            is a single-voxel window (correlation undefined).
        kernel_type: ``"rectangular"``, ``"triangular"`` or ``"gaussian"`` window.
        reduction: ``"mean"`` (over batch, channels and voxels), ``"sum"`` or ``"none"`` (the average of the
            two per-voxel maps, the first on the fixed grid and the second on the moving grid,
            ``(N, C, *spatial)``).
        smooth_nr: constant added to the numerator of MONAI's LNCC.
        smooth_dr: floor of the local variances in MONAI's LNCC.

    Raises:
        ValueError: on ``spatial_dims`` other than 2 or 3, or a triangular kernel smaller than 5 (and MONAI's
            own checks: even ``kernel_size``, unknown ``kernel_type``).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        kernel_size: int = 9,
        kernel_type: str = "rectangular",
        reduction: LossReduction | str = LossReduction.MEAN,
        smooth_nr: float = 0.0,
        smooth_dr: float = 1e-5,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if kernel_type == "triangular" and kernel_size < 5:
            raise ValueError(f"a triangular kernel needs kernel_size >= 5 (size 3 is one voxel), got {kernel_size}.")
        self.spatial_dims = spatial_dims
        self.lncc = LocalNormalizedCrossCorrelationLoss(
            spatial_dims=spatial_dims,
            kernel_size=kernel_size,
            kernel_type=kernel_type,
            reduction=reduction,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )
        self.warp = Warp(mode="bilinear", padding_mode="border")

    @float32_loss
    def forward(
        self, moving: torch.Tensor, fixed: torch.Tensor, ddf: torch.Tensor, inverse_ddf: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            moving: moving images ``(N, C, *spatial)``.
            fixed: fixed images ``(N, C, *spatial)``.
            ddf: ``u_{M->F}`` on the fixed grid, ``(N, spatial_dims, *spatial)``, voxels.
            inverse_ddf: ``u_{F->M}`` on the moving grid, ``(N, spatial_dims, *spatial)``, voxels.

        Returns:
            the symmetric loss, reduced as set by ``reduction`` (a scalar in ``[-1, 0]`` for ``"mean"``).

        Raises:
            CineDataError: when the images differ in shape or the fields do not match them.
        """
        if moving.ndim != self.spatial_dims + 2 or moving.shape != fixed.shape:
            raise CineDataError(
                f"moving and fixed must share a shape (N, C, *spatial) with {self.spatial_dims} spatial axes, "
                f"got {tuple(moving.shape)} and {tuple(fixed.shape)}.",
                "SymmetricLocalNormalizedCrossCorrelationLoss inputs",
            )
        field_shape = (moving.shape[0], self.spatial_dims, *moving.shape[2:])
        for name, field in (("ddf", ddf), ("inverse_ddf", inverse_ddf)):
            if tuple(field.shape) != field_shape:
                raise CineDataError(
                    f"{name} must have shape {field_shape}, got {tuple(field.shape)}.",
                    f"SymmetricLocalNormalizedCrossCorrelationLoss input {name}",
                )
        forward_term = self.lncc(self.warp(moving, ddf), fixed)
        backward_term = self.lncc(self.warp(fixed, inverse_ddf), moving)
        return 0.5 * (forward_term + backward_term)
