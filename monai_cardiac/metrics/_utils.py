"""Input checks and masked reductions shared by the metrics in this package (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.metrics.utils import is_binary_tensor, prepare_spacing
from monai.networks.utils import one_hot
from monai.utils import convert_to_numpy, convert_to_tensor

from monai_cardiac.data.nifti import check_label_values

__all__ = ["as_one_hot_pair", "masked_mean", "prepare_mask", "spacing_per_item"]


def _as_one_hot(x: torch.Tensor, num_classes: int | None, name: str) -> torch.Tensor:
    """Return ``x`` as a float one-hot tensor ``(B, C, *spatial)``, converting a label map if ``num_classes`` asks."""
    if num_classes is not None and x.shape[1] == 1 and num_classes > 1:
        check_label_values(convert_to_numpy(x), name, num_classes)
        return one_hot(x.long(), num_classes=num_classes, dim=1)
    if num_classes is not None and x.shape[1] != num_classes:
        raise ValueError(
            f"{name} must be a label map (B, 1, *spatial) or one-hot (B, {num_classes}, *spatial), "
            f"got shape {tuple(x.shape)}."
        )
    is_binary_tensor(x, name)
    return x.float()


def as_one_hot_pair(
    y_pred: NdarrayOrTensor, y: NdarrayOrTensor, num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a prediction/reference pair and return both as float one-hot tensors ``(B, C, *spatial)``.

    Args:
        y_pred: binarised one-hot ``(B, C, *spatial)``, or an integer label map ``(B, 1, *spatial)`` when
            ``num_classes`` is given.
        y: same as ``y_pred``.
        num_classes: number of classes (background included) used to one-hot label maps; ``None`` requires
            both inputs one-hot.

    Returns:
        ``(y_pred, y)`` as float tensors with identical shapes.

    Raises:
        ValueError: fewer than one spatial axis, or shapes that disagree.
        CineDataError: a label map holds values outside ``[0, num_classes)``.
    """
    y_pred_t = convert_to_tensor(y_pred, track_meta=False)
    y_t = convert_to_tensor(y, track_meta=False)
    if y_pred_t.ndim < 3 or y_pred_t.ndim != y_t.ndim:
        raise ValueError(
            f"y_pred and y must both be (B, C, *spatial), got shapes {tuple(y_pred_t.shape)} and {tuple(y_t.shape)}."
        )
    if y_pred_t.shape[0] != y_t.shape[0] or y_pred_t.shape[2:] != y_t.shape[2:]:
        raise ValueError(
            "y_pred and y must share batch and spatial sizes, "
            f"got shapes {tuple(y_pred_t.shape)} and {tuple(y_t.shape)}."
        )
    y_pred_t = _as_one_hot(y_pred_t, num_classes, "y_pred")
    y_t = _as_one_hot(y_t, num_classes, "y")
    if y_pred_t.shape[1] != y_t.shape[1]:
        raise ValueError(
            f"y_pred and y must have the same number of classes, got shapes {tuple(y_pred_t.shape)} "
            f"and {tuple(y_t.shape)}."
        )
    return y_pred_t, y_t


def spacing_per_item(
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | NdarrayOrTensor | None,
    batch_size: int,
    spatial_dims: int,
) -> np.ndarray:
    """Spread ``spacing`` over a batch, as :py:func:`monai.metrics.utils.prepare_spacing` reads it.

    Args:
        spacing: ``None`` (1 mm), one number for every axis, one number per spatial axis, or one such
            sequence per batch item. Arrays and tensors are read as the matching nested sequence.
        batch_size: number of batch items ``B``.
        spatial_dims: number of spatial axes ``S``.

    Returns:
        float64 array ``(B, S)`` of spacings in mm.

    Raises:
        ValueError: a sequence whose length matches neither ``S`` nor ``B``, or non-positive spacings.
    """
    values: float | list[Any] | None = (
        spacing
        if spacing is None or isinstance(spacing, (int, float))
        else convert_to_numpy(spacing, dtype=np.float64, wrap_sequence=True).tolist()
    )
    items = prepare_spacing(spacing=values, batch_size=batch_size, img_dim=spatial_dims)
    out = np.empty((batch_size, spatial_dims), dtype=np.float64)
    for b, s in enumerate(items):
        out[b] = 1.0 if s is None else s
    if not np.all(out > 0):
        raise ValueError(f"spacing must be positive, got {values}.")
    return out


def prepare_mask(mask: NdarrayOrTensor | None, shape: Sequence[int], device: torch.device) -> torch.Tensor | None:
    """Check a voxel mask against values of shape ``(B, *spatial)`` and return it as a bool tensor of that shape.

    Args:
        mask: ``None``, or a mask of shape ``(B, *spatial)`` (one per item) or ``(*spatial)`` (shared by every
            item); nonzero means inside.
        shape: the shape ``(B, *spatial)`` of the values to be masked.
        device: device of the values.

    Returns:
        ``None`` if ``mask`` is ``None``, else a bool tensor of shape ``shape``.

    Raises:
        ValueError: a mask shape that is neither ``(B, *spatial)`` nor ``(*spatial)``.
    """
    if mask is None:
        return None
    mask_t = convert_to_tensor(mask, device=device, track_meta=False)
    shape = tuple(shape)
    if tuple(mask_t.shape) not in (shape, shape[1:]):
        raise ValueError(f"mask must have shape {shape} or {shape[1:]}, got {tuple(mask_t.shape)}.")
    return torch.broadcast_to(mask_t != 0, shape)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over all axes but the first, inside ``mask``.

    Args:
        values: tensor ``(B, *rest)``.
        mask: ``None`` (every voxel) or bool tensor of the same shape.

    Returns:
        tensor ``(B,)``; NaN for an item whose mask is empty. Values outside the mask never reach the result,
        even if they are not finite.
    """
    if mask is None:
        return values.flatten(1).mean(dim=1)
    count = mask.flatten(1).sum(dim=1)
    total = torch.where(mask, values, torch.zeros_like(values)).flatten(1).sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))
