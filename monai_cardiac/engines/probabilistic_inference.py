"""Inference with the probabilistic motion model (Krebs et al., STACOM 2019), written on the input's grid.

The bundle ``bundles/probabilistic_motion`` runs, for each short-axis slice of each input cine::

    LoadCined -> CopyItemsd(ed -> input_ed) -> ReorderFromEDd -> ScaleIntensityRangePercentilesd -> CropAroundHeartd
    -> ProbabilisticMotionModel (ProbabilisticMotionInferer, one mode)
    -> ProbabilisticPredictionSplitd -> InvertToInputGridd (back onto the input slice)
    -> SubjectSaver + ProbabilisticResultWriter (one subject written once all its slices are done)

The mode (:data:`MODES`) picks the model's method: ``track`` (``u_{ED->t}`` of every frame, the motion matrix
``z`` and, where the input has ED labels, those labels propagated to every frame with the volume table; with
``num_samples`` > 1 also the spread of ``u_{ED->t}`` and of the volume curves over draws from the posterior),
``compensate`` (every frame warped back onto ED), ``simulate`` (motion sampled from the prior, given only the ED
frame), ``reconstruct`` (the whole motion from a subset of frames) and ``transport`` (another cine's motion, or a
saved motion matrix, applied to the input's ED frame). The pieces reuse the joint bundle's
(:mod:`monai_cardiac.engines.joint_inference`): the data list, the inversion onto the input grid and the writers.

Intensities of the image outputs are those the network saw: each slice's 1st / 99th percentiles mapped to
0 / 1 and clipped, zero outside the crop window. Displacements are in voxels of the input grid (the
preprocessing never resamples) and zero outside the window.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import MapTransform
from monai.utils import TraceKeys, convert_to_numpy, convert_to_tensor

from monai_cardiac.data.nifti import spacing_of
from monai_cardiac.displacement import propagate_labels
from monai_cardiac.engines.joint_inference import (
    _VOLUME_LABELS,
    joint_inference_datalist,
    volume_summary,
    write_ddf_nifti,
    write_joint_outputs,
    write_sequence_nifti,
)
from monai_cardiac.errors import CineDataError
from monai_cardiac.inferers import average_over_orientations
from monai_cardiac.metrics.plausibility import report_plausibility

__all__ = [
    "INPUT_FRAME_MODES",
    "MODES",
    "ProbabilisticMotionInferer",
    "ProbabilisticPredictionSplitd",
    "ProbabilisticResultWriter",
    "displacement_spread",
    "saver_keys",
]

logger = logging.getLogger(__name__)

MODES = ("track", "compensate", "simulate", "reconstruct", "transport")
"""Inference modes of :class:`ProbabilisticMotionInferer`."""

INPUT_FRAME_MODES = ("track", "compensate", "reconstruct")
"""Modes whose outputs are the input's own frames, written in the file's frame order; the others (``simulate``,
``transport``) generate new sequences, written with ED as frame 0."""

_OUTPUT_KEYS = {
    "track": ("ddf", "z", "seg", "ed_labelled"),
    "compensate": ("cine", "inverse_ddf"),
    "simulate": ("cine", "ddf"),
    "reconstruct": ("cine", "ddf"),
    "transport": ("cine", "ddf"),
}
_UNCERTAINTY_KEYS = ("ddf_std", "seg_samples")
"""Keys :class:`ProbabilisticPredictionSplitd` adds in ``track`` mode when the inferer drew posterior samples."""
_MOTION_SLICES = ("index", "middle")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}.")
    return mode


def displacement_spread(samples: torch.Tensor) -> torch.Tensor:
    """Per-voxel spread of displacement draws: ``sqrt(var_H + var_W)`` over the draws, ``K - 1`` in the denominator.

    Args:
        samples: ``(N, K, 2, H, W)`` displacements of ``K`` draws for each of ``N`` frames, voxels.

    Returns:
        ``(N, H, W)`` in voxels (what ``track --num_samples K`` writes to ``<subject>_ddf_std.nii.gz``).
    """
    return samples.var(dim=1, correction=1).sum(dim=1).sqrt()


def saver_keys(
    mode: str, ed_key: str = "input_ed", spacing_known_key: str = "spacing_known", num_samples: int = 1,
    image_key: str | None = None,
) -> list[str]:
    """Keys of the per-slice records :class:`monai_cardiac.handlers.SubjectSaver` keeps for ``mode``.

    Args:
        mode: one of :data:`MODES`.
        ed_key, spacing_known_key: keys of the file's ED frame and of the spacing flag.
        num_samples: the inferer's ``num_samples``; above 1 in ``track`` mode the records also keep the
            posterior spread (``"ddf_std"``, ``"seg_samples"``).
        image_key: in ``track`` mode, the key of the input cine kept for the overlay GIF (None: not kept).

    Returns:
        the keys :class:`ProbabilisticPredictionSplitd` writes for ``mode`` plus ``ed_key`` and
        ``spacing_known_key`` (and ``image_key`` in ``track`` mode).

    Raises:
        ValueError: an unknown mode.
    """
    extra = _UNCERTAINTY_KEYS if mode == "track" and int(num_samples) > 1 else ()
    image = (image_key,) if mode == "track" and image_key is not None else ()
    return [*_OUTPUT_KEYS[_check_mode(mode)], *extra, *image, ed_key, spacing_known_key]


# ---------------------------------------------------------------------------------------------- batch meta
def _item_meta(inputs: Any, index: int, key: str) -> Any:
    """``inputs.meta[key]`` of batch item ``index``, or None when the input carries no such meta."""
    if not isinstance(inputs, MetaTensor) or key not in inputs.meta:
        return None
    value = inputs.meta[key]
    return value[index] if inputs.is_batch else value


def _item_source(inputs: Any, index: int) -> str:
    name = _item_meta(inputs, index, "filename_or_obj")
    return "ProbabilisticMotionInferer(inputs)" if name is None else str(name)


def _recorded_ed(inputs: Any, index: int) -> int:
    """The file frame that became frame 0: the ED recorded by ``ReorderFromED`` (0 when nothing was recorded)."""
    if not isinstance(inputs, MetaTensor):
        return 0
    operations: Any = inputs.applied_operations  # of a batch: one list per item
    if inputs.is_batch:
        operations = operations[index] if index < len(operations) else []
    if not isinstance(operations, list):  # MONAI collates an item without a record as TraceKeys.NONE
        return 0
    return sum(int(op[TraceKeys.EXTRA_INFO]["ed"]) for op in operations if op[TraceKeys.CLASS_NAME] == "ReorderFromED")


def _with_ed(sequence: torch.Tensor, ed_value: torch.Tensor | None = None) -> torch.Tensor:
    """Prepend frame 0 (ED) to a sequence ``(B, T, ...)`` after ED: ``ed_value`` ``(B, 1, ...)`` or zeros."""
    first = torch.zeros_like(sequence[:, :1]) if ed_value is None else ed_value.to(sequence.dtype)
    return torch.cat([first, sequence], dim=1)


class ProbabilisticMotionInferer(Inferer):
    """MONAI inferer running one mode of :class:`~monai_cardiac.networks.ProbabilisticMotionModel` on cines.

    ``inputs`` is a batch of cine slices ``(B, N, H, W)`` with ED first (after ``ReorderFromEDd``, cropped to the
    model's ``spatial_size``), ``N >= 2``. The result is a dict of float tensors on the network's grid, ED first
    (frame 0), with ``T = N - 1`` frames after ED and ``d`` the model's ``latent_dim``:

    - ``track``: ``"ddf"`` ``u_{ED->t}`` ``(B, N, 2, H, W)`` in voxels (frame 0 exactly zero) and ``"z"`` the
      motion matrix ``(B, d, T)`` (posterior means, deterministic). With ``orientation_ensemble`` ``"ddf"`` is
      the average over the eight in-plane orientations of the cine, each turned back
      (:func:`monai_cardiac.inferers.average_over_orientations`: exactly equivariant to how the cine is stored, 8
      times the cost); ``"z"`` and the posterior draws below stay those of the cine as given. With
      ``num_samples`` = ``K`` > 1 also
      ``"ddf_samples"`` ``(B, N, K, 2, H, W)``: ``u_{ED->t}`` of ``K`` draws from the posterior (frame 0 zero),
      each ``z~_t = mu_t + exp(logvar_t / 2) eps_t`` with ``eps ~ N(0, I)`` for every step, passed through the
      TCN and decoded on the ED frame, as in training without temporal dropout (which would draw from the
      prior). ``"ddf"`` and ``"z"`` stay the posterior means;
    - ``compensate``: ``"cine"`` ``(B, N, H, W)``, frame ``t`` warped onto ED with ``u_{t->ED}`` (frame 0 the ED
      frame itself), and ``"inverse_ddf"`` ``u_{t->ED}`` ``(B, N, 2, H, W)`` on the ED grid (frame 0 zero);
    - ``simulate``: ``num_samples`` = ``K`` motions drawn from the prior given only the ED frame, each of
      ``num_frames`` frames ED included (default ``N``): ``"cine"`` ``(B, num_frames, K, H, W)`` (the ED frame
      warped by the sampled ``u_{ED->t}``, frame 0 the ED frame) and ``"ddf"`` ``(B, num_frames, K, 2, H, W)``;
    - ``reconstruct``: the whole motion from the frames in ``given`` (the others take prior codes filled in by
      the TCN): ``"cine"`` ``(B, N, H, W)`` (the ED frame warped by the reconstructed motion) and ``"ddf"``
      ``(B, N, 2, H, W)``. With every frame given this is ``track``;
    - ``transport``: the motion matrix of ``motion_input`` (``T_s`` frames after its ED) decoded on each input
      ED frame: ``"cine"`` ``(B, T_s + 1, H, W)`` and ``"ddf"`` ``(B, T_s + 1, 2, H, W)``.

    Prior draws (``simulate``, and the frames not given in ``reconstruct``) come from a generator re-seeded with
    ``seed`` for every slice, so all slices of a volume (and every run) share the same prior codes, as Krebs et
    al. do; ``seed=None`` draws from torch's global generator instead. Posterior draws (``track``) come from a
    generator seeded with ``(seed, slice index)`` (``inputs.meta["slice"]``, else the batch index): reproducible,
    but independent between the slices of a volume, as the model encodes every slice on its own (its posterior
    factorises over slices), so the spread of a volume summed over slices is not that of fully correlated draws.

    ``given`` holds 1-based frame numbers of the input file, as in ACDC's ``patientXXX_frameNN`` names, so they
    name the same frames whatever the file's ED frame is; ED (``Info.cfg``'s ``ED``) is always observed, and
    listing it changes nothing. The conversion to the model's steps after ED reads the ED frame that
    ``ReorderFromED`` recorded on ``inputs`` (a plain tensor, or one without that record, is taken to start at the
    file's frame 1).

    ``motion_input`` for ``transport`` is either a motion matrix saved by ``track`` (``<subject>_z.npy``,
    ``(Z_s, d, T_s)``) or a cine of one subject in any form :func:`joint_inference_datalist` reads, preprocessed
    with ``preprocessing`` and encoded once, on the first call, with the network of that call. Slices are
    matched by ``motion_slice``: ``"index"`` takes the source slice of the same index when both stacks have as
    many slices, else the one at the same relative position ``round(z (Z_s - 1) / (Z - 1))`` (both stacks
    ordered alike, e.g. base to apex); ``"middle"`` takes the source's middle slice ``Z_s // 2`` (about
    mid-ventricular) for every slice. ``"index"`` reads the slice index and count from ``inputs.meta``
    (``slice``, ``spatial_shape``).

    Args:
        mode: one of :data:`MODES`.
        given: ``reconstruct`` only: 1-based frame numbers of the input file that are observed.
        num_samples: ``simulate``: motions sampled from the prior per slice; ``track``: draws from the posterior
            per slice for the spread of the motion (1: none, the posterior mean only); other modes: unused.
        num_frames: ``simulate`` only: frames per sampled sequence, ED included (at least 2); None for the
            input's ``N``.
        seed: seed of the prior draws, or None.
        motion_input: ``transport`` only: a ``.npy`` motion matrix file or a cine (file or folder).
        motion_slice: ``transport`` only: ``"index"`` or ``"middle"``.
        preprocessing: ``transport`` from a cine: the transform turning a data-list entry into the network's
            input (the bundle's ``preprocessing``).
        orientation_ensemble: ``track`` only: average ``u_{ED->t}`` over the eight in-plane orientations.

    Raises:
        ValueError: an unknown mode or ``motion_slice``, a ``reconstruct`` without ``given`` or with entries that
            are not 1-based frame numbers, ``num_samples < 1``, ``num_frames < 2``, a ``transport`` without
            ``motion_input`` (or from a cine without ``preprocessing``).
    """

    def __init__(
        self,
        mode: str = "track",
        given: Sequence[int] | None = None,
        num_samples: int = 1,
        num_frames: int | None = None,
        seed: int | None = 0,
        motion_input: str | Path | None = None,
        motion_slice: str = "index",
        preprocessing: Callable[[Mapping], Mapping] | None = None,
        orientation_ensemble: bool = False,
    ) -> None:
        self.mode = _check_mode(mode)
        self.given = None if given is None else self._check_given(given)
        if mode == "reconstruct" and self.given is None:
            raise ValueError("mode 'reconstruct' needs `given`: the 1-based frame numbers of the input file to use.")
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
        if num_frames is not None and int(num_frames) < 2:
            raise ValueError(f"num_frames counts ED and the frames after it, so it must be at least 2, got "
                             f"{num_frames}.")
        if motion_slice not in _MOTION_SLICES:
            raise ValueError(f"motion_slice must be one of {list(_MOTION_SLICES)}, got {motion_slice!r}.")
        if mode == "transport":
            if motion_input is None:
                raise ValueError("mode 'transport' needs `motion_input`: a cine or a saved motion matrix (.npy).")
            if not str(motion_input).endswith(".npy") and preprocessing is None:
                raise ValueError("mode 'transport' from a cine needs the `preprocessing` that feeds the network.")
        self.num_samples = int(num_samples)
        self.num_frames = None if num_frames is None else int(num_frames)
        self.seed = None if seed is None else int(seed)
        self.motion_input = None if motion_input is None else str(motion_input)
        self.motion_slice = motion_slice
        self.preprocessing = preprocessing
        self.orientation_ensemble = bool(orientation_ensemble)
        self._source_codes: list[torch.Tensor] | None = None

    @property
    def keeps_input_frames(self) -> bool:
        """Whether the outputs are the input's own frames (to be written in the file's frame order)."""
        return self.mode in INPUT_FRAME_MODES

    @staticmethod
    def _check_given(given: int | Sequence[int]) -> list[int]:
        values = [given] if isinstance(given, int) else list(given)
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1]
        if not values or bad:
            raise ValueError(
                f"given must be a non-empty list of 1-based frame numbers of the input file (ACDC's frameNN), "
                f"got {given!r}."
            )
        return sorted({int(v) for v in values})

    def _generator(self, device: torch.device) -> torch.Generator | None:
        return None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Run the mode on a batch of ED-first cines.

        Args:
            inputs: ``(B, N, H, W)`` cines, ED first, ``N >= 2`` (a MetaTensor carries the meta used by
                ``reconstruct`` and ``transport``, see the class).
            network: the :class:`~monai_cardiac.networks.ProbabilisticMotionModel` (or a wrapper with ``.module``).
            args, kwargs: unused (the model's methods take no extra arguments).

        Returns:
            the dict described in the class docstring.

        Raises:
            CineDataError: inputs of the wrong shape, ``given`` frames beyond the cine, a bad ``motion_input``,
                or no slice meta for ``motion_slice="index"``.
        """
        model: Any = getattr(network, "module", network)
        cine = inputs.as_tensor() if isinstance(inputs, MetaTensor) else torch.as_tensor(inputs)
        if cine.ndim != 4 or cine.shape[1] < 2:
            raise CineDataError(f"expected cines (B, N >= 2, H, W) with ED first, got shape {tuple(cine.shape)}",
                                _item_source(inputs, 0))
        moving, fixed = cine[:, :1], cine[:, 1:]
        if self.mode == "track":
            z = model.encode(moving, fixed)
            if self.orientation_ensemble:
                ddf = average_over_orientations(lambda c: (model.track(c[:, :1], c[:, 1:]), None), cine)[0]
            else:
                ddf = model.decode(z, moving)["ddf"]
            assert ddf is not None  # run gives fields
            out = {"ddf": _with_ed(ddf), "z": z}
            if self.num_samples > 1:
                out["ddf_samples"] = torch.cat([self._posterior_samples(model, inputs, cine, b)
                                                for b in range(cine.shape[0])])
            return out
        if self.mode == "compensate":
            out = model.compensate(moving, fixed)
            return {"cine": _with_ed(out["compensated"], moving), "inverse_ddf": _with_ed(out["inverse_ddf"])}
        items = [self._run_item(model, inputs, cine, b) for b in range(cine.shape[0])]
        return {key: torch.cat([item[key] for item in items]) for key in items[0]}

    def _run_item(self, model: Any, inputs: Any, cine: torch.Tensor, b: int) -> dict[str, torch.Tensor]:
        """``simulate``, ``reconstruct`` or ``transport`` on batch item ``b`` (one slice: re-seeded draws)."""
        moving, fixed = cine[b : b + 1, :1], cine[b : b + 1, 1:]
        if self.mode == "simulate":
            steps = (self.num_frames or cine.shape[1]) - 1
            out = model.simulate(moving, steps, self.num_samples, self._generator(cine.device))
            ed_frames = moving[:, :, None].expand(-1, -1, self.num_samples, -1, -1)  # (1, 1, K, H, W)
            return {"cine": _with_ed(out["warped"].transpose(1, 2), ed_frames),
                    "ddf": _with_ed(out["ddf"].transpose(1, 2))}
        if self.mode == "reconstruct":
            given_steps = self._given_steps(inputs, b, cine.shape[1])
            out = model.reconstruct(moving, fixed, given_steps, self._generator(cine.device))
        else:
            out = model.transport(self._source_code(model, inputs, b, cine.device), moving)
        return {"cine": _with_ed(out["warped"], moving), "ddf": _with_ed(out["ddf"])}

    def _posterior_samples(self, model: Any, inputs: Any, cine: torch.Tensor, b: int) -> torch.Tensor:
        """``u_{ED->t}`` of ``num_samples`` posterior draws for batch item ``b``: ``(1, N, K, 2, H, W)``, ED zero."""
        moving, fixed = cine[b : b + 1, :1], cine[b : b + 1, 1:]
        mu, logvar = model.posterior(moving, fixed)  # (1, T, d): the encoder's N(mu, sigma) of every step
        generator = None
        if self.seed is not None:
            index = _item_meta(inputs, b, "slice")
            index = b if index is None or int(index) < 0 else int(index)
            state = np.random.SeedSequence([self.seed % 2**64, index]).generate_state(1, np.uint64)[0]
            generator = torch.Generator(device=cine.device).manual_seed(int(state) >> 1)
        eps = torch.randn((self.num_samples, *mu.shape[1:]), generator=generator, device=mu.device, dtype=mu.dtype)
        codes = model.tcn((mu + torch.exp(0.5 * logvar) * eps).transpose(1, 2))  # (K, d, T)
        ddfs = [model.decode(codes[k : k + 1], moving)["ddf"] for k in range(self.num_samples)]  # K x (1, T, 2, H, W)
        return _with_ed(torch.stack(ddfs, dim=2))

    def _given_steps(self, inputs: Any, b: int, num_frames: int) -> list[int]:
        """``given`` (1-based file frames) as 0-based steps after ED of the ED-first sequence of item ``b``."""
        assert self.given is not None  # required by mode "reconstruct" (__init__)
        beyond = [f for f in self.given if f > num_frames]
        if beyond:
            raise CineDataError(
                f"given frames {beyond} are beyond the cine's {num_frames} frames (given holds 1-based frame "
                f"numbers of the input file, 1..{num_frames})",
                _item_source(inputs, b),
            )
        ed = _recorded_ed(inputs, b) % num_frames
        return sorted({(f - 1 - ed) % num_frames - 1 for f in self.given} - {-1})

    # ------------------------------------------------------------------------------------------- transport
    def _source_code(self, model: Any, inputs: Any, b: int, device: torch.device) -> torch.Tensor:
        """The motion matrix ``(1, d, T_s)`` of the source slice matched to input item ``b``."""
        if self._source_codes is None:
            self._source_codes = self._load_source_codes(model, device)
        codes = self._source_codes
        if self.motion_slice == "middle":
            index = len(codes) // 2
        else:
            z, shape = _item_meta(inputs, b, "slice"), _item_meta(inputs, b, "spatial_shape")
            if z is None or shape is None or int(z) < 0:
                raise CineDataError("motion_slice='index' needs the slice index and count in the input's meta "
                                    "(meta['slice'], meta['spatial_shape']); use motion_slice='middle'",
                                    _item_source(inputs, b))
            z, num_slices = int(z), int(convert_to_numpy(shape)[-1])
            index = z if num_slices == len(codes) else round(z * (len(codes) - 1) / max(num_slices - 1, 1))
        return codes[index].to(device)

    def _load_source_codes(self, model: Any, device: torch.device) -> list[torch.Tensor]:
        """Per-slice motion matrices ``(1, d, T_s)`` of ``motion_input`` (a ``.npy`` file or a cine), on the CPU."""
        source = self.motion_input
        assert source is not None  # required by mode "transport" (__init__)
        if source.endswith(".npy"):
            if not Path(source).is_file():
                raise CineDataError("motion matrix file not found", source)
            z = np.load(source)
            if z.ndim != 3 or z.shape[1] != model.latent_dim or z.shape[2] < 1 or not np.isfinite(z).all():
                raise CineDataError(
                    f"expected a finite motion matrix (Z, {model.latent_dim}, T >= 1) as written by mode 'track', "
                    f"got shape {z.shape}",
                    source,
                )
            return [torch.as_tensor(zk, dtype=torch.float32)[None] for zk in z]
        entries = sorted(joint_inference_datalist(source), key=lambda e: e["slice"])
        subjects = sorted({e["subject"] for e in entries})
        if len(subjects) != 1:
            raise CineDataError(f"motion_input must hold one subject, found {len(subjects)}: {subjects}", source)
        assert self.preprocessing is not None  # required for a cine motion_input (__init__)
        codes = []
        with torch.no_grad():
            for entry in entries:
                image = self.preprocessing(entry)["image"]
                cine = convert_to_tensor(image, track_meta=False)[None].to(device)
                codes.append(model.encode(cine[:, :1], cine[:, 1:]).float().cpu())
        logger.info(f"transport: motion of {subjects[0]} ({len(codes)} slices, {codes[0].shape[-1]} frames after ED)")
        return codes


class ProbabilisticPredictionSplitd(MapTransform):
    """Unpack the dict of :class:`ProbabilisticMotionInferer` into top-level keys; in ``track`` mode, label frames.

    Every entry of ``d[pred_key]`` becomes ``d[name]``, a float32 tensor (shapes in the inferer's docstring,
    without the batch axis). In ``track`` mode the ED labels ``d[label_key][0]`` (the ED-first, cropped label
    sequence that ``LoadCined(label_key=...)`` and the preprocessing made) are propagated to every frame with
    ``u_{ED->t}`` (nearest neighbour, :func:`monai_cardiac.displacement.propagate_labels`) into ``d[seg_key]``
    ``(N, H, W)``, and ``d[labelled_key]`` tells whether the ED frame was labelled (``d[label_mask_key][0]``);
    without ED labels ``d[seg_key]`` is all background and ``d[labelled_key]`` False.

    When the inferer drew ``K`` > 1 posterior samples (``"ddf_samples"`` ``(N, K, 2, H, W)``, ``track`` only),
    they are replaced by ``d[std_key]`` ``(N, H, W)``, the spread of ``u_{ED->t}`` per voxel and frame in voxels:
    ``sqrt(var_H + var_W)``, the per-component sample variances over the ``K`` draws (``K - 1`` in the
    denominator) summed, i.e. the root mean square distance of the draws from their mean (zero at ED), and by
    ``d[samples_seg_key]`` ``(N, K, H, W)``: the ED labels propagated with each draw, as ``d[seg_key]`` is with
    the posterior mean (all background without ED labels).

    Args:
        pred_key: key of the inferer's dict.
        mode: the inferer's mode.
        label_key, label_mask_key: keys of the ED-first label sequence and its ``(N,)`` mask.
        seg_key, labelled_key: keys of the propagated labels and of the flag.
        std_key, samples_seg_key: keys of the displacement spread and of the labels propagated per draw.

    Raises:
        ValueError: an unknown mode.
        CineDataError: ``d[pred_key]`` is not a dict.
    """

    def __init__(
        self,
        pred_key: str = "pred",
        mode: str = "track",
        label_key: str = "ed_label",
        label_mask_key: str = "ed_label_mask",
        seg_key: str = "seg",
        labelled_key: str = "ed_labelled",
        std_key: str = _UNCERTAINTY_KEYS[0],
        samples_seg_key: str = _UNCERTAINTY_KEYS[1],
    ) -> None:
        super().__init__(keys=[pred_key])
        self.pred_key, self.mode = pred_key, _check_mode(mode)
        self.label_key, self.label_mask_key = label_key, label_mask_key
        self.seg_key, self.labelled_key = seg_key, labelled_key
        self.std_key, self.samples_seg_key = std_key, samples_seg_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        pred = d[self.pred_key]
        if not isinstance(pred, Mapping):
            raise CineDataError(f"'{self.pred_key}' must be the dict of ProbabilisticMotionInferer, got "
                                f"{type(pred).__name__}", type(self).__name__)
        for name, value in pred.items():
            d[name] = convert_to_tensor(value, track_meta=False).detach().float()
        if self.mode == "track":
            mask = d.get(self.label_mask_key)
            labelled = self.label_key in d and mask is not None and bool(mask[0])
            ed_labels = convert_to_tensor(d[self.label_key], track_meta=False)[0] if labelled else None
            d[self.seg_key] = self._propagate(ed_labels, d["ddf"])
            d[self.labelled_key] = labelled
            samples = d.pop("ddf_samples", None)
            if samples is not None:
                d[self.std_key] = displacement_spread(samples)
                d[self.samples_seg_key] = self._propagate(ed_labels, samples)
        return d

    @staticmethod
    def _propagate(ed_labels: torch.Tensor | None, ddf: torch.Tensor) -> torch.Tensor:
        """ED labels ``(H, W)`` pulled through every field of ``ddf`` ``(..., 2, H, W)``: ``(..., H, W)`` float
        class ids (nearest neighbour); all background when ``ed_labels`` is None."""
        if ed_labels is None:
            return torch.zeros((*ddf.shape[:-3], *ddf.shape[-2:]), device=ddf.device)
        return propagate_labels(ed_labels, ddf).float()


class ProbabilisticResultWriter:
    """Writer for :class:`monai_cardiac.handlers.SubjectSaver`: stack a subject's slices and write one mode's files.

    Each slice record holds the keys of :func:`saver_keys` for the mode, on the input slice's grid (after
    ``InvertToInputGridd``), ``ed_key`` (the file's ED frame) and ``"meta"`` (``original_affine``,
    ``filename_or_obj``). Files go to ``output_dir/<subject>/``; ``X, Y, Z`` are the input's voxel axes
    (``H, W, Z``), every NIfTI file carries the input's affine, displacements are float32 ``(X, Y, Z, T, 2)`` in
    voxels with components along ``(X, Y)`` (:func:`monai_cardiac.data.read_nifti_ddf` reads them), cines float32
    ``(X, Y, Z, T)`` in normalised intensities:

    - ``track``: ``<subject>_ddf_ed_to_t.nii.gz`` (``u_{ED->t}``, zero at the file's ED frame) and
      ``<subject>_z.npy``, the motion matrices float32 ``(Z, d, T)`` (slice ``k``'s ``z``, column ``t - 1`` for
      the ``t``-th frame after ED, i.e. file frame ``(ED + t) mod N``, ``T = N - 1``), which ``transport``
      decodes on other ED frames (``motion_input``); with ED labels also ``<subject>_seg.nii.gz`` (the ED labels
      propagated to every frame), ``<subject>_volumes.csv`` and ``<subject>_volumes.png`` (LV / RV EDV, ESV, EF),
      as :func:`monai_cardiac.engines.joint_inference.write_joint_outputs` writes them. Records with posterior
      draws (``"ddf_std"``, ``"seg_samples"``: the inferer's ``num_samples`` > 1) add
      ``<subject>_ddf_std.nii.gz``, float32 ``(X, Y, Z, T)``: the spread of ``u_{ED->t}`` over the draws per
      voxel and frame, in voxels (:class:`ProbabilisticPredictionSplitd`; zero at ED and outside the crop
      window); and, with ED labels, the columns ``lv_ml_std, rv_ml_std, myo_ml_std`` of the volume table (the
      sample standard deviation over the draws of each draw's volume curve, its labels propagated with that
      draw, in mL) and the header lines ``num_samples``, ``lv_ef_std``, ``rv_ef_std`` (the same over each
      draw's EF, its ES the draw's smallest volume). The other files are those of the posterior mean, as
      without draws;
    - ``compensate``: ``<subject>_compensated.nii.gz`` (every frame warped onto ED) and
      ``<subject>_ddf_t_to_ed.nii.gz`` (``u_{t->ED}`` on the ED grid);
    - ``simulate``: for each sample ``k`` (0-based) ``<subject>_simulated_<k>.nii.gz`` and
      ``<subject>_simulated_<k>_ddf_ed_to_t.nii.gz``;
    - ``reconstruct``: ``<subject>_reconstructed.nii.gz`` (the ED frame warped by the reconstructed motion) and
      ``<subject>_reconstructed_ddf_ed_to_t.nii.gz``;
    - ``transport``: ``<subject>_transported.nii.gz`` and ``<subject>_transported_ddf_ed_to_t.nii.gz``.

    ``track``, ``compensate`` and ``reconstruct`` keep the file's frame order; ``simulate`` and ``transport``
    write new sequences with ED as frame 0 (:data:`INPUT_FRAME_MODES`).

    Args:
        output_dir: folder that receives one folder per subject.
        mode: one of :data:`MODES`.
        ed_key, spacing_known_key: keys of the slice records.
        plot: write the volume plot (``track`` with ED labels).
        strain: write the strain files of the propagated ED labels and ``u_{ED->t}`` (``track`` with ED labels;
            :func:`~monai_cardiac.engines.joint_inference.write_joint_outputs`).
        roi_size: the network's crop, for the plausibility flags.
        image_key: in ``track`` mode, key of the input cine ``(T, H, W)`` (input grid, file order) for the overlay
            GIF of the report (:func:`~monai_cardiac.engines.joint_inference.write_joint_outputs`); None: no GIF.

    Raises:
        ValueError: an unknown mode.
    """

    def __init__(
        self,
        output_dir: str | Path,
        mode: str = "track",
        ed_key: str = "input_ed",
        spacing_known_key: str = "spacing_known",
        plot: bool = True,
        strain: bool = True,
        roi_size: Sequence[int] | None = None,
        image_key: str | None = None,
    ) -> None:
        self.output_dir, self.mode = output_dir, _check_mode(mode)
        self.ed_key, self.spacing_known_key, self.plot = ed_key, spacing_known_key, plot
        self.strain, self.roi_size, self.image_key = strain, roi_size, image_key

    def __call__(self, subject: str, slices: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Write ``subject`` from its slice records (slice ``z`` at position ``z``).

        Returns:
            ``{"files": {kind: path}, "summary": {...}}`` (the volume summary in ``track`` with ED labels).

        Raises:
            CineDataError: shapes that disagree or non-finite values (see the NIfTI writers).
        """

        def stack(key: str) -> np.ndarray:  # slices go just before (H, W): (T, ..., Z, H, W)
            return np.stack([convert_to_numpy(s[key]) for s in slices], axis=-3)

        first = slices[0]
        affine, source = first["meta"]["original_affine"], str(first["meta"].get("filename_or_obj", ""))
        folder = Path(self.output_dir) / subject
        folder.mkdir(parents=True, exist_ok=True)
        prefix = folder / subject
        if self.mode == "track":
            labelled = all(bool(s["ed_labelled"]) for s in slices)
            result = write_joint_outputs(
                self.output_dir, subject, stack("seg") if labelled else None, stack("ddf"), affine,
                int(first[self.ed_key]), bool(first.get(self.spacing_known_key, True)), source, self.plot,
                self.strain, self.roi_size, None if self.image_key is None else stack(self.image_key),
            )
            z_path = f"{prefix}_z.npy"
            np.save(z_path, np.stack([convert_to_numpy(s["z"], dtype=np.float32) for s in slices]))
            result["files"]["z"] = z_path
            if _UNCERTAINTY_KEYS[0] in first:
                std_path = f"{prefix}_ddf_std.nii.gz"
                result["files"]["ddf_std"] = write_sequence_nifti(std_path, stack(_UNCERTAINTY_KEYS[0]), affine)
                if labelled:
                    samples = stack(_UNCERTAINTY_KEYS[1])  # (T, K, Z, H, W)
                    self._add_volume_spread(result, samples, affine, int(first[self.ed_key]))
            return result
        files: dict[str, str] = {}
        cines = stack("cine")  # (T, [K,] Z, H, W) on the input grid
        flags = report_plausibility(  # the frame count only where the output has the input's frames
            subject, logger, spacing_mm=spacing_of(affine), image_size=cines.shape[-2:], roi_size=self.roi_size,
            num_frames=cines.shape[0] if self.mode == "compensate" else None,
        )
        if self.mode == "compensate":
            files["cine"] = write_sequence_nifti(f"{prefix}_compensated.nii.gz", cines, affine)
            files["ddf"] = write_ddf_nifti(f"{prefix}_ddf_t_to_ed.nii.gz", stack("inverse_ddf"), affine)
        elif self.mode == "simulate":
            ddfs = stack("ddf")  # (T, K, 2, Z, H, W)
            for k in range(cines.shape[1]):
                files[f"cine_{k}"] = write_sequence_nifti(f"{prefix}_simulated_{k}.nii.gz", cines[:, k], affine)
                files[f"ddf_{k}"] = write_ddf_nifti(f"{prefix}_simulated_{k}_ddf_ed_to_t.nii.gz", ddfs[:, k], affine)
        else:
            name = "reconstructed" if self.mode == "reconstruct" else "transported"
            files["cine"] = write_sequence_nifti(f"{prefix}_{name}.nii.gz", cines, affine)
            files["ddf"] = write_ddf_nifti(f"{prefix}_{name}_ddf_ed_to_t.nii.gz", stack("ddf"), affine)
        logger.info(f"{subject}: {self.mode} outputs written to {folder}")
        return {"files": files, "summary": {}, "flags": flags}

    @staticmethod
    def _add_volume_spread(result: dict[str, Any], samples: np.ndarray, affine: Any, ed: int) -> None:
        """Volume curves of every draw (labels ``(T, K, Z, H, W)``), summarised the way ``write_joint_outputs``
        summarises the posterior mean's; their standard deviations go into ``result["summary"]`` and, as extra
        columns and header lines, into the volume table it wrote."""
        s_h, s_w, s_z = spacing_of(convert_to_numpy(affine, dtype=np.float64))
        draws = [volume_summary(samples[:, k], (s_z, s_h, s_w), ed) for k in range(samples.shape[1])]
        names = [f"{name}_ml" for name, _ in _VOLUME_LABELS]
        spread = {f"{n}_std": np.std([draw[n] for draw in draws], axis=0, ddof=1) for n in names}
        spread.update({f"{n}_ef_std": float(np.std([draw[f"{n}_ef"] for draw in draws], ddof=1)) for n in ("lv", "rv")})
        result["summary"].update(spread, num_samples=len(draws))
        path = Path(result["files"]["volumes"])
        lines = path.read_text().splitlines()
        header = [line for line in lines if line.startswith("# ")]
        table = list(csv.reader([line for line in lines if not line.startswith("# ")]))
        header += [f"# num_samples: {len(draws)} (posterior draws; the *_std values are standard deviations over "
                   f"them, K - 1 in the denominator)",
                   *(f"# {n}_ef_std: {spread[f'{n}_ef_std']:.6f}" for n in ("lv", "rv"))]
        table[0] += [f"{n}_std" for n in names]
        for t, row in enumerate(table[1:]):
            row += [f"{spread[f'{n}_std'][t]:.4f}" for n in names]
        with open(path, "w", newline="") as f:
            f.write("".join(f"{line}\n" for line in header))
            csv.writer(f).writerows(table)
