"""Kullback-Leibler divergence of a diagonal Gaussian posterior from the unit Gaussian prior."""

from __future__ import annotations

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses._precision import float32_loss

__all__ = ["KLDivergenceLoss"]


class KLDivergenceLoss(_Loss):
    """``KL[ N(mu, diag(exp(logvar))) || N(0, I) ]`` in closed form, summed over the latent dimensions.

    For one code of ``d`` dimensions::

        KL = 0.5 * sum_i ( mu_i**2 + exp(logvar_i) - 1 - logvar_i )    (nats)

    The last axis of the inputs is the latent axis; every leading axis (batch, time steps, ...) indexes one
    code. ``reduction="mean"`` averages the per-code KL over all codes (for ``(B, T, d)`` inputs: over batch
    and time steps, i.e. the KL per time step of the sum in Krebs et al.'s Eq. 1 divided by ``T``).
    Computed in float32 under any autocast (:func:`~monai_cardiac.losses._precision.float32_loss`).

    Args:
        reduction: ``"mean"`` (over codes), ``"sum"`` (over codes) or ``"none"`` (one value per code, the
            input shape without its last axis).
    """

    def __init__(self, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__(reduction=LossReduction(reduction).value)

    @float32_loss
    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """
        Args:
            mu: posterior means ``(..., d)``.
            logvar: natural log of the posterior variances, same shape.

        Returns:
            the KL divergence, reduced as set by ``reduction``.

        Raises:
            CineDataError: when ``mu`` and ``logvar`` differ in shape or have no latent axis.
        """
        if mu.shape != logvar.shape or mu.ndim < 1:
            raise CineDataError(
                f"mu and logvar must share a shape (..., d), got {tuple(mu.shape)} and {tuple(logvar.shape)}.",
                "KLDivergenceLoss inputs",
            )
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)
        if self.reduction == LossReduction.MEAN.value:
            return kl.mean()
        if self.reduction == LossReduction.SUM.value:
            return kl.sum()
        return kl
