"""Training objective of the probabilistic motion model (Krebs et al., STACOM 2019)."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses._precision import float32_loss
from monai_cardiac.losses.kl import KLDivergenceLoss
from monai_cardiac.losses.similarity import SymmetricLocalNormalizedCrossCorrelationLoss

__all__ = ["ProbabilisticMotionLoss"]


class ProbabilisticMotionLoss(_Loss):
    """Negative lower bound of Krebs et al.'s Eq. 1, per time step: ``lambda * similarity + KL``.

    ::

        similarity = mean over b, t of SymLNCC(I_0, I_t, u_{ED->t}, u_{t->ED})      in [-1, 0]
        kl         = mean over b, t of KL[q(z~_t | I_0, I_t) || N(0, I)]            summed over the d dims
        loss       = lambda_ * similarity + kl

    ``SymLNCC`` is :class:`SymmetricLocalNormalizedCrossCorrelationLoss` with ``reduction="mean"``: MONAI's
    per-voxel ``-NCC**2`` averaged over the voxels (and over the ``B * T`` image pairs), so in ``[-1, 0]``
    whatever the image size. The KL is :class:`KLDivergenceLoss`, summed over the latent dimensions and
    averaged over the ``B * T`` codes. The likelihood ``p(I_t | z_t, I_0)`` is a Boltzmann distribution
    ``exp(-lambda * D)`` of the symmetric LNCC dissimilarity ``D``, so ``-log p = lambda * D`` up to a
    constant; adding the KL and summing over time steps gives Eq. 1's negative, and dividing that sum by
    ``B * T`` gives this loss. (Forms such as ``1 - NCC**2`` differ from ``-NCC**2`` by a constant, which
    changes neither the gradients nor the effect of ``lambda``.) All time steps count, including those that
    took a prior sample under temporal dropout.

    On ``lambda``: Krebs et al. (STACOM 2019) give ``lambda = 6e4`` as the weight of the LNCC likelihood
    against the KL term, without saying how their LNCC is reduced over the voxels. This code reduces it by
    the voxel mean described above; that ``6e4`` has the intended scale relative to this voxel-mean
    reduction is this project's assumption, not a statement of the paper. (Had the paper summed over the
    voxels, the weight equivalent to its ``6e4`` here would be ``6e4 * H * W``.)

    The loss is computed in float32 under any autocast (see :func:`~monai_cardiac.losses._precision.float32_loss`).

    Args:
        lambda_: weight of the similarity term (``6e4``, the paper's value; see above for its scale).
        kernel_size: LNCC window size (odd).
        kernel_type: LNCC window, ``"rectangular"``, ``"triangular"`` or ``"gaussian"``.

    Raises:
        ValueError: on a negative ``lambda_`` (and the similarity's own checks).
    """

    def __init__(self, lambda_: float = 6e4, kernel_size: int = 9, kernel_type: str = "rectangular") -> None:
        super().__init__()
        if not lambda_ >= 0:
            raise ValueError(f"lambda_ must be >= 0, got {lambda_}.")
        self.lambda_ = float(lambda_)
        self.similarity = SymmetricLocalNormalizedCrossCorrelationLoss(
            spatial_dims=2, kernel_size=kernel_size, kernel_type=kernel_type
        )
        self.kl = KLDivergenceLoss()

    @float32_loss
    def forward(
        self,
        moving: torch.Tensor,
        fixed: torch.Tensor,
        ddf: torch.Tensor,
        inverse_ddf: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            moving: ED frame ``(B, 1, H, W)``.
            fixed: frames after ED ``(B, T, H, W)``.
            ddf: ``u_{ED->t}`` ``(B, T, 2, H, W)``, voxels (the model's ``"ddf"``).
            inverse_ddf: ``u_{t->ED}`` ``(B, T, 2, H, W)``, voxels (the model's ``"inverse_ddf"``).
            mu: posterior means ``(B, T, d)`` (the model's ``"mu"``).
            logvar: posterior log-variances ``(B, T, d)`` (the model's ``"logvar"``).

        Returns:
            dict of scalars: ``"loss"`` (to minimise), ``"similarity"`` (the unweighted symmetric LNCC, in
            ``[-1, 0]``) and ``"kl"`` (mean KL per time step, nats).

        Raises:
            CineDataError: when the shapes do not fit together.
        """
        if moving.ndim != 4 or moving.shape[1] != 1 or fixed.ndim != 4 or fixed.shape[0] != moving.shape[0]:
            raise CineDataError(
                f"expected moving (B, 1, H, W) and fixed (B, T, H, W), got {tuple(moving.shape)} and "
                f"{tuple(fixed.shape)}.",
                "ProbabilisticMotionLoss inputs",
            )
        batch, steps, height, width = fixed.shape
        field_shape = (batch, steps, 2, height, width)
        if tuple(moving.shape[2:]) != (height, width) or ddf.shape != field_shape or inverse_ddf.shape != field_shape:
            raise CineDataError(
                f"expected moving (B, 1, H, W) and fields {field_shape} for fixed {tuple(fixed.shape)}, got "
                f"{tuple(moving.shape)}, {tuple(ddf.shape)} and {tuple(inverse_ddf.shape)}.",
                "ProbabilisticMotionLoss inputs",
            )
        if mu.shape[:2] != (batch, steps):
            raise CineDataError(
                f"mu and logvar must be ({batch}, {steps}, d), got {tuple(mu.shape)}.", "ProbabilisticMotionLoss inputs"
            )
        pairs = batch * steps
        moving_pairs = moving.expand(batch, steps, height, width).reshape(pairs, 1, height, width)
        similarity = self.similarity(
            moving_pairs,
            fixed.reshape(pairs, 1, height, width),
            ddf.reshape(pairs, 2, height, width),
            inverse_ddf.reshape(pairs, 2, height, width),
        )
        kl = self.kl(mu, logvar)
        return {"loss": self.lambda_ * similarity + kl, "similarity": similarity, "kl": kl}
