"""MONAI-style transforms for cardiac cines: loading, time-axis reordering and resampling, cropping, augmentation.

Cines are channel-first with the frames as channels, ``(T, H, W)`` or ``(T, Z, H, W)`` (docs/conventions.md).
Each array transform has a dictionary twin whose name ends in ``d``.
"""

from __future__ import annotations

from .augment import cine_augmentation
from .io import LoadCine, LoadCined
from .spatial import CropAroundHeart, CropAroundHeartd, ResampleInPlane, ResampleInPlaned, heart_center
from .temporal import (
    RandFrameSubsetd,
    ReorderFromED,
    ReorderFromEDd,
    ResampleFrames,
    ResampleFramesd,
    labelled_frame_sources,
    nearest_resampled_frame,
)

__all__ = [
    "LoadCine",
    "LoadCined",
    "ReorderFromED",
    "ReorderFromEDd",
    "ResampleFrames",
    "ResampleFramesd",
    "RandFrameSubsetd",
    "nearest_resampled_frame",
    "labelled_frame_sources",
    "CropAroundHeart",
    "CropAroundHeartd",
    "heart_center",
    "ResampleInPlane",
    "ResampleInPlaned",
    "cine_augmentation",
]
