"""Label propagation through the cardiac cycle: labels of one or two frames carried to every frame by a motion model.

An annotator labels (or corrects) one frame of a cine, typically ED, sometimes ED and ES; a motion model gives the
tracking fields ``u_{ref->t}`` of every frame ``t`` from one reference frame (ED for both bundles); this module
turns the two into labels of every frame, on the grid the fields live on.

A label of frame ``k`` reaches frame ``t`` through ``u_{k->t}``. When ``k`` is the reference this is the tracking
field itself; otherwise it is composed through the reference (docs/conventions.md)::

    u_{k->t} = compose_displacements(u_{k->ref}, u_{ref->t}),    u_{k->ref} = invert_displacement(u_{ref->k})

Each labelled frame's one-hot label is warped by its field (:func:`monai_cardiac.displacement.warp_image`:
bilinear interpolation of the class indicators, or nearest neighbour). With one labelled frame every frame takes
the most likely class of that warp. With several, frame ``t`` blends the two labelled frames that bracket it in the
cycle (the one before and the one after, going round from the last frame to the first) with weights linear in the
temporal distance along that arc (:func:`temporal_blend_weights`), and takes the most likely class of the blend.
Labelled frames always keep their own labels exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.config import NdarrayOrTensor
from monai.networks.utils import one_hot
from monai.utils import convert_to_numpy, convert_to_tensor, look_up_option

from monai_cardiac.data.nifti import NUM_CLASSES, check_label_values
from monai_cardiac.displacement import compose_displacements, invert_displacement, warp_image
from monai_cardiac.errors import CineDataError

__all__ = ["PROPAGATION_MODES", "propagate_labels", "propagation_fields", "temporal_blend_weights"]

PROPAGATION_MODES = ("onehot", "nearest")
"""How a label is warped: ``"onehot"`` bilinear interpolation of each class indicator, ``"nearest"`` nearest voxel."""

_SOURCE = "propagate_labels"


def _check_frames(frames: Sequence[int], num_frames: int, source: str) -> list[int]:
    values = [int(f) for f in frames]
    if not values:
        raise CineDataError("at least one labelled frame is needed", source)
    bad = [f for f in values if not 0 <= f < num_frames]
    if bad:
        raise CineDataError(f"labelled frames {bad} are outside the {num_frames} frames (0-based)", source)
    if len(set(values)) != len(values):
        raise CineDataError(f"labelled frames must be distinct, got {values}", source)
    return values


def temporal_blend_weights(num_frames: int, frames: Sequence[int]) -> torch.Tensor:
    """Weights of the labelled frames at every frame of a cycle, linear in the temporal distance.

    For frame ``t``, the labelled frames ``a`` just before (or at) ``t`` and ``b`` just after it, going round the
    cycle (frame ``T - 1`` is followed by frame 0), get ``w_a = d_b / (d_a + d_b)`` and ``w_b = d_a / (d_a + d_b)``
    with ``d_a``, ``d_b`` the numbers of frames from ``a`` to ``t`` and from ``t`` to ``b`` along that arc; every
    other labelled frame gets 0. A labelled frame has weight 1 at itself; one labelled frame has weight 1
    everywhere.

    Args:
        num_frames: frames ``T`` of the cycle, at least 1.
        frames: the labelled frames (0-based, distinct), in any order.

    Returns:
        float32 ``(T, K)``, rows summing to 1, column ``k`` for ``frames[k]``.

    Raises:
        CineDataError: no frames, frames outside ``[0, T)`` or repeated.
    """
    if int(num_frames) < 1:
        raise CineDataError(f"a cycle needs at least one frame, got {num_frames}", "temporal_blend_weights")
    frames = _check_frames(frames, int(num_frames), "temporal_blend_weights")
    num_frames = int(num_frames)
    weights = torch.zeros(num_frames, len(frames), dtype=torch.float32)
    if len(frames) == 1:
        weights[:, 0] = 1.0
        return weights
    for t in range(num_frames):
        a = min(range(len(frames)), key=lambda k: (t - frames[k]) % num_frames)  # last labelled frame at or before t
        b = min(range(len(frames)), key=lambda k: (frames[k] - t) % num_frames)  # first labelled frame at or after t
        d_a, d_b = (t - frames[a]) % num_frames, (frames[b] - t) % num_frames
        if d_a == 0:
            weights[t, a] = 1.0
        else:
            weights[t, a] = d_b / (d_a + d_b)
            weights[t, b] = d_a / (d_a + d_b)
    return weights


def _check_ddf_sequence(ddf: torch.Tensor, source: str) -> torch.Tensor:
    spatial_dims = ddf.ndim - 2
    if spatial_dims not in (2, 3) or ddf.shape[1] != spatial_dims or ddf.shape[0] < 1:
        raise CineDataError(
            f"expected tracking fields (T, S, *spatial) with S = 2 (H, W) or 3 (Z, H, W) spatial axes, got shape "
            f"{tuple(ddf.shape)}",
            source,
        )
    if not ddf.is_floating_point() or not torch.isfinite(ddf).all():
        raise CineDataError("tracking fields must be finite floating-point displacements in voxels", source)
    return ddf


def propagation_fields(
    ddf: NdarrayOrTensor,
    frame: int,
    reference: int = 0,
    num_iterations: int = 50,
    tolerance: float = 1e-3,
) -> torch.Tensor:
    """Fields ``u_{frame->t}`` of every frame ``t``, from the tracking fields ``u_{reference->t}``.

    Args:
        ddf: ``u_{reference->t}`` ``(T, S, *spatial)`` in voxels (field ``reference`` is zero), e.g. ``u_{ED->t}``
            of a slice from either bundle's tracking.
        frame: the frame whose label is to be carried.
        reference: the frame the tracking fields start from (ED, in the frame order of ``ddf``).
        num_iterations, tolerance: of :func:`monai_cardiac.displacement.invert_displacement` (``frame !=
            reference`` only).

    Returns:
        float32 ``u_{frame->t}`` ``(T, S, *spatial)`` on each frame ``t``'s grid: ``ddf`` itself when ``frame ==
        reference``, else ``compose_displacements(invert_displacement(u_{reference->frame}), u_{reference->t})``.

    Raises:
        CineDataError: ``ddf`` not shaped ``(T, S, *spatial)`` or not finite, frames outside ``[0, T)``.
    """
    fields = _check_ddf_sequence(convert_to_tensor(ddf, track_meta=False, dtype=torch.float32), _SOURCE)
    _check_frames([frame], fields.shape[0], _SOURCE)
    _check_frames([reference], fields.shape[0], _SOURCE)
    if int(frame) == int(reference):
        return fields
    frame = int(frame)
    to_reference = invert_displacement(fields[frame : frame + 1], num_iterations=num_iterations, tolerance=tolerance)
    return compose_displacements(to_reference.expand_as(fields), fields)


def propagate_labels(
    labels: NdarrayOrTensor,
    frames: Sequence[int],
    ddf: NdarrayOrTensor,
    reference: int = 0,
    mode: str = "onehot",
    num_classes: int = NUM_CLASSES,
) -> torch.Tensor:
    """Labels of every frame from the labels of one or more frames and the tracking fields of the cine.

    Args:
        labels: class ids of the labelled frames ``(K, *spatial)``, ``labels[k]`` of frame ``frames[k]``, e.g.
            ``(1, H, W)`` for the ED label of a slice or ``(2, H, W)`` for its ED and ES labels.
        frames: the ``K`` labelled frames (0-based, distinct, in the frame order of ``ddf``).
        ddf: tracking fields ``u_{reference->t}`` ``(T, S, *spatial)`` in voxels, ``S`` = number of spatial axes.
        reference: the frame the tracking fields start from (ED).
        mode: one of :data:`PROPAGATION_MODES`.
        num_classes: classes, background included (4: BG, RV, Myo, LV).

    Returns:
        int64 class ids ``(T, *spatial)`` on the grid of ``ddf``; frame ``frames[k]`` is ``labels[k]`` exactly.

    Raises:
        CineDataError: fields not ``(T, S, *spatial)`` or not finite; labels not ``(K, *spatial)`` with the
            fields' spatial shape and one label per frame; label values outside ``[0, num_classes)``; frames
            outside ``[0, T)`` or repeated.
        ValueError: an unknown ``mode``.
    """
    mode = look_up_option(mode, PROPAGATION_MODES)
    fields = _check_ddf_sequence(convert_to_tensor(ddf, track_meta=False, dtype=torch.float32), _SOURCE)
    num_frames, spatial = fields.shape[0], tuple(fields.shape[2:])
    frames = _check_frames(frames, num_frames, _SOURCE)
    _check_frames([reference], num_frames, _SOURCE)
    labels_t = convert_to_tensor(labels, track_meta=False)
    if labels_t.ndim != len(spatial) + 1 or tuple(labels_t.shape[1:]) != spatial or labels_t.shape[0] != len(frames):
        raise CineDataError(
            f"expected labels ({len(frames)}, {', '.join(map(str, spatial))}) for the labelled frames {frames} of "
            f"fields {tuple(fields.shape)}, got shape {tuple(labels_t.shape)}",
            _SOURCE,
        )
    labels_t = torch.as_tensor(check_label_values(convert_to_numpy(labels_t), _SOURCE, num_classes)).long()
    labels_t = labels_t.to(fields.device)

    weights = temporal_blend_weights(num_frames, frames).to(fields.device)
    interpolation = "bilinear" if mode == "onehot" else "nearest"
    scores = torch.zeros((num_frames, num_classes, *spatial), dtype=torch.float32, device=fields.device)
    for k, frame in enumerate(frames):
        used = weights[:, k] > 0
        if not bool(used.any()):
            continue
        carried = propagation_fields(fields, frame, reference)[used]
        indicator = one_hot(labels_t[k][None, None], num_classes=num_classes, dim=1).float()
        warped = warp_image(indicator.expand(carried.shape[0], *indicator.shape[1:]), carried, mode=interpolation)
        scores[used] += weights[used, k].view(-1, *([1] * (len(spatial) + 1))) * warped
    result = scores.argmax(dim=1)
    for k, frame in enumerate(frames):
        result[frame] = labels_t[k]
    return result
