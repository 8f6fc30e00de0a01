"""Warping, composing and inverting dense displacement fields, in MONAI's pull convention.

A displacement ``u`` of shape ``(B, S, *spatial)`` (``S`` = 2 for ``(H, W)``, 3 for ``(Z, H, W)``; channel
``i`` is the displacement along spatial axis ``i``, in voxels) lives on the grid of the image it produces and
pulls values from the image it warps::

    warp(I, u)(x) = I(x + u(x))

exactly as :py:class:`monai.networks.blocks.Warp` computes it (``align_corners=True``; implemented here on
``torch.nn.functional.grid_sample`` directly, with the identity grid cached, tested equal to ``Warp``). ``u_ab`` carries
frame ``a`` onto frame ``b``'s grid: ``warp(I_a, u_ab) ~ I_b`` (see docs/conventions.md).

Every function takes a batch; a sequence of ``T`` frames is handled by treating ``T`` as the batch axis, e.g.
a displacement sequence ``(T, S, *spatial)`` as it is and a cine ``(T, *spatial)`` as ``cine[:, None]``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.networks.utils import one_hot
from monai.utils import GridSampleMode, GridSamplePadMode, convert_to_numpy, convert_to_tensor, look_up_option

from monai_cardiac.data.nifti import NUM_CLASSES, check_label_values

__all__ = [
    "DisplacementInversionWarning",
    "check_ddf",
    "compose_displacements",
    "invert_displacement",
    "propagate_labels",
    "inversion_warnings_logged",
    "warp_image",
    "warp_labels",
]


class DisplacementInversionWarning(RuntimeWarning):
    """:func:`invert_displacement` stopped before its tolerance (e.g. where the field folds).

    Args:
        change: the last update's largest change, voxels.
        tolerance: the tolerance it did not reach, voxels.
        num_iterations: the iterations it ran.
    """

    def __init__(self, change: float, tolerance: float, num_iterations: int) -> None:
        super().__init__(f"invert_displacement did not converge: the last update still changed the field by "
                         f"{change:.3g} voxels (tolerance {tolerance}) after {num_iterations} iterations; the field "
                         "may fold.")
        self.change = change


def check_ddf(ddf: torch.Tensor, name: str = "ddf") -> torch.Tensor:
    """Check that ``ddf`` is a floating-point displacement batch ``(B, S, *spatial)`` with ``S`` = 2 or 3.

    Args:
        ddf: the tensor to check.
        name: how the error message calls it.

    Returns:
        ``ddf`` unchanged.

    Raises:
        ValueError: wrong number of axes, a channel count other than the number of spatial axes, or a
            non-floating dtype.
    """
    spatial_dims = ddf.ndim - 2
    if spatial_dims not in (2, 3) or ddf.shape[1] != spatial_dims:
        raise ValueError(
            f"{name} must be shaped (B, S, *spatial) with S = 2 spatial axes (H, W) or 3 (Z, H, W), "
            f"got shape {tuple(ddf.shape)}."
        )
    if not ddf.is_floating_point():
        raise ValueError(f"{name} must be floating point (voxels), got dtype {ddf.dtype}.")
    return ddf


def warp_image(
    image: NdarrayOrTensor, ddf: NdarrayOrTensor, mode: str = "bilinear", padding_mode: str = "border"
) -> torch.Tensor:
    """Pull ``image`` through ``ddf``: ``out(x) = image(x + ddf(x))``.

    Differentiable with respect to both inputs in ``"bilinear"`` mode (trilinear in 3D).

    Args:
        image: ``(B, C, *spatial)``; a cine ``(T, *spatial)`` is passed as ``cine[:, None]`` with its
            displacement sequence ``(T, S, *spatial)``. Integer images are warped as float.
        ddf: displacement ``(B, S, *spatial)`` in voxels, same ``B`` and ``*spatial`` as ``image``.
        mode: interpolation, ``"bilinear"``, ``"nearest"`` or ``"bicubic"`` (2D only).
        padding_mode: value read outside the grid, ``"border"`` (nearest edge voxel), ``"zeros"`` or
            ``"reflection"``.

    Returns:
        floating tensor ``(B, C, *spatial)`` (the promoted dtype of ``image`` and ``ddf``).

    Raises:
        ValueError: shapes that do not match, or an unknown ``mode`` or ``padding_mode``.
    """
    mode = look_up_option(mode, GridSampleMode).value
    padding_mode = look_up_option(padding_mode, GridSamplePadMode).value
    image_t = convert_to_tensor(image, track_meta=False)
    ddf_t = check_ddf(convert_to_tensor(ddf, track_meta=False))
    spatial_dims = ddf_t.shape[1]
    if image_t.ndim != spatial_dims + 2 or image_t.shape[0] != ddf_t.shape[0] or image_t.shape[2:] != ddf_t.shape[2:]:
        raise ValueError(
            f"image must be shaped (B, C, *spatial) with the B and *spatial of ddf {tuple(ddf_t.shape)}, "
            f"got image shape {tuple(image_t.shape)}."
        )
    if mode == GridSampleMode.BICUBIC.value and spatial_dims == 3:
        raise ValueError("mode 'bicubic' is only available for 2D images.")
    dtype = torch.promote_types(ddf_t.dtype, image_t.dtype if image_t.is_floating_point() else torch.float32)
    ddf_t = ddf_t.to(dtype)
    base, scale = _normalised_identity(tuple(ddf_t.shape[2:]), ddf_t.device, dtype)
    # grid_sample reads (x, y[, z]) = the spatial axes reversed, in [-1, 1] with align_corners=True
    grid = base + torch.flip(ddf_t, (1,)).movedim(1, -1) * scale
    return F.grid_sample(image_t.to(dtype), grid, mode=mode, padding_mode=padding_mode, align_corners=True)


@functools.lru_cache(maxsize=16)
def _normalised_identity(
    spatial: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The identity grid of ``spatial`` in ``grid_sample``'s coordinates and the voxel-to-grid scale.

    Returns:
        ``base`` ``(1, *spatial, S)`` and ``scale`` ``(S,)``, both with the axes reversed (x first), so that
        ``base + flip(u, channels).movedim(1, -1) * scale`` is the sampling grid of displacement ``u`` in voxels,
        as :py:class:`monai.networks.blocks.Warp` normalises it (a singleton axis maps to -1).
    """
    steps = [2.0 / max(size - 1, 1) for size in spatial]
    with torch.inference_mode(False):  # cached: usable with autograd even if first made under inference mode
        axes = torch.meshgrid(*[torch.arange(size, dtype=dtype) * step - 1.0 for size, step in zip(spatial, steps)],
                              indexing="ij")
        base = torch.stack(axes[::-1], dim=-1)[None].to(device)
        return base, torch.tensor(steps[::-1], dtype=dtype, device=device)


def warp_labels(
    labels: NdarrayOrTensor, ddf: NdarrayOrTensor, mode: str = "nearest", num_classes: int = NUM_CLASSES
) -> torch.Tensor:
    """Pull a label map through ``ddf``: ``out(x) = labels(x + ddf(x))``, keeping integer labels.

    Args:
        labels: integer labels ``(B, 1, *spatial)`` with values in ``[0, num_classes)``; a label sequence
            ``(T, *spatial)`` is passed as ``labels[:, None]`` with its displacement sequence.
        ddf: displacement ``(B, S, *spatial)`` in voxels, same ``B`` and ``*spatial`` as ``labels``.
        mode: ``"nearest"``, the label of the nearest voxel to ``x + ddf(x)``; or ``"onehot"``, bilinear
            interpolation of each class's indicator followed by the most likely class, which gives smoother
            boundaries than nearest-neighbour sampling. Both read the border voxel outside the grid.
        num_classes: number of classes, background included (4: BG, RV, Myo, LV).

    Returns:
        int64 tensor ``(B, 1, *spatial)``.

    Raises:
        ValueError: shapes that do not match, or an unknown ``mode``.
        CineDataError: ``labels`` holds values that are not integers in ``[0, num_classes)``.
    """
    mode = look_up_option(mode, ("nearest", "onehot"))
    labels_t = convert_to_tensor(labels, track_meta=False)
    if labels_t.ndim < 3 or labels_t.shape[1] != 1:
        raise ValueError(f"labels must be shaped (B, 1, *spatial), got shape {tuple(labels_t.shape)}.")
    check_label_values(convert_to_numpy(labels_t), "warp_labels(labels)", num_classes)
    if mode == "nearest":
        return warp_image(labels_t, ddf, mode="nearest").round().long()
    onehot = one_hot(labels_t.long(), num_classes=num_classes, dim=1)
    return warp_image(onehot, ddf, mode="bilinear").argmax(dim=1, keepdim=True)


def propagate_labels(
    labels: NdarrayOrTensor, ddf: NdarrayOrTensor, mode: str = "nearest", num_classes: int = NUM_CLASSES
) -> torch.Tensor:
    """Pull 2D label maps through every in-plane field of ``ddf``, the labels broadcast over the fields' leading axes.

    E.g. the ED labels ``(H, W)`` of a slice through its tracking fields ``u_{ED->t}`` ``(T, 2, H, W)`` (or posterior
    draws ``(K, T, 2, H, W)``), or the ED labels ``(Z, H, W)`` of a stack through ``(T, Z, 2, H, W)``.

    Args:
        labels: integer labels ``(..., H, W)`` whose leading axes broadcast against those of ``ddf``.
        ddf: displacements ``(..., 2, H, W)`` in voxels.
        mode, num_classes: see :func:`warp_labels`.

    Returns:
        int64 ``(..., H, W)`` with the leading axes of ``ddf``.

    Raises:
        ValueError: ``ddf`` that is not ``(..., 2, H, W)``, labels of another ``(H, W)`` or leading axes that do not
            broadcast, an unknown ``mode``.
        CineDataError: labels outside ``[0, num_classes)``.
    """
    labels_t = convert_to_tensor(labels, track_meta=False)
    ddf_t = convert_to_tensor(ddf, track_meta=False)
    if ddf_t.ndim < 3 or ddf_t.shape[-3] != 2 or labels_t.shape[-2:] != ddf_t.shape[-2:]:
        raise ValueError(f"expected labels (..., H, W) and in-plane fields (..., 2, H, W) on their grid, got "
                         f"{tuple(labels_t.shape)} and {tuple(ddf_t.shape)}.")
    leading, spatial = ddf_t.shape[:-3], ddf_t.shape[-2:]
    moving = labels_t.to(ddf_t.device).expand(*leading, *spatial).reshape(-1, 1, *spatial)
    warped = warp_labels(moving, ddf_t.reshape(-1, 2, *spatial), mode=mode, num_classes=num_classes)
    return warped.reshape(*leading, *spatial)


def compose_displacements(u_ab: NdarrayOrTensor, u_bc: NdarrayOrTensor) -> torch.Tensor:
    """Compose ``u_ab`` (frame a to b) and ``u_bc`` (b to c) into ``u_ac`` (a to c).

    ``u_ac(x) = u_bc(x) + u_ab(x + u_bc(x))``, so that ``warp(warp(I, u_ab), u_bc) == warp(I, u_ac)`` up to
    interpolation. ``u_ab`` is sampled bilinearly with border padding. Differentiable.

    Args:
        u_ab: displacement ``(B, S, *spatial)`` in voxels on frame b's grid.
        u_bc: displacement of the same shape on frame c's grid. Sequences go with frames as the batch.

    Returns:
        ``u_ac``, same shape, on frame c's grid.

    Raises:
        ValueError: fields not shaped ``(B, S, *spatial)`` or of different shapes.
    """
    u_ab_t = check_ddf(convert_to_tensor(u_ab, track_meta=False), "u_ab")
    u_bc_t = check_ddf(convert_to_tensor(u_bc, track_meta=False), "u_bc")
    if u_ab_t.shape != u_bc_t.shape:
        raise ValueError(
            f"u_ab and u_bc must have the same shape, got {tuple(u_ab_t.shape)} and {tuple(u_bc_t.shape)}."
        )
    return u_bc_t + warp_image(u_ab_t, u_bc_t)


def invert_displacement(
    u_ab: NdarrayOrTensor, num_iterations: int = 50, tolerance: float = 1e-3, relaxation: float = 0.5
) -> torch.Tensor:
    """Invert ``u_ab`` into ``u_ba`` by fixed-point iteration.

    ``u_ba`` solves ``v(x) = -u_ab(x + v(x))`` (then ``compose_displacements(u_ab, v)`` is zero). Starting from
    ``v = -u_ab``, the relaxed update ``v <- (1 - w) v - w u_ab(x + v)`` (``w = relaxation``) is repeated until
    its largest change, over all voxels and components, falls below ``tolerance``. Near the solution the error
    is multiplied by ``1 - w (1 + lambda)`` for each eigenvalue ``lambda`` of ``grad u_ab``: the plain update
    (``w = 1``) converges only while ``|lambda| < 1``, the default ``w = 0.5`` for ``-1 < lambda < 3``, which
    covers the strong compression and expansion of the heart (a cavity shrinking to half its radius). A field
    that folds (``det(I + grad u) <= 0``) has no inverse and the iteration does not settle. If the
    tolerance is not met within ``num_iterations`` a ``RuntimeWarning`` gives the last change and the last
    iterate is returned. Where ``x + v(x)`` leaves the grid ``u_ab`` is read at the nearest border voxel, so
    for a field that points out of the grid the inverse is only approximate within a few voxels of that edge.
    Differentiable (the iterations are unrolled).

    Args:
        u_ab: displacement ``(B, S, *spatial)`` in voxels on frame b's grid; sequences go with frames as the
            batch.
        num_iterations: largest number of updates; at least 1.
        tolerance: stopping threshold on the largest change in one update, in voxels.
        relaxation: step ``w`` in (0, 1] of the relaxed update; 1 is the plain fixed-point iteration.

    Returns:
        ``u_ba``, same shape, on frame a's grid.

    Raises:
        ValueError: ``u_ab`` not shaped ``(B, S, *spatial)``, ``num_iterations < 1`` or ``relaxation`` outside
            (0, 1].
    """
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be at least 1, got {num_iterations}.")
    if not 0.0 < relaxation <= 1.0:
        raise ValueError(f"relaxation must lie in (0, 1], got {relaxation}.")
    u_t = check_ddf(convert_to_tensor(u_ab, track_meta=False), "u_ab")
    v = -u_t
    change = float("inf")
    for _ in range(num_iterations):
        v_next = (1.0 - relaxation) * v - relaxation * warp_image(u_t, v)
        change = (v_next - v).abs().max().item()
        v = v_next
        if change < tolerance:
            return v
    warnings.warn(DisplacementInversionWarning(change, tolerance, num_iterations), stacklevel=2)
    return v


@contextlib.contextmanager
def inversion_warnings_logged(logger: logging.Logger, where: str) -> Iterator[None]:
    """Gather :func:`invert_displacement`'s non-convergence warnings of a block into one log line naming ``where``.

    A subject's inversions (one per slice, or per frame) would otherwise print one anonymous warning each; this
    logs, once, how many did not converge and the largest last update, e.g. ``"patient008 slice 3: 2 inversions
    did not converge (largest last update 0.22 voxels); the tracking field may fold there"``. Other warnings pass
    through unchanged.

    Args:
        logger: where the line goes (level WARNING).
        where: the subject, slice or frame the block works on.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    updates = []
    for w in caught:
        if isinstance(w.message, DisplacementInversionWarning):
            updates.append(w.message.change)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if updates:
        logger.warning(f"{where}: {len(updates)} inversion(s) did not converge (largest last update "
                       f"{max(updates):.3g} voxels); the tracking field may fold there")
