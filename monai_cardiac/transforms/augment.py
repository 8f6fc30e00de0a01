"""Training augmentation for cines: one random in-plane geometry per cine, plus random intensity changes.

Frames are MONAI's channel axis (docs/conventions.md), so MONAI's dictionary random transforms already draw
one transform per call and apply it to every frame of every key; this module only chooses and configures them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from monai.utils import ensure_tuple

__all__ = ["cine_augmentation"]


def cine_augmentation(
    keys: KeysCollection = ("image", "label"),
    label_key: Sequence[str] | str = "label",
    prob: float = 0.5,
    rotate_deg: float = 10.0,
    shift_px: float = 10.0,
    scale: float = 0.1,
    elastic: bool = False,
    intensity: float = 0.1,
    spatial_dims: int = 2,
    orientations: bool = False,
) -> Compose:
    """Random augmentation of cines and their labels, built from MONAI random transforms.

    In order, each applied with probability ``prob`` (except the orientation) and drawn afresh on every call:

    - with ``orientations``: one of the eight in-plane orientations a scanner or converter may store a
      short-axis slice in (the dihedral group of the square: 0, 90, 180 or 270 degrees, each with or without a
      mirror), uniformly, for all frames and all ``keys``: ``RandRotate90d`` (probability 3/4, 1-3 quarter turns)
      then ``RandFlipd`` (probability 1/2) on the in-plane axes. Square crops keep their shape.
    - ``RandAffined``: one rotation in ``[-rotate_deg, rotate_deg]`` degrees, one shift in
      ``[-shift_px, shift_px]`` voxels and one scaling by ``1 + [-scale, scale]`` (drawn separately for ``H``
      and ``W``) for all frames and all ``keys``; bilinear for images, nearest for ``label_key`` (class ids stay
      class ids), zeros outside the input. For stacks (``spatial_dims=3``, spatial axes ``(Z, H, W)``) the
      rotation, shift and scaling are in-plane only: slices never mix.
    - with ``elastic`` (slices only): ``Rand2DElasticd``, a smooth deformation of up to about 4 voxels on a
      16-voxel control grid, again shared by all frames and keys.
    - on the images only (``keys`` other than ``label_key``), with ``intensity > 0``: intensity scaling
      ``v (1 + [-intensity, intensity])``, shift ``v + [-intensity, intensity]`` (for images normalised to
      [0, 1]) and contrast ``gamma`` in ``[1 - intensity, 1 + intensity]``.

    The defaults (10 degrees, 10 voxels, 10 % scaling, 10 % intensity) are the ones this project takes from
    Qin et al., "Joint learning of motion estimation and segmentation for cardiac MR image sequences", MICCAI
    2018. Outputs are float32, as MONAI's resampling gives them. Meant for training; it is not inverted.

    Args:
        keys: keys of the cines and label sequences, ``(T, H, W)`` or ``(T, Z, H, W)``.
        label_key: the key (or keys) among ``keys`` that hold label maps.
        prob: probability of applying each random transform.
        rotate_deg: largest in-plane rotation, degrees.
        shift_px: largest in-plane shift, voxels.
        scale: largest relative change of size.
        elastic: add an elastic deformation (``spatial_dims=2`` only).
        intensity: strength of the intensity changes, in [0, 1); 0 turns them off.
        spatial_dims: 2 for slices ``(T, H, W)``, 3 for stacks ``(T, Z, H, W)``.
        orientations: add the random in-plane orientation above (not subject to ``prob``).

    Returns:
        A ``monai.transforms.Compose``; seed it with ``set_random_state``.

    Raises:
        ValueError: ``label_key`` not among ``keys``, ``spatial_dims`` not 2 or 3, ``elastic`` asked for stacks
            (MONAI's 3D elastic deformation would move voxels across slices), a negative range, or
            ``intensity >= 1``.
    """
    keys_ = ensure_tuple(keys)
    label_keys = ensure_tuple(label_key)
    if not set(label_keys) <= set(keys_):
        raise ValueError(f"label_key {label_keys} must be among keys {keys_}.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 (T, H, W) or 3 (T, Z, H, W), got {spatial_dims}.")
    if elastic and spatial_dims == 3:
        raise ValueError("elastic deformation is available for slices only (spatial_dims=2).")
    if min(rotate_deg, shift_px, scale, intensity) < 0 or intensity >= 1:
        raise ValueError("rotate_deg, shift_px, scale and intensity must not be negative; intensity must be below 1.")
    modes = tuple("nearest" if k in label_keys else "bilinear" for k in keys_)
    image_keys = tuple(k for k in keys_ if k not in label_keys)
    in_plane = (0.0,) if spatial_dims == 3 else ()  # no rotation about, shift along or scaling of Z
    angle = math.radians(rotate_deg)
    transforms = []
    if orientations:
        axes = (1, 2) if spatial_dims == 3 else (0, 1)  # the in-plane axes (H, W) among the spatial ones
        transforms += [
            RandRotate90d(keys_, prob=0.75, max_k=3, spatial_axes=axes),
            RandFlipd(keys_, prob=0.5, spatial_axis=axes[0]),
        ]
    transforms += [
        RandAffined(
            keys_,
            prob=prob,
            rotate_range=(angle, 0.0, 0.0) if spatial_dims == 3 else (angle,),
            translate_range=(*in_plane, shift_px, shift_px),
            scale_range=(*in_plane, scale, scale),
            mode=modes,
            padding_mode="zeros",
        )
    ]
    if elastic:
        transforms.append(
            Rand2DElasticd(
                keys_, spacing=(16, 16), magnitude_range=(0.0, 2.0), prob=prob, mode=modes, padding_mode="zeros"
            )
        )
    if image_keys and intensity > 0:
        transforms += [
            RandScaleIntensityd(image_keys, factors=intensity, prob=prob),
            RandShiftIntensityd(image_keys, offsets=intensity, prob=prob),
            RandAdjustContrastd(image_keys, gamma=(1.0 - intensity, 1.0 + intensity), prob=prob),
        ]
    return Compose(transforms)
