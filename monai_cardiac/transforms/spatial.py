"""In-plane spatial transforms of a cine: crop around the heart, resample to a target in-plane spacing.

Inputs are channel-first cines with the frames as channels, ``(T, H, W)`` for a slice or ``(T, Z, H, W)`` for
a stack (docs/conventions.md). Both transforms act on the in-plane axes ``(H, W)`` only, move every frame
(and every slice of a stack) alike, and are invertible through MONAI's ``applied_operations`` record, so
``.inverse()`` and ``monai.transforms.Invertd`` bring outputs back onto the input grid. Neither supports
MONAI's lazy resampling.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.data.utils import to_affine_nd
from monai.transforms import Crop, GaussianSmooth, InvertibleTransform, MapTransform, Pad, Spacing
from monai.utils import TraceKeys, convert_to_tensor, ensure_tuple_rep

from monai_cardiac.errors import CineDataError
from monai_cardiac.transforms.temporal import check_label_mask, entry_name, source_name

__all__ = ["heart_center", "CropAroundHeart", "CropAroundHeartd", "ResampleInPlane", "ResampleInPlaned"]

# the temporal standard deviation map counts as flat (a static image) below this fraction of the intensity range
_FLAT_TOLERANCE = 1e-4


def _check_cine(x: Any, source: object | None, name: str = "cine") -> None:
    """Raise a CineDataError unless ``x`` is shaped ``(T, H, W)`` or ``(T, Z, H, W)``."""
    if not hasattr(x, "shape") or len(x.shape) not in (3, 4):
        shape = tuple(getattr(x, "shape", ()))
        raise CineDataError(f"expected a {name} (T, H, W) or (T, Z, H, W), got shape {shape}", source)


def _centroid(weights: torch.Tensor) -> tuple[int, int]:
    """Weighted centroid ``(h, w)`` of a non-negative ``(H, W)`` map, rounded to the nearest voxel (halves up)."""
    total = weights.sum()
    rows = (weights.sum(1) * torch.arange(weights.shape[0], dtype=weights.dtype)).sum() / total
    cols = (weights.sum(0) * torch.arange(weights.shape[1], dtype=weights.dtype)).sum() / total
    return math.floor(float(rows) + 0.5), math.floor(float(cols) + 0.5)


def heart_center(
    img: Any, label: Any = None, label_mask: Any = None, sigma: float = 2.0, top_voxels: int = 500
) -> tuple[int, int]:
    """In-plane voxel centre ``(h, w)`` of the heart in a cine, one centre for all frames and all slices.

    - With labels: the centroid of the foreground (any label > 0) over the labelled frames (all frames when
      ``label_mask`` is None; unlabelled frames hold 0 anyway) and over all slices.
    - Without labels, or with an empty foreground: the heart is what moves. The temporal standard deviation of
      each voxel (averaged over the slices of a stack) is smoothed with a Gaussian of ``sigma`` voxels, and the
      centroid of its ``top_voxels`` highest voxels, weighted by the smoothed deviation, is returned. A fixed
      number of voxels, not a share of the image, so that a wider field of view (more chest, or zero padding
      around the same heart) does not pull the centre away from the heart.
    - When that map is flat as well (a static image, or a single frame: its maximum is below 1e-4 of the
      intensity range), the image centre ``(H // 2, W // 2)``.

    Args:
        img: cine ``(T, H, W)`` or ``(T, Z, H, W)``.
        label: label sequence of the same shape, or None.
        label_mask: ``(T,)`` bool, True on labelled frames, or None.
        sigma: Gaussian smoothing of the deviation map, voxels.
        top_voxels: number of the deviation map's highest voxels in the centroid (all when the slice has fewer).

    Returns:
        ``(h, w)`` voxel indices, rounded to the nearest voxel.

    Raises:
        CineDataError: the cine or labels are not shaped as above, or the mask does not match the frames.
    """
    if top_voxels < 1:
        raise ValueError(f"top_voxels must be positive, got {top_voxels}.")
    _check_cine(img, source_name(img))
    shape = tuple(img.shape)
    if label is not None:
        if tuple(label.shape) != shape:
            raise CineDataError(f"labels shaped {tuple(label.shape)} do not match the cine's {shape}", source_name(img))
        foreground = convert_to_tensor(label, track_meta=False).cpu() > 0
        if label_mask is not None:
            check_label_mask(label_mask, shape[0], source_name(img))
            foreground = foreground[convert_to_tensor(label_mask, track_meta=False).cpu().bool()]
        counts = foreground.reshape(-1, *shape[-2:]).sum(0, dtype=torch.float64)
        if counts.sum() > 0:
            return _centroid(counts)
    frames = convert_to_tensor(img, track_meta=False).cpu().to(torch.float64)
    deviation = frames.std(0, correction=0).reshape(-1, *shape[-2:]).mean(0)
    smoothed = convert_to_tensor(GaussianSmooth(sigma)(deviation[None])[0], track_meta=False)
    intensity_range = float(frames.max() - frames.min())
    if intensity_range == 0 or float(smoothed.max()) <= _FLAT_TOLERANCE * intensity_range:
        return shape[-2] // 2, shape[-1] // 2
    flat = smoothed.flatten()
    threshold = torch.topk(flat, min(int(top_voxels), flat.numel())).values[-1]
    return _centroid(torch.where(smoothed >= threshold, smoothed, torch.zeros_like(smoothed)))


class CropAroundHeart(InvertibleTransform):
    """Crop, and pad where needed, the in-plane axes ``(H, W)`` to ``roi_size`` around the heart.

    The heart centre ``c`` (given, or found by :func:`heart_center`) lands on voxel ``roi_size // 2`` of the
    output: the window ``[c - roi_size // 2, c - roi_size // 2 + roi_size)`` is cut with MONAI's ``Crop`` and
    the part of it outside the image is filled with zeros by MONAI's ``Pad``. A stack ``(T, Z, H, W)`` keeps all
    its slices, all cut with the same window. The crop and the pad are recorded as one operation, so
    ``inverse`` returns the input grid exactly: the voxels inside the window come back unchanged, those that
    were cut away come back as 0.

    Args:
        roi_size: in-plane output size ``(H_out, W_out)`` (an int for both), voxels.
        sigma, top_voxels: passed to :func:`heart_center` when no labels are given.
    """

    def __init__(self, roi_size: Sequence[int] | int, sigma: float = 2.0, top_voxels: int = 500) -> None:
        self.roi_size = tuple(int(r) for r in ensure_tuple_rep(roi_size, 2))
        if min(self.roi_size) < 1:
            raise ValueError(f"roi_size must be positive, got {roi_size}.")
        self.sigma, self.top_voxels = sigma, top_voxels
        self.cropper = Crop()
        self.padder = Pad(mode="constant")

    def __call__(
        self, img: Any, center: Sequence[int] | None = None, label: Any = None, label_mask: Any = None
    ) -> torch.Tensor:
        """
        Args:
            img: cine or label sequence ``(T, H, W)`` / ``(T, Z, H, W)``.
            center: in-plane centre ``(h, w)`` in voxels; found with :func:`heart_center` from ``img``,
                ``label`` and ``label_mask`` when None.
            label, label_mask: labels of ``img`` and their ``(T,)`` mask, to find the centre.

        Returns:
            ``(T, H_out, W_out)`` / ``(T, Z, H_out, W_out)``, same dtype (a MetaTensor records the crop).

        Raises:
            CineDataError: ``img`` is not shaped as above.
            ValueError: ``center`` is outside the image.
        """
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        _check_cine(img_t, source_name(img))
        in_plane = tuple(img_t.shape[-2:])
        if center is None:
            center = heart_center(img_t, label, label_mask, self.sigma, self.top_voxels)
        center = tuple(int(c) for c in center)
        if len(center) != 2 or not all(0 <= c < n for c, n in zip(center, in_plane)):
            raise ValueError(f"center {center} is not an in-plane voxel of an image of size {in_plane}.")
        slices, to_pad = [slice(None)] * (img_t.ndim - 3), [(0, 0)] * (img_t.ndim - 2)
        for c, size, n in zip(center, self.roi_size, in_plane):
            start = c - size // 2
            slices.append(slice(max(start, 0), min(start + size, n)))
            to_pad.append((max(-start, 0), max(start + size - n, 0)))
        num_ops = len(img_t.applied_operations) if isinstance(img_t, MetaTensor) else 0
        # MONAI annotates to_pad as a 1-tuple; it takes one (before, after) pair per dimension
        out = self.padder(self.cropper(img_t, tuple(slices)), to_pad=tuple(to_pad))  # type: ignore[arg-type]
        if isinstance(out, MetaTensor) and len(out.applied_operations) == num_ops + 2:
            pad_info = out.applied_operations.pop()
            crop_info = out.applied_operations.pop()
            self.push_transform(
                out,
                orig_size=crop_info[TraceKeys.ORIG_SIZE],
                extra_info={"crop_info": crop_info, "pad_info": pad_info, "center": list(center)},
            )
        return out

    def inverse(self, data: MetaTensor) -> MetaTensor:
        """Put ``data`` back on the grid it was cut from, with zeros outside the window."""
        extra = self.pop_transform(data)[TraceKeys.EXTRA_INFO]
        data.applied_operations.append(extra["crop_info"])
        data.applied_operations.append(extra["pad_info"])
        return self.cropper.inverse(self.padder.inverse(data))


class CropAroundHeartd(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`CropAroundHeart`: one centre per entry, the same window for every key.

    The centre is found by :func:`heart_center` from ``d[image_key]`` with ``d[label_key]`` and
    ``d[label_mask_key]`` where the entry has them. With ``label_key=None`` the labels are never used, so the crop
    is the one that label-free inference makes (what evaluation should score).

    Args:
        keys: keys of the cines and label sequences to crop.
        roi_size: in-plane output size, voxels.
        image_key, label_key, label_mask_key: keys used to find the centre (``label_key`` None: the image only).
        sigma, top_voxels: see :func:`heart_center`.
        allow_missing_keys: don't raise for missing ``keys``.

    Raises:
        CineDataError: the entry has no image to find the centre in, or see :class:`CropAroundHeart`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        roi_size: Sequence[int] | int,
        image_key: str = "image",
        label_key: str | None = "label",
        label_mask_key: str = "label_mask",
        sigma: float = 2.0,
        top_voxels: int = 500,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.cropper = CropAroundHeart(roi_size, sigma, top_voxels)
        self.image_key, self.label_key, self.label_mask_key = image_key, label_key, label_mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.image_key not in d:
            raise CineDataError(f"the entry has no '{self.image_key}' to find the heart in", entry_name(d, self.keys))
        center = heart_center(
            d[self.image_key],
            None if self.label_key is None else d.get(self.label_key),
            None if self.label_key is None else d.get(self.label_mask_key),
            self.cropper.sigma,
            self.cropper.top_voxels,
        )
        for key in self.key_iterator(d):
            d[key] = self.cropper(d[key], center=center)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d


def _slice_as_volume(img: MetaTensor) -> MetaTensor:
    """A slice ``(T, H, W)`` as a one-slice stack ``(T, 1, H, W)`` whose affine maps ``(normal, h, w)`` to world.

    The slice normal (a unit vector) stands in for the missing slice axis, so that MONAI's 3D ``Spacing``
    measures the in-plane spacing from the full 3D columns of an oblique slice's affine (its 2D ``Spacing``
    would read only their first two world components).
    """
    affine = to_affine_nd(3, torch.as_tensor(img.affine, dtype=torch.float64))
    normal = torch.linalg.cross(affine[:3, 0], affine[:3, 1])
    if float(normal.norm()) == 0:
        raise CineDataError(f"the slice affine has parallel or zero in-plane axes:\n{affine}", source_name(img))
    vol_affine = affine.clone()
    vol_affine[:3, 0], vol_affine[:3, 1:3] = normal / normal.norm(), affine[:3, 0:2]
    meta = {k: v for k, v in img.meta.items() if k != "affine"}
    operations = list(img.applied_operations)
    return MetaTensor(img.as_tensor().unsqueeze(1), affine=vol_affine, meta=meta, applied_operations=operations)


def _volume_as_slice(vol: torch.Tensor, like: MetaTensor) -> torch.Tensor:
    """Undo :func:`_slice_as_volume`: ``(T, 1, H, W)`` back to ``(T, H, W)``, the affine laid out like ``like``'s.

    A plain tensor (``Spacing`` without meta tracking) comes back as a plain tensor.
    """
    out = vol[:, 0]
    if not isinstance(out, MetaTensor) or not isinstance(vol, MetaTensor):  # out is a MetaTensor only if vol is
        return out
    affine = to_affine_nd(3, torch.as_tensor(like.affine, dtype=torch.float64))
    affine[:3, 0:2], affine[:3, 3] = vol.affine[:3, 1:3], vol.affine[:3, 3]
    out.affine = to_affine_nd(like.affine.shape[-1] - 1, affine)
    return out


class ResampleInPlane(InvertibleTransform):
    """Resample the in-plane axes ``(H, W)`` of a cine to a target spacing in mm, leaving the slice axis alone.

    Built on MONAI's ``Spacing`` (``pixdim = (0, s_h, s_w)``: a non-positive entry keeps that axis's spacing),
    so the spacing is read from the affine, the output affine keeps the input orientation, and ``inverse``
    resamples back to the input grid with MONAI's record. A slice ``(T, H, W)`` is resampled as a one-slice
    stack whose third axis is the slice normal, so that oblique slices get their true in-plane spacing.
    The output keeps the span between the first and last voxel centres, as MONAI's ``Spacing`` does:
    ``(n - 1) d / d' + 1`` voxels along an axis of ``n`` voxels of spacing ``d``, rounded. Outputs are float32.

    Args:
        spacing: target in-plane spacing ``(s_h, s_w)`` (a float for both), mm.
        mode: interpolation, ``"bilinear"`` for images, ``"nearest"`` for labels (any mode ``Spacing`` takes).
        padding_mode: ``Spacing``'s padding mode outside the input.
        align_corners: ``Spacing``'s ``align_corners``.
    """

    def __init__(
        self,
        spacing: Sequence[float] | float = (1.5, 1.5),
        mode: str = "bilinear",
        padding_mode: str = "border",
        align_corners: bool = False,
    ) -> None:
        self.spacing = tuple(float(s) for s in ensure_tuple_rep(spacing, 2))
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {spacing}.")
        self.resampler = Spacing(
            pixdim=(0.0, *self.spacing), mode=mode, padding_mode=padding_mode, align_corners=align_corners
        )

    def __call__(self, img: MetaTensor, mode: str | None = None, padding_mode: str | None = None) -> torch.Tensor:
        """
        Args:
            img: cine or label sequence ``(T, H, W)`` / ``(T, Z, H, W)`` with its affine.
            mode, padding_mode: override the ones given at construction.

        Returns:
            The resampled sequence, ``(T, H', W')`` / ``(T, Z, H', W')`` (a MetaTensor unless meta tracking is
            off).

        Raises:
            CineDataError: ``img`` is not a MetaTensor (no affine to read the spacing from), is not shaped as
                above, or is a slice with a degenerate affine.
        """
        if not isinstance(img, MetaTensor):
            raise CineDataError(f"in-plane resampling needs a MetaTensor with an affine, got {type(img).__name__}")
        _check_cine(img, source_name(img))
        is_slice = img.ndim == 3
        num_ops = len(img.applied_operations)
        out = self.resampler(_slice_as_volume(img) if is_slice else img, mode=mode, padding_mode=padding_mode)
        record = isinstance(out, MetaTensor) and len(out.applied_operations) > num_ops
        spacing_info = out.applied_operations.pop() if record and isinstance(out, MetaTensor) else None
        if is_slice:
            out = _volume_as_slice(out, img)
        if record:
            self.push_transform(out, orig_size=tuple(img.shape[1:]), extra_info={"spacing_info": spacing_info})
        return out

    def inverse(self, data: MetaTensor) -> torch.Tensor:
        """Resample ``data`` back onto the grid it was resampled from."""
        spacing_info = self.pop_transform(data)[TraceKeys.EXTRA_INFO]["spacing_info"]
        is_slice = data.ndim == 3
        vol = _slice_as_volume(data) if is_slice else data
        vol.applied_operations.append(spacing_info)
        out = self.resampler.inverse(vol)
        return _volume_as_slice(out, data) if is_slice else out


class ResampleInPlaned(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`ResampleInPlane`, with one interpolation mode per key.

    Args:
        keys: keys of the cines and label sequences to resample.
        spacing: target in-plane spacing, mm.
        mode: per key (one for all, or one per key); ``("bilinear", "nearest")`` suits ``("image", "label")``.
        padding_mode: see :class:`ResampleInPlane` (one for all, or one per key).
        align_corners: see :class:`ResampleInPlane`.
        allow_missing_keys: don't raise for missing ``keys``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spacing: Sequence[float] | float = (1.5, 1.5),
        mode: Sequence[str] | str = ("bilinear", "nearest"),
        padding_mode: Sequence[str] | str = "border",
        align_corners: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.resampler = ResampleInPlane(spacing, align_corners=align_corners)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.padding_mode = ensure_tuple_rep(padding_mode, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mode, padding_mode in self.key_iterator(d, self.mode, self.padding_mode):
            d[key] = self.resampler(d[key], mode=mode, padding_mode=padding_mode)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resampler.inverse(d[key])
        return d
