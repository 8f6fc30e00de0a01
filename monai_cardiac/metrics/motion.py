"""Motion-field metrics: spatial and temporal smoothness, end-point error, and intensity error after warping.

Displacements are in voxels (docs/conventions.md). Every function reduces over the voxels inside an optional
mask (nonzero = inside) given per item ``(B, *spatial)`` or shared ``(*spatial)``, and returns NaN for an item
whose mask is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_tensor

from monai_cardiac.displacement import check_ddf

from ._utils import masked_mean, prepare_mask, spacing_per_item
from .jacobian import displacement_gradient

__all__ = ["end_point_error", "spatial_gradient_magnitude", "temporal_gradient_magnitude", "warped_rmse"]


def spatial_gradient_magnitude(ddf: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> torch.Tensor:
    """Mean Frobenius norm of the spatial gradient of ``u``, a spatial smoothness measure.

    Per voxel ``sqrt(sum_ij (d u_i / d x_j) ** 2)``, with the finite differences of
    :py:func:`monai_cardiac.metrics.jacobian.displacement_gradient`, averaged inside the mask.

    Args:
        ddf: displacement ``(B, S, *spatial)`` in voxels; a sequence ``(T, S, *spatial)`` gives one value per
            frame.
        mask: optional region ``(B, *spatial)`` or ``(*spatial)``.

    Returns:
        tensor ``(B,)`` in voxels per voxel.

    Raises:
        ValueError: ``ddf`` not shaped ``(B, S, *spatial)``, or a mask of the wrong shape.
    """
    grad = displacement_gradient(ddf)
    norm = grad.flatten(1, 2).norm(dim=1)
    return masked_mean(norm, prepare_mask(mask, norm.shape, norm.device))


def _sequence_spatial_dims(shape: tuple[int, ...], spatial_dims: int | None) -> tuple[int, bool]:
    """Read ``(S, batched)`` off the shape of a displacement sequence, or raise naming the shape."""
    ndim = len(shape)
    layouts = []  # (S, batched) pairs consistent with the shape
    for dims in (2, 3) if spatial_dims is None else (spatial_dims,):
        if ndim == dims + 2 and shape[1] == dims:
            layouts.append((dims, False))
        if ndim == dims + 3 and shape[2] == dims:
            layouts.append((dims, True))
    if len(layouts) == 1:
        return layouts[0]
    if not layouts:
        raise ValueError(
            "ddf_sequence must be shaped (T, S, *spatial) or (B, T, S, *spatial) with S = 2 or 3 spatial axes"
            + ("" if spatial_dims is None else f" (spatial_dims={spatial_dims})")
            + f", got shape {shape}."
        )
    raise ValueError(f"ddf_sequence shape {shape} reads as both {layouts}; pass spatial_dims to choose.")


def temporal_gradient_magnitude(
    ddf_sequence: NdarrayOrTensor, mask: NdarrayOrTensor | None = None, spatial_dims: int | None = None
) -> torch.Tensor:
    """Mean change of the displacement between consecutive frames, a temporal smoothness measure.

    The Euclidean norm ``||u_{t+1}(x) - u_t(x)||`` over the ``S`` components is averaged over the ``T - 1``
    frame pairs and the voxels inside the mask.

    Args:
        ddf_sequence: displacements ``(T, S, *spatial)`` or a batch of sequences ``(B, T, S, *spatial)``, in
            voxels, e.g. ``u_{ED->t}`` for every frame ``t``.
        mask: optional region ``(*spatial)``, or ``(B, *spatial)`` for a batch of sequences; the same region
            is used for every frame pair.
        spatial_dims: number of spatial axes ``S``; needed only when the shape reads both ways (e.g. a 2D
            batch ``(B, 3, 2, H, W)`` is also a 3D sequence ``(T, 3, Z, H, W)``).

    Returns:
        tensor ``(B,)`` for a batch of sequences, else a 0-d tensor, in voxels per frame.

    Raises:
        ValueError: a shape that is neither layout (or both, without ``spatial_dims``), fewer than 2
            frames, or a mask of the wrong shape.
    """
    seq = convert_to_tensor(ddf_sequence, track_meta=False)
    _, batched = _sequence_spatial_dims(tuple(seq.shape), spatial_dims)
    seq = seq if batched else seq[None]
    if seq.shape[1] < 2:
        raise ValueError(f"ddf_sequence needs at least 2 frames, got shape {tuple(seq.shape)}.")
    step = (seq[:, 1:] - seq[:, :-1]).norm(dim=2)  # (B, T - 1, *spatial)
    spatial_shape = tuple(step.shape[2:])
    if not batched and mask is not None and tuple(mask.shape) != spatial_shape:
        raise ValueError(f"mask must have shape {spatial_shape} for one sequence, got {tuple(mask.shape)}.")
    mask_t = prepare_mask(mask, (step.shape[0],) + spatial_shape, step.device)
    mask_t = None if mask_t is None else mask_t[:, None].expand_as(step)
    out = masked_mean(step, mask_t)
    return out if batched else out[0]


def end_point_error(
    ddf_pred: NdarrayOrTensor,
    ddf_true: NdarrayOrTensor,
    mask: NdarrayOrTensor | None = None,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | NdarrayOrTensor | None = None,
) -> torch.Tensor:
    """Mean end-point error ``||u_pred(x) - u_true(x)||`` per batch item.

    Args:
        ddf_pred: displacement ``(B, S, *spatial)`` in voxels; sequences go with frames as the batch.
        ddf_true: reference displacement of the same shape.
        mask: optional region ``(B, *spatial)`` or ``(*spatial)``.
        spacing: ``None`` for the error in voxels; otherwise the voxel size in mm (one number, one per
            spatial axis in array order, or one such sequence per item) to scale each component by, giving
            the error in mm.

    Returns:
        tensor ``(B,)`` in voxels, or mm when ``spacing`` is given.

    Raises:
        ValueError: fields of different shapes or not shaped ``(B, S, *spatial)``, a bad ``spacing``, or a
            mask of the wrong shape.
    """
    pred = check_ddf(convert_to_tensor(ddf_pred, track_meta=False), "ddf_pred")
    true = check_ddf(convert_to_tensor(ddf_true, track_meta=False), "ddf_true")
    if pred.shape != true.shape:
        raise ValueError(
            f"ddf_pred and ddf_true must have the same shape, got {tuple(pred.shape)} and {tuple(true.shape)}."
        )
    diff = pred - true
    if spacing is not None:
        scale = spacing_per_item(spacing, diff.shape[0], diff.shape[1])  # (B, S) mm
        scale_t = convert_to_tensor(scale, dtype=diff.dtype, device=diff.device)
        diff = diff * scale_t.reshape(scale.shape + (1,) * (diff.ndim - 2))
    error = diff.norm(dim=1)
    return masked_mean(error, prepare_mask(mask, error.shape, error.device))


def warped_rmse(
    warped: NdarrayOrTensor, target: NdarrayOrTensor, mask: NdarrayOrTensor | None = None
) -> torch.Tensor:
    """Root-mean-square intensity difference between a warped image and its target, per batch item.

    Args:
        warped: image ``(B, C, *spatial)``, e.g. ``warp_image(I_ED, u_{ED->t})``.
        target: image of the same shape, e.g. ``I_t``.
        mask: optional region ``(B, *spatial)`` or ``(*spatial)``, shared by all channels.

    Returns:
        tensor ``(B,)`` in the images' intensity units.

    Raises:
        ValueError: images of different shapes or fewer than 3 axes, or a mask of the wrong shape.
    """
    warped_t = convert_to_tensor(warped, track_meta=False)
    target_t = convert_to_tensor(target, track_meta=False)
    if warped_t.shape != target_t.shape or warped_t.ndim < 3:
        raise ValueError(
            f"warped and target must be (B, C, *spatial) of the same shape, got {tuple(warped_t.shape)} "
            f"and {tuple(target_t.shape)}."
        )
    diff = warped_t - target_t
    squared = (diff if diff.is_floating_point() else diff.float()).square().mean(dim=1)
    return torch.sqrt(masked_mean(squared, prepare_mask(mask, squared.shape, squared.device)))
