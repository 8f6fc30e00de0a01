"""Instance refinement of a network's tracking fields on the cine they were predicted for.

A motion network predicts ``u_{ED->t}`` in one pass; on a given cine the fields can be brought closer to the
images by a short optimisation that starts from them (test-time instance optimisation, as classical registration
does from scratch): minimise, over the fields of all frames at once,

    mean_t || I_ED(x + u_t(x)) - I_t(x) ||^2  +  smoothness * Diffusion(u_t)

with Adam, the ED frame's field held at zero. Intensities are scaled to [0, 1] by the cine's 1st and 99th
percentiles first, so ``smoothness`` means the same on every cine. ``Diffusion`` is the mean squared forward
difference of the field along each image axis, summed over the axes (the diffusion regulariser of VoxelMorph).
"""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_tensor

from monai_cardiac.displacement import warp_image
from monai_cardiac.errors import CineDataError

__all__ = ["refine_tracking"]

_SOURCE = "refine_tracking"


def refine_tracking(
    image: NdarrayOrTensor,
    ddf: NdarrayOrTensor,
    reference: int = 0,
    iterations: int = 200,
    smoothness: float = 0.1,
    learning_rate: float = 0.05,
) -> torch.Tensor:
    """Refine tracking fields ``u_{reference->t}`` of a 2D cine by optimising them on its own frames.

    Args:
        image: the cine ``(T, H, W)`` (any intensity range; scaled to [0, 1] by its 1st / 99th percentiles).
        ddf: its tracking fields ``u_{reference->t}`` ``(T, 2, H, W)`` in voxels, MONAI's pull convention (frame
            ``reference`` warped by ``u_t`` lands on frame ``t``), the starting point.
        reference: the frame the fields start from (ED); its field stays zero.
        iterations: Adam steps (0 returns the fields unchanged, as float32).
        smoothness: weight of the diffusion penalty (on [0, 1] intensities, mean over pixels and frames).
        learning_rate: Adam's step size, in voxels.

    Returns:
        float32 ``(T, 2, H, W)`` refined fields on the device of ``ddf``.

    Raises:
        CineDataError: a cine that is not ``(T, H, W)``, fields that are not ``(T, 2, H, W)`` on its grid, or
            non-finite values in either; a ``reference`` outside ``[0, T)``.
        ValueError: negative ``iterations``, ``smoothness`` or a non-positive ``learning_rate``.
    """
    if iterations < 0 or smoothness < 0 or learning_rate <= 0:
        raise ValueError(
            f"iterations and smoothness must be >= 0 and learning_rate > 0, got {iterations}, {smoothness}, "
            f"{learning_rate}."
        )
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
    if iterations == 0:
        return fields.clone()
    low, high = torch.quantile(frames.flatten(), torch.tensor([0.01, 0.99], device=frames.device))
    frames = ((frames - low) / (high - low).clamp_min(1e-6)).clamp(0.0, 1.0)
    moving = frames[reference].expand_as(frames)[:, None]  # (T, 1, H, W): the reference frame for every t
    targets = frames[:, None]
    keep = torch.ones(frames.shape[0], 1, 1, 1, device=frames.device)
    keep[reference] = 0.0  # the reference frame's field is the identity
    fields = (fields * keep).detach().requires_grad_(True)
    optimizer = torch.optim.Adam([fields], lr=learning_rate)
    with torch.enable_grad():
        for _ in range(iterations):
            u = fields * keep
            warped = warp_image(moving, u)
            diffusion = torch.mean((u[:, :, 1:] - u[:, :, :-1]) ** 2) + torch.mean((u[..., 1:] - u[..., :-1]) ** 2)
            loss = torch.mean((warped - targets) ** 2) + smoothness * diffusion
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return (fields * keep).detach()
