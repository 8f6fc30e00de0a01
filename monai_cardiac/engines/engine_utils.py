"""Small pieces shared by the engines: batch unpacking, autocast, the optimizer step, checkpoints, slice spacing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import convert_to_numpy

from monai_cardiac.data.nifti import spacing_of

__all__ = ["batch_to_device", "engine_autocast", "optimizer_step", "slice_spacing"]


def batch_to_device(engine, batchdata: dict) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Images, labels and label mask of a batch on the engine's device.

    Args:
        engine: a MONAI ignite engine (``engine.state.device``, ``engine.non_blocking``).
        batchdata: a collated batch with ``image`` ``(B, T, H, W)`` and optionally ``label`` ``(B, T, H, W)``
            and ``label_mask`` ``(B, T)`` (docs/conventions.md).

    Returns:
        ``image`` float ``(B, T, H, W)``, ``labels`` long ``(B, T, H, W)`` or ``None``, ``mask`` bool ``(B, T)``
        or ``None``.
    """
    device = engine.state.device
    image = torch.as_tensor(batchdata["image"]).to(device, non_blocking=engine.non_blocking).float()
    labels = batchdata.get("label")
    mask = batchdata.get("label_mask")
    if labels is not None:
        labels = torch.as_tensor(labels).to(device).round().long()
        mask = torch.as_tensor(mask).to(device).bool()
    return image, labels, mask


def engine_autocast(engine) -> torch.autocast:
    """Autocast context when the engine runs with AMP (float16 on CUDA, bfloat16 on CPU), a no-op otherwise."""
    device_type = torch.device(engine.state.device).type
    dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
    return torch.autocast(device_type, dtype=dtype, enabled=bool(engine.amp))


def optimizer_step(engine, loss: torch.Tensor) -> None:
    """Back-propagate ``loss`` and step the engine's optimizer, through its gradient scaler on CUDA with AMP."""
    if engine.amp and engine.scaler is not None and torch.device(engine.state.device).type == "cuda":
        engine.scaler.scale(loss).backward()
        engine.scaler.step(engine.optimizer)
        engine.scaler.update()
    else:
        loss.backward()
        engine.optimizer.step()


def slice_spacing(image: Any, entry: Mapping) -> tuple[np.ndarray, bool]:
    """Voxel size of a loaded slice and whether the data set trusts it.

    Args:
        image: the slice's cine as a MetaTensor whose affine is the in-plane frame ``diag(sH, sW, sZ)``
            (docs/conventions.md); anything else gives unit spacing.
        entry: its data-list entry (``spacing_known``, default ``True``).

    Returns:
        ``(sH, sW, slice thickness)`` in mm and ``False`` where the spacing is a placeholder or missing.
    """
    affine = getattr(image, "affine", None) if isinstance(image, MetaTensor) else None
    if affine is None or tuple(affine.shape) != (4, 4):
        return np.ones(3), False
    return spacing_of(convert_to_numpy(affine)), bool(entry.get("spacing_known", True))
