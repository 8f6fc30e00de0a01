"""Symmetric local normalised cross-correlation between a pair of images registered both ways."""

from __future__ import annotations

import torch
from monai.losses import LocalNormalizedCrossCorrelationLoss
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses._precision import float32_loss
from monai_cardiac.networks.blocks.warp import DisplacementWarp
from monai_cardiac.networks.layers import banded_separable_filtering

__all__ = ["BandedLocalNormalizedCrossCorrelationLoss", "SymmetricLocalNormalizedCrossCorrelationLoss"]


class BandedLocalNormalizedCrossCorrelationLoss(LocalNormalizedCrossCorrelationLoss):
    """MONAI's :class:`~monai.losses.LocalNormalizedCrossCorrelationLoss` with its window sums as banded matrix
    products.

    Same arguments, kernels, variance floor (``smooth_dr``), numerator constant (``smooth_nr``) and values as
    MONAI's class (the negated squared local correlation, tested equal to it); the five local sums (of ``t``,
    ``p``, ``t^2``, ``p^2``, ``tp``) are computed in one call of
    :func:`~monai_cardiac.networks.layers.banded_separable_filtering` on the stacked maps instead of ten grouped
    1-D convolutions, whose backward pass dominates a training step on the CPU for windows of 9-15 voxels.
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            pred: images ``(N, C, *spatial)``.
            target: images of the same shape.

        Returns:
            the loss reduced as set by ``reduction`` (``"none"``: the per-voxel map, ``(N, C, *spatial)``).

        Raises:
            ValueError: on a number of spatial axes other than the loss's, or differing shapes.
        """
        if pred.ndim - 2 != self.ndim:
            raise ValueError(f"expected pred with {self.ndim} spatial axes, got shape {tuple(pred.shape)}.")
        if target.shape != pred.shape:
            raise ValueError(f"target shape {tuple(target.shape)} differs from pred shape {tuple(pred.shape)}.")
        channels = pred.shape[1]
        maps = torch.cat([target, pred, target * target, pred * pred, target * pred], dim=1)
        sums = banded_separable_filtering(maps, self.kernel.to(pred), mode="zeros")
        t_sum, p_sum, t2_sum, p2_sum, tp_sum = torch.split(sums, channels, dim=1)
        volume = self.kernel_vol.to(pred)
        t_avg, p_avg = t_sum / volume, p_sum / volume
        floor = torch.as_tensor(self.smooth_dr, dtype=sums.dtype, device=sums.device)
        cross = tp_sum - p_avg * t_sum
        t_var = torch.maximum(t2_sum - t_avg * t_sum, floor)
        p_var = torch.maximum(p2_sum - p_avg * p_sum, floor)
        ncc = (cross * cross + self.smooth_nr) / (t_var * p_var)
        if self.reduction == LossReduction.SUM.value:
            return ncc.sum().neg()
        if self.reduction == LossReduction.NONE.value:
            return ncc.neg()
        return ncc.mean().neg()


class SymmetricLocalNormalizedCrossCorrelationLoss(_Loss):
    """Local normalised cross-correlation measured in both directions of a diffeomorphic registration.

    With ``u = u_{M->F}`` (on the fixed grid, ``warp(M, u) ~ F``) and its inverse ``u^-1 = u_{F->M}`` (on the
    moving grid, ``warp(F, u^-1) ~ M``), e.g. ``exp(v)`` and ``exp(-v)`` of a stationary velocity ``v``::

        loss = ( LNCC(warp(M, u), F) + LNCC(warp(F, u^-1), M) ) / 2

    where ``LNCC`` is MONAI's :class:`~monai.losses.LocalNormalizedCrossCorrelationLoss` (the negated
    squared local correlation, in ``[-1, 0]``, ``-1`` for a perfect local linear match), computed by
    :class:`BandedLocalNormalizedCrossCorrelationLoss` (same values, faster to train on the CPU). Of the two
    definitions used with Krebs et al.'s models (this average, or the half-way comparison of
    ``warp(M, exp(v/2))`` with ``warp(F, exp(-v/2))``), this one is chosen because both terms compare an
    image with an unresampled one on its own grid, and it needs no extra exponentiation beyond the two
    fields a diffeomorphic model already returns. Swapping ``(M, F)`` together with ``(u, u^-1)`` leaves it
    unchanged. Warping is bilinear with border padding (MONAI's ``Warp``, as
    :class:`~monai_cardiac.networks.blocks.DisplacementWarp` computes it).

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
        self.lncc = BandedLocalNormalizedCrossCorrelationLoss(
            spatial_dims=spatial_dims,
            kernel_size=kernel_size,
            kernel_type=kernel_type,
            reduction=reduction,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )
        self.warp = DisplacementWarp(mode="bilinear", padding_mode="border")

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
