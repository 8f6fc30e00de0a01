"""Instance refinement of a network's tracking fields on the cine they were predicted for.

A motion network predicts ``u_{ED->t}`` in one pass; on a given cine the fields can be brought closer to the
images by a short optimisation that starts from them (test-time instance optimisation, as classical registration
does from scratch): minimise, over the fields of all frames at once,

    mean_t D(I_ED(x + u_t(x)), I_t(x))  +  smoothness * Diffusion(u_t)
        +  temporal_smoothness * mean_t |u_{t+1} - u_t|^2

with Adam, the ED frame's field held at zero; with the frames' class probabilities ``P_t`` (a segmentation network's),
``segmentation_weight * mean_t |P_ED(x + u_t(x)) - P_t(x)|^2`` (summed over classes) is added, which pulls the
fields towards carrying the ED segmentation onto each frame's, where the images alone cannot tell (uniform blood
pools, thin walls). ``D`` is the mean squared error (``similarity="mse"``) or one minus
the local normalised cross-correlation in a square window (``"lncc"``, MONAI's
``LocalNormalizedCrossCorrelationLoss`` as computed by
:class:`~monai_cardiac.losses.BandedLocalNormalizedCrossCorrelationLoss`; the similarity B-spline registration of
cine MRI uses, insensitive to the intensity drift of blood and myocardium over the cycle). The temporal term (mean
over voxels and consecutive frame pairs, in file order after ED, not wrapped around the cycle; the pair (ED, first
frame) included, whose ED field is zero) ties each frame's field to its neighbours', as group-wise registration
ties the whole cycle: the small frame-to-frame motion guides the fields of the frames far from ED. Intensities
are scaled to [0, 1] by the cine's 1st and
99th percentiles first, so ``smoothness`` means the same on every cine. ``Diffusion`` is the mean squared forward
difference of the field along each image axis, summed over the axes (the diffusion regulariser of VoxelMorph).

With several ``levels`` (down-sampling factors, coarse to fine, e.g. ``(2, 1)``) the optimisation runs first on
images averaged over ``f x f`` blocks with the fields scaled down likewise, and each level's result, up-sampled,
starts the next: the coarse levels move large structures cheaply, the last one works at full resolution.
``iterations`` is the number of Adam steps per level.

The defaults (MSE, diffusion weight 0.03, levels ``(2, 1)``, 300 steps per level, step 0.05 voxel) were chosen on
acdc_dev's validation split from the networks' fields of both bundles, and the segmentation weight 0.1 from the joint
network's soft-max, with which 50 steps per level give the same Dice (the joint configs use 50;
bundles/joint/docs/README.md, "Real data").
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.networks.utils import one_hot
from monai.transforms import MapTransform
from monai.utils import convert_to_numpy, convert_to_tensor

from monai_cardiac.data.nifti import NUM_CLASSES, check_label_values
from monai_cardiac.displacement import warp_image
from monai_cardiac.errors import CineDataError
from monai_cardiac.losses import BandedLocalNormalizedCrossCorrelationLoss

__all__ = ["SIMILARITIES", "RefineTrackingd", "label_probabilities", "refine_tracking"]

_SOURCE = "refine_tracking"

SIMILARITIES = ("mse", "lncc")
"""Image similarities :func:`refine_tracking` can optimise."""


def label_probabilities(labels: NdarrayOrTensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """The one-hot probabilities ``(T, num_classes, H, W)`` of class-id labels ``(T, H, W)``, float32.

    For the segmentation term of :func:`refine_tracking` where a segmentation is at hand as labels (e.g. an inference
    bundle's written output) rather than as soft-max probabilities.

    Raises:
        CineDataError: labels that are not ``(T, H, W)``, or values that are not class ids in ``[0, num_classes)``
            (:func:`~monai_cardiac.data.nifti.check_label_values`).
    """
    ids = convert_to_numpy(labels)
    if ids.ndim != 3:
        raise CineDataError(f"expected labels (T, H, W), got shape {tuple(ids.shape)}", _SOURCE)
    ids = torch.as_tensor(check_label_values(ids, _SOURCE, num_classes), dtype=torch.long)
    return one_hot(ids[:, None], num_classes, dim=1).float()


def _diffusion(u: torch.Tensor) -> torch.Tensor:
    """Diffusion penalty of fields ``(T, 2, H, W)``: mean squared forward difference along H plus that along W."""
    return torch.diff(u, dim=2).square().mean() + torch.diff(u, dim=3).square().mean()


def _resize_fields(fields: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Fields ``(T, 2, h, w)`` in voxels resampled to ``size``, their components rescaled to the new voxels."""
    scale = torch.tensor([size[0] / fields.shape[-2], size[1] / fields.shape[-1]], device=fields.device)
    resized = F.interpolate(fields, size=tuple(size), mode="bilinear", align_corners=False)
    return resized * scale.view(1, 2, 1, 1)


def refine_tracking(
    image: NdarrayOrTensor,
    ddf: NdarrayOrTensor,
    reference: int = 0,
    iterations: int = 300,
    smoothness: float = 0.03,
    learning_rate: float = 0.05,
    similarity: str = "mse",
    levels: Sequence[int] = (2, 1),
    window: int = 9,
    temporal_smoothness: float = 0.0,
    segmentation: NdarrayOrTensor | None = None,
    segmentation_weight: float = 0.1,
) -> torch.Tensor:
    """Refine tracking fields ``u_{reference->t}`` of a 2D cine by optimising them on its own frames.

    Args:
        image: the cine ``(T, H, W)`` (any intensity range; scaled to [0, 1] by its 1st / 99th percentiles).
        ddf: its tracking fields ``u_{reference->t}`` ``(T, 2, H, W)`` in voxels, MONAI's pull convention (frame
            ``reference`` warped by ``u_t`` lands on frame ``t``), the starting point.
        reference: the frame the fields start from (ED); its field stays zero.
        iterations: Adam steps per level (0 returns the fields unchanged, as float32).
        smoothness: weight of the diffusion penalty (on [0, 1] intensities, mean over pixels and frames).
        learning_rate: Adam's step size, in voxels of the level being optimised.
        similarity: ``"mse"`` or ``"lncc"`` (see the module docstring).
        levels: down-sampling factors, coarse to fine, each >= 1; the last should be 1 (full resolution).
        window: side of the LNCC window, voxels of each level (odd, >= 5).
        temporal_smoothness: weight of the mean squared difference of consecutive frames' fields (voxels of
            the level, frames in the order given with ``reference`` first; 0: frames refined independently).
        segmentation: class probabilities of every frame ``(T, C, H, W)`` (e.g. the joint network's soft-max, or
            the one-hot of its labels), for the segmentation-consistency term; ``None``: no such term.
        segmentation_weight: weight of that term (used only with ``segmentation``): the mean over frames and
            pixels of the squared difference, summed over classes, between the reference frame's probabilities
            warped onto frame ``t`` and frame ``t``'s own (in [0, 2]); the fields are pulled towards carrying the
            reference segmentation onto each frame's segmentation.

    Returns:
        float32 ``(T, 2, H, W)`` refined fields on the device of ``ddf``.

    Raises:
        CineDataError: a cine that is not ``(T, H, W)``, fields that are not ``(T, 2, H, W)`` on its grid, or
            non-finite values in either; a ``reference`` outside ``[0, T)``.
        ValueError: negative ``iterations``, ``smoothness``, ``temporal_smoothness`` or ``segmentation_weight``; a
            non-positive
            ``learning_rate``; an unknown
            ``similarity``; ``levels`` empty or below 1; an even or too small ``window``.
    """
    if iterations < 0 or min(smoothness, temporal_smoothness, segmentation_weight) < 0 or learning_rate <= 0:
        raise ValueError(
            f"iterations, smoothness, temporal_smoothness and segmentation_weight must be >= 0 and learning_rate > 0, "
            f"got {iterations}, {smoothness}, {temporal_smoothness}, {segmentation_weight}, {learning_rate}."
        )
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}.")
    if not levels or min(int(f) for f in levels) < 1:
        raise ValueError(f"levels must be down-sampling factors >= 1, coarse to fine, got {levels}.")
    if window < 5 or window % 2 == 0:
        raise ValueError(f"window must be odd and >= 5 (a 3-voxel LNCC window degenerates), got {window}.")
    fields = convert_to_tensor(ddf, track_meta=False, dtype=torch.float32)
    frames = convert_to_tensor(image, track_meta=False, dtype=torch.float32, device=fields.device)
    if frames.ndim != 3:
        raise CineDataError(f"expected a cine (T, H, W), got shape {tuple(frames.shape)}", _SOURCE)
    if fields.shape != (frames.shape[0], 2, *frames.shape[1:]):
        raise CineDataError(
            f"expected tracking fields (T, 2, H, W) = {(frames.shape[0], 2, *frames.shape[1:])} for a cine of shape "
            f"{tuple(frames.shape)}, got {tuple(fields.shape)}",
            _SOURCE,
        )
    if not (torch.isfinite(frames).all() and torch.isfinite(fields).all()):
        raise CineDataError("the cine and its tracking fields must be finite (NaN or inf found)", _SOURCE)
    if not 0 <= reference < frames.shape[0]:
        raise CineDataError(f"reference frame {reference} outside [0, {frames.shape[0]})", _SOURCE)
    probabilities = None
    if segmentation is not None and segmentation_weight > 0:
        probabilities = convert_to_tensor(segmentation, track_meta=False, dtype=torch.float32, device=fields.device)
        if probabilities.ndim != 4 or (probabilities.shape[0], *probabilities.shape[2:]) != tuple(frames.shape):
            raise CineDataError(
                f"expected class probabilities (T, C, H, W) with (T, H, W) = {tuple(frames.shape)}, got "
                f"{tuple(probabilities.shape)}",
                _SOURCE,
            )
        if not torch.isfinite(probabilities).all():
            raise CineDataError("the class probabilities must be finite (NaN or inf found)", _SOURCE)
    if iterations == 0:
        return fields.clone()
    low, high = torch.quantile(frames.flatten(), torch.tensor([0.01, 0.99], device=frames.device))
    frames = ((frames - low) / (high - low).clamp_min(1e-6)).clamp(0.0, 1.0)[:, None]  # (T, 1, H, W)
    # D = 1 + LNCC (LNCC lies in [-1, 0]) on the image channel, or None for MSE
    lncc = None if similarity == "mse" else BandedLocalNormalizedCrossCorrelationLoss(
        spatial_dims=2, kernel_size=window, kernel_type="rectangular")
    num_channels = 1 if probabilities is None else 1 + probabilities.shape[1]
    # The squared-difference terms (the image's with MSE; the probabilities', summed over classes) as one sum over
    # channels: each channel is scaled once by the square root of its weight / (T h w), warping being linear in the
    # image. With LNCC the image channel has its own term and stays unscaled.
    channel_weights = torch.full((1, num_channels, 1, 1), segmentation_weight, device=frames.device)
    channel_weights[:, 0] = 1.0
    full_size = tuple(frames.shape[-2:])
    current = fields.clone()
    current[reference] = 0.0  # the reference frame's field is the identity; its gradient is zeroed (Adam keeps it 0)
    for factor in (int(f) for f in levels):
        level_frames = F.avg_pool2d(frames, factor, ceil_mode=True) if factor > 1 else frames
        size = tuple(level_frames.shape[-2:])
        if probabilities is not None:  # the probabilities travel as further channels of the images
            level_frames = torch.cat(
                [level_frames, F.avg_pool2d(probabilities, factor, ceil_mode=True) if factor > 1 else probabilities], 1
            )
        scales = (channel_weights / level_frames[:, 0].numel()).sqrt()
        if lncc is not None:
            scales[:, 0] = 1.0
        level_frames = level_frames * scales
        moving = level_frames[reference].expand_as(level_frames)  # the reference frame for every t
        level_fields = (_resize_fields(current, size) if size != full_size else current).detach().requires_grad_(True)
        optimizer = torch.optim.Adam([level_fields], lr=learning_rate)
        with torch.enable_grad():
            for _ in range(iterations):
                warped = warp_image(moving, level_fields)
                residual = warped - level_frames if lncc is None else warped[:, 1:] - level_frames[:, 1:]
                loss = residual.square().sum() + smoothness * _diffusion(level_fields)
                if lncc is not None:
                    loss = loss + 1.0 + lncc(warped[:, :1], level_frames[:, :1])
                if temporal_smoothness > 0:
                    # reference first, then file order
                    ordered = torch.cat([level_fields[reference:], level_fields[:reference]])
                    loss = loss + temporal_smoothness * torch.mean((ordered[1:] - ordered[:-1]) ** 2)
                optimizer.zero_grad()
                loss.backward()
                assert level_fields.grad is not None  # set by backward
                level_fields.grad[reference] = 0.0
                optimizer.step()
        current = level_fields.detach()
        if size != full_size:
            current = _resize_fields(current, full_size)
    return current


class RefineTrackingd(MapTransform):
    """Dictionary transform: refine the tracking fields ``d[ddf_key]`` on the cine ``d[image_key]`` in place.

    For an inference pipeline's post-processing, after the network's fields were turned into tracking fields
    ``u_{ED->t}`` ``(T, 2, H, W)`` on the network's grid (ED first) and before they go back to the input grid. A
    slice cine ``(T, H, W)`` is refined as a whole; ``iterations=0`` leaves the entry unchanged.

    Args:
        ddf_key: key of the tracking fields ``(T, 2, H, W)``, voxels.
        image_key: key of the preprocessed cine ``(T, H, W)``, ED first, on the same grid.
        segmentation_key: key of the frames' class probabilities ``(T, C, H, W)`` on the same grid (e.g. from
            ``JointPredictionSplitd(prob_key=...)``); ``None``: no segmentation term.
        iterations, smoothness, learning_rate, similarity, levels, window, temporal_smoothness,
            segmentation_weight: see :func:`refine_tracking`.

    Raises:
        ValueError: bad options (see :func:`refine_tracking`).
    """

    def __init__(
        self,
        ddf_key: str = "ddf",
        image_key: str = "image",
        iterations: int = 0,
        smoothness: float = 0.03,
        learning_rate: float = 0.05,
        similarity: str = "mse",
        levels: Sequence[int] = (2, 1),
        window: int = 9,
        temporal_smoothness: float = 0.0,
        segmentation_key: str | None = None,
        segmentation_weight: float = 0.1,
    ) -> None:
        super().__init__(keys=[ddf_key])
        if iterations < 0 or similarity not in SIMILARITIES:
            raise ValueError(f"iterations must be >= 0 and similarity one of {SIMILARITIES}, got {iterations}, "
                             f"{similarity!r}.")
        self.ddf_key, self.image_key, self.segmentation_key = ddf_key, image_key, segmentation_key
        self.options: dict[str, Any] = {
            "iterations": int(iterations), "smoothness": smoothness, "learning_rate": learning_rate,
            "similarity": similarity, "levels": tuple(levels), "window": window,
            "temporal_smoothness": temporal_smoothness, "segmentation_weight": segmentation_weight,
        }

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.options["iterations"] == 0:
            return d
        image = convert_to_tensor(d[self.image_key], track_meta=False)
        segmentation = d[self.segmentation_key] if self.segmentation_key is not None else None
        d[self.ddf_key] = refine_tracking(
            image, d[self.ddf_key], reference=0, segmentation=segmentation, **self.options
        )
        return d
