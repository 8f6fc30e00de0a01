"""Composite loss of Qin et al. (MICCAI 2018) for joint motion estimation and segmentation, eq. (1) and (2)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.modules.loss import _Loss

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses._precision import float32_loss
from monai_cardiac.losses.huber_smoothness import HuberFlowSmoothnessLoss, TemporalHuberFlowSmoothnessLoss
from monai_cardiac.losses.masked_cross_entropy import MaskedCrossEntropyLoss, WarpedCrossEntropyLoss
from monai_cardiac.networks.blocks.flow_units import voxel_to_normalized_ddf
from monai_cardiac.networks.nets.joint_motion_seg import window_segmentation_logits

__all__ = ["JointMotionSegmentationLoss"]


class JointMotionSegmentationLoss(_Loss):
    """``L = L_m + lambda1 * L_s + lambda2 * L_w`` on the outputs of ``JointMotionSegNet``.

    * ``L_m = (1/T) sum_k [MSE(I_target, I'_k) + alpha * H_xy(Delta_k)] + beta * H_t(Delta)``: the mean
      squared error between the target and each warped source (``torch.nn.MSELoss``, mean over pixels, frames
      and batch), the spatial Charbonnier term :class:`HuberFlowSmoothnessLoss` of each field and the temporal
      one :class:`TemporalHuberFlowSmoothnessLoss` over the ``T`` fields (0 when ``T == 1``).
    * ``L_s``: ``segmentation_loss`` over the labelled frames of the window (target and sources): the paper's
      cross-entropy (:class:`MaskedCrossEntropyLoss`) unless another loss of the same signature is given
      (e.g. :class:`MaskedDiceCELoss`).
    * ``L_w``: :class:`WarpedCrossEntropyLoss`, source predictions warped onto the target against the
      target's label, on unlabelled source frames of samples whose target is labelled.

    Units of the smoothness terms: the network outputs ``ddf_to_target`` in voxels; it is converted back to
    the paper's normalised [-1, 1] coordinates (``u * 2 / (n - 1)`` per axis) before both Charbonnier terms,
    which use forward differences per voxel (spatial) and per frame (temporal). This keeps the paper's
    ``alpha``, ``beta`` (and ``eps``) meaningful: they were tuned for flows in normalised units on 192 x 192
    images. Intensities are expected in [0, 1] (the project's normalisation), as in the paper.

    Terms of branches that are absent from ``outputs`` are 0, and so are ``L_s`` / ``L_w`` when no labels
    are given (unsupervised motion training). ``forward`` returns the total; the detached terms of the last
    call are kept in :attr:`last_components` for logging, and :meth:`components` returns them attached.
    All are computed in float32 under any autocast (:meth:`components` is wrapped by
    :func:`~monai_cardiac.losses._precision.float32_loss`).

    Args:
        alpha: weight of the spatial smoothness (1e-3 in the paper).
        beta: weight of the temporal smoothness (1e-4).
        lambda1: weight of the segmentation cross-entropy (1e-2).
        lambda2: weight of the warped cross-entropy (1e-3).
        eps: constant of both Charbonnier terms (0.01).
        segmentation_loss: ``L_s``, called as ``(logits (B, T, C, *spatial), labels (B, T, *spatial), mask (B, T))``;
            None for :class:`MaskedCrossEntropyLoss`.

    Raises:
        ValueError: if a weight is negative or ``eps <= 0``.
    """

    def __init__(
        self,
        alpha: float = 1e-3,
        beta: float = 1e-4,
        lambda1: float = 1e-2,
        lambda2: float = 1e-3,
        eps: float = 0.01,
        segmentation_loss: _Loss | None = None,
    ) -> None:
        super().__init__()
        if min(alpha, beta, lambda1, lambda2) < 0:
            raise ValueError(f"weights must be non-negative, got {alpha=}, {beta=}, {lambda1=}, {lambda2=}.")
        self.alpha, self.beta, self.lambda1, self.lambda2 = alpha, beta, lambda1, lambda2
        self.image_loss = nn.MSELoss()
        self.spatial_smoothness = HuberFlowSmoothnessLoss(eps=eps)
        self.temporal_smoothness = TemporalHuberFlowSmoothnessLoss(eps=eps)
        self.segmentation_loss = MaskedCrossEntropyLoss() if segmentation_loss is None else segmentation_loss
        self.warped_segmentation_loss = WarpedCrossEntropyLoss()
        self.last_components: dict[str, torch.Tensor] = {}

    @float32_loss
    def components(
        self,
        outputs: Mapping[str, torch.Tensor],
        target: torch.Tensor,
        labels: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """All terms of the loss, attached to the graph.

        Args:
            outputs: the dict returned by ``JointMotionSegNet.forward`` (any subset of its keys).
            target: ``(B, C_in, *spatial)`` target frame, as given to the network.
            labels: ``(B, 1 + T, *spatial)`` class indices of the window, target first then the ``T`` sources
                (``(B, 1, *spatial)`` if the network got no sources); ``None`` for no supervision.
            label_mask: ``(B, 1 + T)`` bool, ``True`` where a frame is labelled; required with ``labels``.

        Returns:
            ``{"loss", "motion", "image_mse", "smooth_spatial", "smooth_temporal", "segmentation",
            "warped_segmentation"}``; the smoothness terms are unweighted, ``"motion"`` is ``L_m``.

        Raises:
            CineDataError: if ``labels`` come without ``label_mask``, or shapes do not match ``outputs``.
        """
        name = type(self).__name__
        zero = target.new_zeros((), dtype=torch.float32)
        names = ("image_mse", "smooth_spatial", "smooth_temporal", "segmentation", "warped_segmentation")
        terms = dict.fromkeys(names, zero)
        ddf = outputs.get("ddf_to_target")
        if ddf is not None:
            warped = outputs["warped_sources"]
            reference = target.unsqueeze(1) if warped.ndim == target.ndim + 1 else target
            terms["image_mse"] = self.image_loss(warped, reference.expand_as(warped).to(warped.dtype))
            flow = voxel_to_normalized_ddf(ddf, ddf.ndim - 3)  # the paper's normalised units
            terms["smooth_spatial"] = self.spatial_smoothness(flow.flatten(0, 1))
            if flow.shape[1] > 1:
                terms["smooth_temporal"] = self.temporal_smoothness(flow)
        if labels is not None and "seg_logits_target" in outputs:
            if label_mask is None:
                raise CineDataError("label_mask is required with labels (which frames carry a label?).", name)
            label_mask = torch.as_tensor(label_mask)
            logits = window_segmentation_logits(outputs)
            terms["segmentation"] = self.segmentation_loss(logits, labels, label_mask)
            if ddf is not None:
                terms["warped_segmentation"] = self.warped_segmentation_loss(
                    outputs["seg_logits_sources"], ddf, labels[:, 0], label_mask[:, 1:], label_mask[:, 0]
                )
        motion = terms["image_mse"] + self.alpha * terms["smooth_spatial"] + self.beta * terms["smooth_temporal"]
        total = motion + self.lambda1 * terms["segmentation"] + self.lambda2 * terms["warped_segmentation"]
        return {"loss": total, "motion": motion, **terms}

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        target: torch.Tensor,
        labels: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The total loss ``L`` (arguments as in :meth:`components`); also stores :attr:`last_components`."""
        terms = self.components(outputs, target, labels, label_mask)
        self.last_components = {k: v.detach() for k, v in terms.items()}
        return terms["loss"]
