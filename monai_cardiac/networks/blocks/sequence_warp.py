"""Warping every frame of a sequence with its own displacement, in float32 (MONAI's ``Warp``'s values)."""

from __future__ import annotations

import torch
from torch import nn

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.blocks.warp import DisplacementWarp

__all__ = ["SequenceWarp", "warp_probabilities"]


class SequenceWarp(nn.Module):
    """Warp frame ``t`` of a ``(B, T, C, *spatial)`` sequence with displacement ``t`` of a ``(B, T, S, *spatial)`` one.

    Pull convention of ``monai.networks.blocks.Warp`` (the project's convention):
    ``out[b, t](x) = frames[b, t](x + ddf[b, t](x))``, displacement in voxels, channel order = spatial axes,
    ``align_corners=True``. The warp always runs in float32 with autocast disabled, so a displacement
    predicted under ``torch.autocast`` (bf16 / fp16) is not rounded before it moves pixels.

    Args:
        mode: interpolation, ``"bilinear"`` (differentiable) or ``"nearest"``.
        padding_mode: ``"border"`` (the project's convention), ``"zeros"`` or ``"reflection"``.
    """

    def __init__(self, mode: str = "bilinear", padding_mode: str = "border") -> None:
        super().__init__()
        self.warp = DisplacementWarp(mode=mode, padding_mode=padding_mode)

    def forward(self, frames: torch.Tensor, ddf: torch.Tensor) -> torch.Tensor:
        """Warp each frame with its displacement.

        Args:
            frames: ``(B, T, C, *spatial)`` frames to warp (any floating dtype).
            ddf: ``(B, T, S, *spatial)`` displacements in voxels, ``S`` = number of spatial axes (2 or 3).

        Returns:
            ``(B, T, C, *spatial)`` float32 warped frames.

        Raises:
            CineDataError: if the shapes do not match as described.
        """
        spatial_dims = ddf.ndim - 3
        if spatial_dims not in (2, 3) or ddf.shape[2] != spatial_dims:
            raise CineDataError(
                f"ddf must be shaped (B, T, S, *spatial) with S = 2 or 3 spatial axes, got {tuple(ddf.shape)}.",
                type(self).__name__,
            )
        if frames.ndim != ddf.ndim or frames.shape[:2] != ddf.shape[:2] or frames.shape[3:] != ddf.shape[3:]:
            raise CineDataError(
                f"frames {tuple(frames.shape)} and ddf {tuple(ddf.shape)} must share batch, frame and spatial sizes "
                "(frames (B, T, C, *spatial), ddf (B, T, S, *spatial)).",
                type(self).__name__,
            )
        with torch.autocast(device_type=frames.device.type, enabled=False):
            warped = self.warp(frames.flatten(0, 1).float(), ddf.flatten(0, 1).float())
        return warped.unflatten(0, frames.shape[:2])


def warp_probabilities(logits: torch.Tensor, ddf: torch.Tensor, warp: SequenceWarp) -> torch.Tensor:
    """Soft-max segmentation logits over the class axis and warp the probabilities with a displacement.

    Warping probabilities (not labels, not logits) keeps the result differentiable and, with bilinear
    interpolation, every warped pixel is a convex combination of probability vectors, so it still sums to 1.

    Args:
        logits: ``(B, T, C, *spatial)`` class logits of ``T`` frames.
        ddf: ``(B, T, S, *spatial)`` displacements in voxels (pull convention, see :class:`SequenceWarp`).
        warp: the :class:`SequenceWarp` to use (normally ``mode="bilinear"``).

    Returns:
        ``(B, T, C, *spatial)`` float32 warped class probabilities.
    """
    return warp(torch.softmax(logits.float(), dim=2), ddf)
