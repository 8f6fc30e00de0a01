"""Transforms along the time axis of a cine: start at end-diastole, resample the frame count, draw frames.

Cines are channel-first with the frames as MONAI's channel axis (``(T, H, W)`` or ``(T, Z, H, W)``, see
docs/conventions.md), so these transforms act on axis 0 of every array they are given: images, label
sequences and displacement sequences ``(T, S, ...)`` alike. Frame indices kept next to the arrays in a
data-list dict (``ed``, ``es``, ``label_frames``, ``num_frames``) and the ``label_mask`` ``(T,)`` are updated
along with them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, MapTransform, Randomizable
from monai.utils import TraceKeys, convert_to_tensor, ensure_tuple, ensure_tuple_rep

from monai_cardiac.errors import CineDataError

__all__ = [
    "ReorderFromED",
    "ReorderFromEDd",
    "ResampleFrames",
    "ResampleFramesd",
    "RandFrameSubsetd",
    "nearest_resampled_frame",
    "labelled_frame_sources",
]

_FRAME_MODES = ("linear", "nearest")


def source_name(data: object) -> str | None:
    """The file a MetaTensor was read from (``meta["filename_or_obj"]``), or None when unknown."""
    meta = getattr(data, "meta", None)
    return None if not meta or not meta.get("filename_or_obj") else str(meta["filename_or_obj"])


def entry_name(d: Mapping, keys: Sequence[Hashable] = ()) -> str:
    """Name of a data-list entry for error messages: the file of its image (or of one of ``keys``), else its subject."""
    for key in ("image", *keys):
        name = source_name(d.get(key))
        if name is not None:
            return name
    return str(d.get("subject", "data-list entry"))


def _num_frames(x: Any, source: object | None) -> int:
    """Frame count ``T`` of an array whose first axis is time, ``(T, ...)`` with at least 3 dimensions."""
    if not hasattr(x, "shape") or len(x.shape) < 3:
        shape = tuple(getattr(x, "shape", ()))
        raise CineDataError(f"expected a frame sequence (T, H, W), (T, Z, H, W) or (T, S, ...), got {shape}", source)
    return int(x.shape[0])


def _frame_index(value: Any, num_frames: int, name: str, source: object | None) -> int:
    """``value`` as an int frame index in ``[0, num_frames)``, or a CineDataError."""
    try:
        index = int(value)
        valid = index == value and 0 <= index < num_frames
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise CineDataError(f"{name} frame {value!r} is not a frame index of a {num_frames}-frame cine", source)
    return index


def check_label_mask(mask: Any, num_frames: int, source: object | None) -> Any:
    """``mask`` (or None) checked to be a ``(T,)`` label mask of a ``num_frames``-frame cine, else a CineDataError."""
    if mask is not None and tuple(mask.shape) != (num_frames,):
        raise CineDataError(f"label_mask has shape {tuple(mask.shape)}, expected ({num_frames},) for the cine", source)
    return mask


def _take_frames(x: Any, index: np.ndarray) -> Any:
    """``x[index]`` along axis 0 for a numpy array or a (Meta)Tensor; an index of -1 gives a frame of zeros."""
    index = np.asarray(index, dtype=np.int64)
    if isinstance(x, torch.Tensor):
        out = torch.index_select(x, 0, torch.as_tensor(np.maximum(index, 0), device=x.device))
    else:
        out = np.asarray(x)[np.maximum(index, 0)]
    if (index < 0).any():
        out[torch.as_tensor(index < 0) if isinstance(out, torch.Tensor) else index < 0] = 0
    return out


def _frame_count(d: Mapping, keys: Sequence[Hashable], source: str) -> int:
    """The common frame count of ``d[k]`` for the present keys ``k``; a CineDataError when they disagree."""
    counts = {k: _num_frames(d[k], source) for k in keys if k in d}
    if not counts:
        raise CineDataError(f"none of the keys {list(keys)} is in the entry", source)
    if len(set(counts.values())) > 1:
        raise CineDataError(f"the arrays have different frame counts: {counts}", source)
    return next(iter(counts.values()))


def nearest_resampled_frame(frame: int, num_in: int, num_out: int) -> int:
    """The frame of a ``num_out``-frame resampling nearest in time to ``frame`` of the ``num_in``-frame original.

    Time is in frame units and the resampling maps ``[0, num_in - 1]`` onto ``[0, num_out - 1]`` (first frame to
    first frame, last to last); halves round up. Exact integer arithmetic, so ``num_in == num_out`` is the identity.

    Args:
        frame: 0-based frame of the original sequence.
        num_in: frame count of the original sequence.
        num_out: frame count of the resampled sequence.

    Returns:
        0-based frame of the resampled sequence.
    """
    if num_in == 1:
        return 0
    return (2 * frame * (num_out - 1) + num_in - 1) // (2 * (num_in - 1))


def labelled_frame_sources(label_mask: Any, num_frames: int) -> np.ndarray:
    """For each frame of a ``num_frames`` resampling, the labelled original frame whose labels it carries.

    Each labelled original frame ``t`` gives its labels to its nearest new frame
    (:func:`nearest_resampled_frame`); when several labelled frames land on the same new frame the one closest
    in time wins (the earlier on a tie). The labels therefore sit up to half a new frame away from the time they
    were drawn at.

    Args:
        label_mask: ``(T,)`` bool, True on labelled frames.
        num_frames: number of frames of the resampled sequence.

    Returns:
        int64 ``(num_frames,)``: source frame of each new frame, -1 where the new frame is unlabelled.
    """
    mask = np.asarray(torch.as_tensor(label_mask).cpu(), dtype=bool)
    num_in = mask.shape[0]
    sources = np.full(num_frames, -1, dtype=np.int64)
    best = np.full(num_frames, np.inf)
    for t in np.flatnonzero(mask):
        j = nearest_resampled_frame(int(t), num_in, num_frames)
        # distance in time, in units of 1 / ((num_in - 1) (num_frames - 1)) frames, exact in integers
        distance = abs(int(t) * (num_frames - 1) - j * (num_in - 1))
        if distance < best[j]:
            sources[j], best[j] = t, distance
    return sources


def _resample_frames(x: Any, num_frames: int, mode: str, sources: np.ndarray | None = None) -> Any:
    """Resample axis 0 of ``x`` to ``num_frames`` frames: see :class:`ResampleFrames` (no tracing)."""
    if mode not in _FRAME_MODES:
        raise ValueError(f"mode must be one of {_FRAME_MODES}, got {mode!r}.")
    num_in = int(x.shape[0])
    if sources is not None:
        return _take_frames(x, sources)
    if mode == "nearest":
        return _take_frames(x, np.array([nearest_resampled_frame(j, num_frames, num_in) for j in range(num_frames)]))
    # output frame j sits at time j (num_in - 1) / (num_frames - 1) of the input: integer floor and exact weight
    scaled = np.arange(num_frames) * (num_in - 1)
    denominator = max(num_frames - 1, 1)
    lower = scaled // denominator
    upper = np.minimum(lower + 1, num_in - 1)
    weight = (scaled - lower * denominator) / denominator
    x_t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if not x_t.is_floating_point():
        x_t = x_t.float()
    shape = (num_frames,) + (1,) * (x_t.ndim - 1)
    weight_t = torch.as_tensor(weight, dtype=x_t.dtype, device=x_t.device).reshape(shape)
    out = torch.lerp(_take_frames(x_t, lower), _take_frames(x_t, upper), weight_t)
    return out if isinstance(x, torch.Tensor) else out.numpy()


class ReorderFromED(InvertibleTransform):
    """Roll the time axis so that the sequence starts at its end-diastolic (ED) frame.

    ``out[t] = img[(t + ed) % T]``: the cardiac cycle is periodic, so the frames before ED move to the end.
    A MetaTensor records the roll in its ``applied_operations``, and ``inverse`` (or ``monai.transforms.Invertd``)
    rolls back exactly; other inputs come back as plain tensors, without a record.

    Args:
        ed: 0-based ED frame; may instead be given at call time.
    """

    def __init__(self, ed: int | None = None) -> None:
        self.ed = ed

    def __call__(self, img: Any, ed: int | None = None) -> torch.Tensor:
        """
        Args:
            img: ``(T, ...)`` frame sequence, e.g. a cine ``(T, H, W)`` or ``(T, Z, H, W)``.
            ed: 0-based ED frame, overriding the one given at construction.

        Returns:
            The rolled sequence, same shape as ``img`` (a MetaTensor stays one and records the roll).

        Raises:
            CineDataError: ``img`` is not a frame sequence, or ``ed`` is not one of its frames.
        """
        ed_ = self.ed if ed is None else ed
        if ed_ is None:
            raise ValueError("ReorderFromED needs the ED frame, at construction or at call time.")
        img_t = convert_to_tensor(img, track_meta=get_track_meta() and isinstance(img, MetaTensor))
        num_frames = _num_frames(img_t, source_name(img))
        ed_ = _frame_index(ed_, num_frames, "ED", source_name(img))
        out = _take_frames(img_t, (np.arange(num_frames) + ed_) % num_frames)
        if isinstance(out, MetaTensor):
            self.push_transform(out, extra_info={"ed": ed_, "num_frames": num_frames})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Undo the roll recorded on ``data`` (a MetaTensor returned by this transform)."""
        ed = self.pop_transform(data)[TraceKeys.EXTRA_INFO]["ed"]
        return _take_frames(data, (np.arange(data.shape[0]) - ed) % data.shape[0])


class ReorderFromEDd(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`ReorderFromED`: the ED frame is read from the entry, frame indices follow.

    Rolls ``d[k]`` for every key ``k`` and ``d[label_mask_key]``, then sets ``d[ed_key] = 0``,
    ``d[es_key] = (es - ed) % T`` and maps each of ``d[label_frames_key]`` to ``(f - ed) % T`` (same order),
    for the entries present. The inverse undoes all of this for what the dict it is given holds.

    Args:
        keys: keys of the ``(T, ...)`` sequences to roll.
        ed_key, es_key, label_mask_key, label_frames_key: keys of the ED frame, ES frame, ``(T,)`` label mask
            and list of labelled frames.
        allow_missing_keys: don't raise for missing ``keys``.

    Raises:
        CineDataError: the entry has no ED frame, the ED frame is not a frame of the cine, or the arrays and
            the label mask disagree on the frame count.
    """

    def __init__(
        self,
        keys: KeysCollection,
        ed_key: str = "ed",
        es_key: str = "es",
        label_mask_key: str = "label_mask",
        label_frames_key: str = "label_frames",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ed_key, self.es_key = ed_key, es_key
        self.label_mask_key, self.label_frames_key = label_mask_key, label_frames_key
        self.reorder = ReorderFromED()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = entry_name(d, self.keys)
        if self.ed_key not in d:
            raise CineDataError(f"the entry has no '{self.ed_key}' (ED frame) to reorder from", source)
        num_frames = _frame_count(d, self.keys, source)
        ed = _frame_index(d[self.ed_key], num_frames, "ED", source)
        mask = check_label_mask(d.get(self.label_mask_key), num_frames, source)
        for key in self.key_iterator(d):
            d[key] = self.reorder(d[key], ed)
        self._shift_frames(d, num_frames, mask, -ed)
        d[self.ed_key] = 0
        return d

    def _shift_frames(self, d: dict, num_frames: int, mask: Any, shift: int) -> None:
        """Move the mask and the ES / labelled frame indices of ``d`` by ``shift`` frames (cyclically), in place."""
        if mask is not None:
            d[self.label_mask_key] = _take_frames(mask, (np.arange(num_frames) - shift) % num_frames)
        if d.get(self.es_key) is not None:
            d[self.es_key] = (int(d[self.es_key]) + shift) % num_frames
        if d.get(self.label_frames_key) is not None:
            d[self.label_frames_key] = [(int(f) + shift) % num_frames for f in d[self.label_frames_key]]

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        info = None
        for key in self.key_iterator(d):
            info = self.reorder.get_most_recent_transform(d[key])[TraceKeys.EXTRA_INFO]
            d[key] = self.reorder.inverse(d[key])
        if info is not None:
            mask = check_label_mask(d.get(self.label_mask_key), info["num_frames"], entry_name(d, self.keys))
            self._shift_frames(d, info["num_frames"], mask, info["ed"])
            if self.ed_key in d:
                d[self.ed_key] = info["ed"]
        return d


class ResampleFrames(InvertibleTransform):
    """Resample the time axis to exactly ``num_frames`` frames.

    Time is measured in frames and the first and last frames are kept in place: output frame ``j`` sits at
    input time ``s_j = j (T - 1) / (num_frames - 1)`` (``s_0 = 0`` for ``num_frames == 1``); the cycle is
    not treated as periodic. ``mode="linear"`` interpolates linearly between the two input frames around
    ``s_j`` (images; the output is float), ``mode="nearest"`` copies the input frame nearest to ``s_j``
    (labels; halves round up). Resampling to ``T`` frames is the identity.

    Sparse labels: given the ``label_mask`` in nearest mode, each labelled input frame instead gives its labels
    to its nearest output frame and all other output frames are zero (:func:`labelled_frame_sources`), so no
    output frame picks up the zeros of an unlabelled neighbour. The labels then sit up to half an output frame
    from the time they were drawn at.

    A MetaTensor records the resampling; other inputs come back as plain tensors, without a record. The
    inverse resamples back to the original frame count with the recorded mode (nearest for labels, and for
    everything under ``Invertd(nearest_interp=True)``). It is exact only where nothing was lost (no frames merged
    by downsampling); it is meant for network outputs produced on the resampled sequence.

    Args:
        num_frames: number of output frames, at least 1.
        mode: ``"linear"`` (images) or ``"nearest"`` (labels).
    """

    def __init__(self, num_frames: int, mode: str = "linear") -> None:
        if int(num_frames) < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}.")
        if mode not in _FRAME_MODES:
            raise ValueError(f"mode must be one of {_FRAME_MODES}, got {mode!r}.")
        self.num_frames = int(num_frames)
        self.mode = mode

    def __call__(self, img: Any, mode: str | None = None, label_mask: Any = None) -> torch.Tensor:
        """
        Args:
            img: ``(T, ...)`` frame sequence.
            mode: ``"linear"`` or ``"nearest"``, overriding the one given at construction.
            label_mask: ``(T,)`` bool mask of the labelled frames; used in nearest mode only.

        Returns:
            ``(num_frames, ...)`` sequence (a MetaTensor records the resampling).

        Raises:
            CineDataError: ``img`` is not a frame sequence, or ``label_mask`` has the wrong length.
        """
        mode_ = self.mode if mode is None else mode
        img_t = convert_to_tensor(img, track_meta=get_track_meta() and isinstance(img, MetaTensor))
        num_in = _num_frames(img_t, source_name(img))
        sources = None
        if label_mask is not None and mode_ == "nearest":
            check_label_mask(label_mask, num_in, source_name(img))
            sources = labelled_frame_sources(label_mask, self.num_frames)
        out = _resample_frames(img_t, self.num_frames, mode_, sources)
        if isinstance(out, MetaTensor):
            self.push_transform(out, extra_info={"num_frames": num_in, "mode": mode_})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Resample ``data`` back to the recorded frame count with the recorded mode."""
        info = self.pop_transform(data)[TraceKeys.EXTRA_INFO]
        return _resample_frames(data, info["num_frames"], info["mode"])


class ResampleFramesd(MapTransform, InvertibleTransform):
    """Dictionary version of :class:`ResampleFrames`, keeping the label mask and frame indices in step.

    Label keys resampled in nearest mode use ``d[label_mask_key]`` when present (sparse labels, see
    :class:`ResampleFrames`); other keys in nearest mode (e.g. images, to pick whole frames instead of blending
    neighbours) copy their nearest input frame. The mask becomes True on the output frames that received labels;
    ``d[ed_key]``,
    ``d[es_key]`` and each of ``d[label_frames_key]`` move to their nearest output frame
    (:func:`nearest_resampled_frame`, duplicates dropped) and ``d[num_frames_key]`` becomes ``num_frames``.
    The inverse resamples the arrays back as :meth:`ResampleFrames.inverse` does and restores the recorded mask
    and frame indices exactly. Arrays that are not MetaTensors are resampled but carry no record to invert.

    Args:
        keys: keys of the ``(T, ...)`` sequences to resample.
        num_frames: number of output frames, at least 1.
        mode: ``"linear"`` / ``"nearest"`` per key (one value for all, or one per key).
        label_keys: the keys holding sparse label sequences; ``None`` treats every nearest-mode key as labels.
        label_mask_key, ed_key, es_key, label_frames_key, num_frames_key: keys of the ``(T,)`` label mask, ED
            frame, ES frame, list of labelled frames and frame count.
        allow_missing_keys: don't raise for missing ``keys``.

    Raises:
        CineDataError: the arrays and the mask disagree on the frame count, or a frame index is not a frame.
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_frames: int,
        mode: Sequence[str] | str = ("linear", "nearest"),
        label_keys: KeysCollection | None = None,
        label_mask_key: str = "label_mask",
        ed_key: str = "ed",
        es_key: str = "es",
        label_frames_key: str = "label_frames",
        num_frames_key: str = "num_frames",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if int(num_frames) < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}.")
        self.num_frames = int(num_frames)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        for mode_ in self.mode:
            if mode_ not in _FRAME_MODES:
                raise ValueError(f"mode must be one of {_FRAME_MODES}, got {mode_!r}.")
        self.label_keys = None if label_keys is None else set(ensure_tuple(label_keys))
        self.label_mask_key, self.label_frames_key = label_mask_key, label_frames_key
        self.index_keys = (ed_key, es_key)
        self.num_frames_key = num_frames_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = entry_name(d, self.keys)
        num_in, num_out = _frame_count(d, self.keys, source), self.num_frames
        mask = check_label_mask(d.get(self.label_mask_key), num_in, source)
        sources = None if mask is None else labelled_frame_sources(mask, num_out)
        restore: dict[str, Any] = {}
        if mask is not None:
            assert sources is not None  # computed from mask
            restore["label_mask"] = np.asarray(torch.as_tensor(mask).cpu(), dtype=bool).tolist()
            d[self.label_mask_key] = torch.as_tensor(sources >= 0) if isinstance(mask, torch.Tensor) else sources >= 0
        for key in self.index_keys:
            if d.get(key) is not None:
                restore[key] = _frame_index(d[key], num_in, key, source)
                d[key] = nearest_resampled_frame(restore[key], num_in, num_out)
        if d.get(self.label_frames_key) is not None:
            restore["label_frames"] = [_frame_index(f, num_in, "labelled", source) for f in d[self.label_frames_key]]
            mapped = (nearest_resampled_frame(f, num_in, num_out) for f in restore["label_frames"])
            d[self.label_frames_key] = list(dict.fromkeys(mapped))
        if self.num_frames_key in d:
            d[self.num_frames_key] = num_out
        for key, mode in self.key_iterator(d, self.mode):
            sparse = mode == "nearest" and (self.label_keys is None or key in self.label_keys)
            d[key] = _resample_frames(d[key], num_out, mode, sources if sparse else None)
            if isinstance(d[key], MetaTensor):
                self.push_transform(d[key], extra_info={"num_frames": num_in, "mode": mode, "restore": restore})
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        info = None
        for key in self.key_iterator(d):
            info = self.pop_transform(d[key])[TraceKeys.EXTRA_INFO]
            d[key] = _resample_frames(d[key], info["num_frames"], info["mode"])
        if info is not None:
            restore = info["restore"]
            if "label_mask" in restore and self.label_mask_key in d:
                mask = np.asarray(restore["label_mask"], dtype=bool)
                as_tensor = isinstance(d[self.label_mask_key], torch.Tensor)
                d[self.label_mask_key] = torch.as_tensor(mask) if as_tensor else mask
            for key in (*self.index_keys, self.label_frames_key):
                if key in restore and key in d:
                    d[key] = restore[key]
            if self.num_frames_key in d:
                d[self.num_frames_key] = info["num_frames"]
        return d


class RandFrameSubsetd(Randomizable, MapTransform):
    """Draw an ordered subset of ``num_frames`` frames of a cine, for training on a fixed number of frames.

    The subset always holds frame 0 (the ED reference after :class:`ReorderFromEDd`) and, with
    ``keep_labelled``, every labelled frame (from ``d[label_mask_key]``, else ``d[label_frames_key]``); the
    other frames are drawn uniformly without replacement with ``self.R``. The chosen frames keep their order.
    All ``keys`` and the label mask are subset alike; ``d[ed_key]`` / ``d[es_key]`` become the position of that
    frame in the subset, or of the kept frame nearest in time (the earlier on a tie) when it was left out;
    ``d[label_frames_key]`` keeps the positions of the labelled frames that were kept; ``d[num_frames_key]``
    becomes ``num_frames``.

    Not invertible: the frames left out are gone. Use it for training only.

    Args:
        keys: keys of the ``(T, ...)`` sequences to subset.
        num_frames: number of frames to keep.
        keep_labelled: always keep the labelled frames.
        label_mask_key, label_frames_key, ed_key, es_key, num_frames_key: keys of the ``(T,)`` label mask,
            list of labelled frames, ED frame, ES frame and frame count.
        allow_missing_keys: don't raise for missing ``keys``.

    Raises:
        CineDataError: the cine has fewer than ``num_frames`` frames, frame 0 and the labelled frames don't fit
            in ``num_frames``, or the arrays and the mask disagree on the frame count.
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_frames: int,
        keep_labelled: bool = True,
        label_mask_key: str = "label_mask",
        label_frames_key: str = "label_frames",
        ed_key: str = "ed",
        es_key: str = "es",
        num_frames_key: str = "num_frames",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if int(num_frames) < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}.")
        self.num_frames = int(num_frames)
        self.keep_labelled = keep_labelled
        self.label_mask_key, self.label_frames_key = label_mask_key, label_frames_key
        self.index_keys = (ed_key, es_key)
        self.num_frames_key = num_frames_key
        self._index = np.arange(self.num_frames)

    def randomize(self, num_total: int, required: np.ndarray) -> None:  # type: ignore[override]  # own arguments
        """Choose the kept frames: ``required`` plus frames drawn from the others of ``num_total``, sorted."""
        others = np.setdiff1d(np.arange(num_total), required)
        drawn = self.R.choice(others, self.num_frames - len(required), replace=False)
        self._index = np.sort(np.concatenate([required, drawn]).astype(np.int64))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = entry_name(d, self.keys)
        num_total = _frame_count(d, self.keys, source)
        if num_total < self.num_frames:
            raise CineDataError(f"the cine has {num_total} frames, fewer than the {self.num_frames} to draw", source)
        mask = check_label_mask(d.get(self.label_mask_key), num_total, source)
        if mask is not None:
            labelled = np.flatnonzero(np.asarray(torch.as_tensor(mask).cpu(), dtype=bool))
        else:
            frames = d.get(self.label_frames_key)
            frames = () if frames is None else frames
            labelled = np.asarray([_frame_index(f, num_total, "labelled", source) for f in frames], np.int64)
        required = np.union1d([0], labelled if self.keep_labelled else []).astype(np.int64)
        if len(required) > self.num_frames:
            raise CineDataError(
                f"frame 0 and the labelled frames {labelled.tolist()} make {len(required)} frames, more than the "
                f"{self.num_frames} to draw; draw more frames or set keep_labelled=False",
                source,
            )
        self.randomize(num_total, required)
        index = self._index
        for key in self.key_iterator(d):
            d[key] = _take_frames(d[key], index)
        if mask is not None:
            d[self.label_mask_key] = _take_frames(mask, index)
        for key in self.index_keys:
            if d.get(key) is not None:
                frame = _frame_index(d[key], num_total, key, source)
                d[key] = int(np.argmin(np.abs(index - frame)))
        if d.get(self.label_frames_key) is not None:
            frames = [_frame_index(f, num_total, "labelled", source) for f in d[self.label_frames_key]]
            d[self.label_frames_key] = [int(np.searchsorted(index, f)) for f in frames if f in index]
        if self.num_frames_key in d:
            d[self.num_frames_key] = self.num_frames
        return d
