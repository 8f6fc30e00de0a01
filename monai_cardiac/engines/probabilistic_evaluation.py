"""Evaluation of motion estimates on whole cine slices: the probabilistic motion model against the joint network.

The figures of Krebs et al. (STACOM 2019, Fig. 2) as a table, computed from displacement fields, so that any model
that gives the motion of a cine slice can be scored the same way:

- ``u_{ED->t}`` (tracking, on frame ``t``'s grid, ``warp(I_ED, u_{ED->t}) ~ I_t``), ``T - 1`` fields for frames
  ``1 .. T-1``; the probabilistic model's ``ddf``. The joint network has no such field, so its tracking columns
  are absent.
- ``u_{t->ED}`` (motion compensation, on the ED grid, ``warp(I_t, u_{t->ED}) ~ I_ED``), the probabilistic model's
  ``inverse_ddf`` and the joint network's ``ddf_to_target``. Every column that both models have is computed
  on these fields, which is what the comparison between them uses.

Columns of a row (``<s>`` = ``RV``, ``Myo``, ``LV``; HD95 in mm only with a known spacing, NaN otherwise or
when a mask is empty):

- ``track_dice_<s>``, ``track_dice_mean``, ``track_hd95_<s>``, ``track_mcd_<s>``: the ED labels warped with
  ``u_{ED->ES}`` (nearest) against the ES labels (MCD: mean contour distance in mm, NaN like HD95).
- ``comp_dice_<s>``, ``comp_dice_mean``, ``comp_hd95_<s>``, ``comp_mcd_<s>``: the ES labels warped with
  ``u_{ES->ED}`` against the ED labels (the direction of the joint bundle's Table 2, equal to its ``warp_dice_<s>``).
- ``unwarped_dice_<s>``, ``unwarped_dice_mean``, ``unwarped_hd95_<s>``, ``unwarped_mcd_<s>``: ES labels against ED
  labels, no motion.
- ``rmse_track``: intensity RMSE of ``warp(I_ED, u_{ED->t})`` against ``I_t``; ``rmse_comp``: of
  ``warp(I_t, u_{t->ED})`` against ``I_ED``; ``rmse_unregistered``: of ``I_ED`` against ``I_t``. Each is the
  mean over frames ``1 .. T-1`` of the per-frame RMSE over the whole image (intensities in [0, 1]).
- ``grad_s_comp`` / ``grad_s_track``: mean Frobenius norm of the spatial gradient of ``u_{t->ED}`` /
  ``u_{ED->t}`` (voxels per voxel) over the whole image and frames ``1 .. T-1``; ``grad_t_comp`` /
  ``grad_t_track``: mean norm of the change between consecutive fields (voxels per frame) over the whole image,
  the sequence starting with the zero field of ED (``T - 1`` differences). The ``u_{t->ED}`` fields all live on
  the ED grid, so their temporal gradient follows each ED voxel (Lagrangian); the ``u_{ED->t}`` fields live on
  the grid of their own frame.
- ``folding_pct_comp`` / ``folding_pct_track``: % voxels with ``det J <= 0`` over all frames ``1 .. T-1`` and
  the whole image; ``folding_heart_pct_comp``: inside the ED heart (labels > 0 of the ED frame);
  ``folding_heart_pct_track``: inside the heart tracked to each frame (ED labels warped with ``u_{ED->t}``).
- ``sdlogj_comp`` / ``sdlogj_track``: standard deviation of ``log det J`` over the whole image
  (:func:`~monai_cardiac.metrics.sdlogj`, determinants clipped at 1e-9), averaged over frames ``1 .. T-1``.
- LV volume curve (``u_{ED->t}`` only): the ED LV mask warped to every frame. ``lv_ed_voxels``,
  ``lv_es_track_voxels``, ``lv_es_ref_voxels`` (the slice's LV area as a voxel count) and, when the in-plane
  spacing and the slice thickness are known, the same in mL (``lv_ed_ml``, ...); ``lv_ef_track``, ``lv_ef_ref``
  (fractions, ED = frame 0) and ``lv_ef_abs_error``. The curves themselves are the row's non-numeric entries
  ``lv_volume_track`` and ``lv_volume_ref`` (lists of ``T`` values, NaN on unlabelled reference frames), in
  ``lv_volume_unit`` (``"mL"`` where known, else ``"voxels"``); :func:`summarize_rows` leaves them out.
- With the true ``u_{ED->t}`` (phantom): ``epe_px`` and ``zero_motion_epe_px``, the end-point error (voxels) of the
  estimated ``u_{ED->ES}`` inside the ES heart and that of assuming no motion (``|u_true|``), and the same inside
  each ES structure (``epe_px_LV``, ``zero_motion_epe_px_LV``, ...; NaN where the ES frame lacks it);
  ``epe_comp_px`` and ``zero_motion_epe_comp_px``, the error of ``u_{ES->ED}`` measured as in the joint evaluation
  (composed with the true motion inside the ED heart, where the exact estimate gives zero).
- ``frames``, ``seconds`` (time of the model's forward pass), ``seconds_per_50_frames``.
- With ``invert_missing`` (:func:`evaluate_motion_entry`), a method that gives one direction only has the other
  computed by :func:`~monai_cardiac.displacement.invert_displacement`, so that both directions are scored for every
  method: ``inverted`` names the derived field (``"u_t_to_ed"``, ``"u_ed_to_t"`` or ``""``),
  ``seconds_inversion`` its time (not part of ``seconds``) and ``inversion_converged`` (1.0 / 0.0) whether the
  fixed-point iteration met its tolerance on every frame (it cannot where the field folds).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.utils import convert_to_tensor, optional_import

from monai_cardiac.data.nifti import LABEL_IDS, NUM_CLASSES, STRUCTURES
from monai_cardiac.displacement import (
    compose_displacements,
    invert_displacement,
    propagate_labels,
    warp_image,
    warp_labels,
)
from monai_cardiac.engines.engine_utils import slice_spacing
from monai_cardiac.engines.joint_evaluation import (
    mean_std,
    per_structure,
    phantom_evaluation_preprocessing,
    score_checkpoints,
    summarize_rows,
    write_rows_csv,
)
from monai_cardiac.errors import CineDataError
from monai_cardiac.inferers import average_over_orientations, orientation_averaged_joint_outputs
from monai_cardiac.metrics import (
    compute_contour_distance,
    compute_dice,
    ejection_fraction,
    end_point_error,
    folding_fraction,
    jacobian_determinant,
    sdlogj,
    spatial_gradient_magnitude,
    structure_volume_curve,
    temporal_gradient_magnitude,
    warped_rmse,
)
from monai_cardiac.networks import JointMotionSegNet, ProbabilisticMotionModel, window_segmentation_logits

Figure, has_matplotlib = optional_import("matplotlib.figure", name="Figure")

__all__ = [
    "evaluate_motion_checkpoints",
    "evaluate_motion_datalist",
    "evaluate_motion_entry",
    "evaluate_motion_sequence",
    "joint_motion_fields",
    "motion_fields",
    "motion_tables_markdown",
    "motion_target_checks",
    "plot_lv_volume_curves",
    "probabilistic_motion_fields",
    "report_phantom_motion",
]

logger = logging.getLogger(__name__)

_LV = LABEL_IDS["LV"]  # label id of the LV blood pool (docs/conventions.md)
_CURVE_KEYS = ("lv_volume_track", "lv_volume_ref", "lv_volume_unit")


def _label_scores(prefix: str, pred: torch.Tensor, ref: torch.Tensor, spacing: Sequence[float] | None) -> dict:
    """Dice, HD95 and MCD per structure (and the mean Dice) of label maps ``(1, 1, H, W)``; mm NaN without spacing."""
    dice = compute_dice(pred, ref, num_classes=NUM_CLASSES)
    row = per_structure(f"{prefix}_dice", dice)
    row[f"{prefix}_dice_mean"] = float(dice.mean())
    for metric in ("hd95", "mcd"):
        if spacing is None:
            values = torch.full((1, len(STRUCTURES)), float("nan"))
        else:
            values = compute_contour_distance(pred, ref, metric, spacing=spacing, num_classes=NUM_CLASSES)
        row.update(per_structure(f"{prefix}_{metric}", values))
    return row


def _pooled_folding(det: torch.Tensor, mask: torch.Tensor | None) -> float:
    """% of ``det <= 0`` over all frames' voxels together, ``det`` ``(T, H, W)``, ``mask`` the same or ``None``."""
    flat_mask = None if mask is None else mask.reshape(1, -1)
    return float(folding_fraction(det.reshape(1, -1), flat_mask)[0])


def _field_scores(suffix: str, fields: torch.Tensor, heart: torch.Tensor) -> dict[str, float]:
    """Spatial and temporal gradient, folding and SDlogJ of a displacement sequence ``(T - 1, 2, H, W)``."""
    sequence = torch.cat([torch.zeros_like(fields[:1]), fields])  # the zero field of ED first
    det = jacobian_determinant(fields)
    return {
        f"grad_s_{suffix}": float(spatial_gradient_magnitude(fields).mean()),
        f"grad_t_{suffix}": float(temporal_gradient_magnitude(sequence, spatial_dims=2)),
        f"folding_pct_{suffix}": _pooled_folding(det, None),
        f"folding_heart_pct_{suffix}": _pooled_folding(det, heart),
        f"sdlogj_{suffix}": float(sdlogj(det).mean()),
    }


def _check_fields(name: str, fields: torch.Tensor | None, num_frames: int, spatial: tuple[int, ...]) -> None:
    """Raise unless ``fields`` is ``None`` or a displacement sequence ``(T - 1, 2, H, W)``."""
    if fields is not None and tuple(fields.shape) != (num_frames - 1, 2, *spatial):
        raise ValueError(
            f"{name} must be shaped (T - 1, 2, H, W) = {(num_frames - 1, 2, *spatial)} (frames 1 .. T-1), "
            f"got {tuple(fields.shape)}."
        )


def evaluate_motion_sequence(
    image: torch.Tensor,
    labels: torch.Tensor,
    es: int,
    u_t_to_ed: torch.Tensor | None = None,
    u_ed_to_t: torch.Tensor | None = None,
    spacing: Sequence[float] | None = None,
    true_ddf: torch.Tensor | None = None,
    label_mask: torch.Tensor | None = None,
    slice_thickness: float | None = None,
) -> dict:
    """Score the estimated motion of one cine slice whose frame 0 is ED (columns in the module docstring).

    Args:
        image: ``(T, H, W)`` intensities in [0, 1], ED first.
        labels: ``(T, H, W)`` class ids; frames 0 (ED) and ``es`` must be labelled.
        es: ES frame index (>= 1).
        u_t_to_ed: ``(T - 1, 2, H, W)`` ``u_{t->ED}`` of frames ``1 .. T-1``, voxels, on the ED grid; ``None``
            leaves the ``comp`` columns out.
        u_ed_to_t: ``(T - 1, 2, H, W)`` ``u_{ED->t}``, voxels, field ``t - 1`` on frame ``t``'s grid; ``None``
            leaves the ``track`` columns and the LV volume curve out.
        spacing: in-plane spacing ``(sH, sW)`` in mm; ``None`` when unknown (HD95 NaN, volumes in voxels).
        true_ddf: ``(T, 2, H, W)`` true ``u_{ED->t}`` in voxels (frame 0 zero), if known: adds the ``epe`` columns.
        label_mask: ``(T,)`` bool, frames whose labels are references for the LV volume curve; defaults to the ED
            and ES frames.
        slice_thickness: slice thickness in mm; with ``spacing`` it turns LV areas into volumes in mL.

    Returns:
        the row: floats, plus ``lv_volume_track`` / ``lv_volume_ref`` (lists) and ``lv_volume_unit`` when
        ``u_ed_to_t`` is given.

    Raises:
        ValueError: ``es`` outside ``1..T-1``, no field given, or shapes that disagree.
    """
    num_frames = image.shape[0]
    spatial = tuple(image.shape[1:])
    if not 1 <= es < num_frames:
        raise ValueError(f"es must lie in 1..{num_frames - 1}, got {es}")
    if tuple(labels.shape) != tuple(image.shape):
        raise ValueError(f"labels {tuple(labels.shape)} and image {tuple(image.shape)} must have the same shape")
    if u_t_to_ed is None and u_ed_to_t is None:
        raise ValueError("give at least one of u_t_to_ed and u_ed_to_t")
    _check_fields("u_t_to_ed", u_t_to_ed, num_frames, spatial)
    _check_fields("u_ed_to_t", u_ed_to_t, num_frames, spatial)
    if true_ddf is not None and tuple(true_ddf.shape) != (num_frames, 2, *spatial):
        raise ValueError(f"true_ddf must be shaped {(num_frames, 2, *spatial)}, got {tuple(true_ddf.shape)}")
    frames = convert_to_tensor(image, dtype=torch.float32, track_meta=False).cpu()
    labels = convert_to_tensor(labels, track_meta=False).round().long().cpu()
    ed_frame, later = frames[:1, None].expand(num_frames - 1, 1, *spatial), frames[1:, None]
    ed, es_labels = labels[0][None, None], labels[es][None, None]

    row: dict = {"frames": float(num_frames)}
    row.update(_label_scores("unwarped", es_labels, ed, spacing))
    row["rmse_unregistered"] = float(warped_rmse(ed_frame, later).mean())

    if u_t_to_ed is not None:
        u_t_to_ed = convert_to_tensor(u_t_to_ed, dtype=torch.float32, track_meta=False).cpu()
        u_es_to_ed = u_t_to_ed[es - 1][None]
        row.update(_label_scores("comp", warp_labels(es_labels, u_es_to_ed), ed, spacing))
        row["rmse_comp"] = float(warped_rmse(warp_image(later, u_t_to_ed), ed_frame).mean())
        ed_heart = (labels[0] > 0)[None].expand(num_frames - 1, *spatial)
        row.update(_field_scores("comp", u_t_to_ed, ed_heart))
        if true_ddf is not None:
            # as in joint_evaluation: x + u_{ES->ED}(x) taken back by the true u_{ED->ES} lands on x when exact
            truth, zero = true_ddf[es][None].float().cpu(), torch.zeros_like(u_es_to_ed)
            heart = labels[0][None] > 0
            row["epe_comp_px"] = float(end_point_error(compose_displacements(truth, u_es_to_ed), zero, heart)[0])
            row["zero_motion_epe_comp_px"] = float(end_point_error(compose_displacements(truth, zero), zero, heart)[0])

    if u_ed_to_t is not None:
        u_ed_to_t = convert_to_tensor(u_ed_to_t, dtype=torch.float32, track_meta=False).cpu()
        tracked = propagate_labels(labels[0], u_ed_to_t)
        row.update(_label_scores("track", tracked[es - 1][None, None], es_labels, spacing))
        row["rmse_track"] = float(warped_rmse(warp_image(ed_frame, u_ed_to_t), later).mean())
        row.update(_field_scores("track", u_ed_to_t, tracked > 0))
        row.update(_lv_volume_columns(labels, torch.cat([labels[:1], tracked]), es, spacing, slice_thickness,
                                      label_mask))
        if true_ddf is not None:
            truth = true_ddf[es][None].float().cpu()
            heart = labels[es][None] > 0
            row["epe_px"] = float(end_point_error(u_ed_to_t[es - 1][None], truth, heart)[0])
            row["zero_motion_epe_px"] = float(end_point_error(torch.zeros_like(truth), truth, heart)[0])
            # one batch item per structure; an empty structure gives NaN (masked_mean)
            regions = torch.stack([labels[es] == label for label in range(1, len(STRUCTURES) + 1)])
            estimate = u_ed_to_t[es - 1][None].expand(len(STRUCTURES), -1, -1, -1)
            truths = truth.expand_as(estimate)
            row.update(per_structure("epe_px", end_point_error(estimate, truths, regions)))
            row.update(per_structure("zero_motion_epe_px", end_point_error(torch.zeros_like(truths), truths, regions)))
    return row


def _lv_volume_columns(
    labels: torch.Tensor,
    tracked: torch.Tensor,
    es: int,
    spacing: Sequence[float] | None,
    slice_thickness: float | None,
    label_mask: torch.Tensor | None,
) -> dict:
    """LV volume curves (tracked and reference), ED / ES volumes and EF of both, see the module docstring."""
    num_frames = labels.shape[0]
    if label_mask is None:
        label_mask = torch.zeros(num_frames, dtype=torch.bool)
        label_mask[[0, es]] = True
    label_mask = torch.as_tensor(label_mask, dtype=torch.bool).cpu()
    curves = {"voxels": ((tracked == _LV).flatten(1).sum(1).double(), (labels == _LV).flatten(1).sum(1).double())}
    if spacing is not None and slice_thickness is not None:
        geometry = [*spacing, slice_thickness]
        curves["ml"] = (structure_volume_curve(tracked, geometry, _LV), structure_volume_curve(labels, geometry, _LV))
    columns: dict = {}
    for suffix, (track_t, ref_t) in curves.items():  # mL last: the curves and EF kept are in mL where known
        track, ref = track_t.numpy(), np.where(label_mask.numpy(), ref_t.numpy(), np.nan)
        edv, esv_track, ef_track = ejection_fraction(track, ed=0, es=es)
        _, esv_ref, ef_ref = ejection_fraction(ref, ed=0, es=es)
        columns.update({f"lv_ed_{suffix}": edv, f"lv_es_track_{suffix}": esv_track, f"lv_es_ref_{suffix}": esv_ref})
    columns.update({
        "lv_ef_track": ef_track,
        "lv_ef_ref": ef_ref,
        "lv_ef_abs_error": abs(ef_track - ef_ref),
        "lv_volume_track": [float(v) for v in track],
        "lv_volume_ref": [float(v) for v in ref],
        "lv_volume_unit": "mL" if suffix == "ml" else "voxels",
    })
    return columns


def _timed(device: torch.device, amp: bool, call):
    """Run ``call()`` under autocast (bfloat16 on CPU, float16 on CUDA); return its result and the seconds taken."""
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=amp):
        out = call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


@torch.inference_mode()
def probabilistic_motion_fields(
    model: ProbabilisticMotionModel,
    image: torch.Tensor,
    device: torch.device | str = "cpu",
    amp: bool = False,
    orientation_ensemble: bool = False,
) -> dict:
    """Both motion fields of a cine slice from the probabilistic model: ``decode(encode(...))`` once.

    Posterior means, no sampling (as ``track``); the spatial smoothing uses the model's own spacing.

    Args:
        model: a ``ProbabilisticMotionModel`` (put in eval mode by the caller).
        image: ``(T, H, W)`` cine, ED first, ``(H, W)`` = ``model.spatial_size``.
        device: where the model runs.
        amp: autocast the model.
        orientation_ensemble: average both fields over the eight in-plane orientations of the cine
            (:func:`monai_cardiac.inferers.average_over_orientations`: each field turned back, components
            rotated / mirrored), which makes them exactly equivariant to how the cine was stored; 8 times the cost.

    Returns:
        ``{"u_ed_to_t": (T - 1, 2, H, W), "u_t_to_ed": (T - 1, 2, H, W), "seconds": float}``, float32 on the CPU.

    Raises:
        CineDataError: an image that is not ``(T >= 2, H, W)`` with the model's spatial size.
    """
    size = tuple(model.spatial_size)
    if image.ndim != 3 or image.shape[0] < 2 or tuple(image.shape[1:]) != size:
        raise CineDataError(
            f"the probabilistic motion model was built for {size} images (its dense layers fix the size): expected "
            f"a cine (T >= 2, {size[0]}, {size[1]}), got {tuple(image.shape)}; crop or resample to that size, or "
            "write the phantom at that spatial_size (its true motion must not be cropped)",
            "probabilistic_motion_fields(image)",
        )
    device = torch.device(device)
    frames = torch.as_tensor(image).to(device=device, dtype=torch.float32)

    def both_fields(cines: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``(1, N, H, W)`` -> ``(u_{ED->t}, u_{t->ED})`` stacked as ``(1, 2 (N - 1), 2, H, W)``."""
        out = model.decode(model.encode(cines[:, :1], cines[:, 1:]), cines[:, :1])
        return torch.cat([out["ddf"], out["inverse_ddf"]], dim=1), None

    if orientation_ensemble:
        fields, seconds = _timed(device, amp, lambda: average_over_orientations(both_fields, frames[None])[0])
    else:
        fields, seconds = _timed(device, amp, lambda: both_fields(frames[None])[0])
    steps = frames.shape[0] - 1
    return {"u_ed_to_t": fields[0, :steps].float().cpu(), "u_t_to_ed": fields[0, steps:].float().cpu(),
            "seconds": seconds}


@torch.inference_mode()
def joint_motion_fields(
    network: JointMotionSegNet,
    image: torch.Tensor,
    device: torch.device | str = "cpu",
    amp: bool = False,
    orientation_ensemble: bool = False,
) -> dict:
    """The motion field of a cine slice from the joint network's motion branch (target = ED frame).

    The network predicts ``ddf_to_target`` = ``u_{t->ED}`` only; it has no ``u_{ED->t}``. With a segmentation
    branch, the frames' class probabilities come too (what the segmentation term of
    :func:`~monai_cardiac.engines.refine_tracking` reads).

    Args:
        network: a ``JointMotionSegNet`` with its motion branch (put in eval mode by the caller).
        image: ``(T, H, W)`` cine, ED first, sides divisible by 16.
        device: where the network runs.
        amp: autocast the network.
        orientation_ensemble: average over the eight in-plane orientations, as the inference bundle runs it
            (:func:`monai_cardiac.inferers.orientation_averaged_joint_outputs`).

    Returns:
        ``{"u_ed_to_t": None, "u_t_to_ed": (T - 1, 2, H, W), "probabilities": (T, C, H, W) soft-max of every
        frame, ED first, or None without segmentation branch, "seconds": float}``, float32 on the CPU.

    Raises:
        ValueError: a network without motion branch.
        CineDataError: inputs the network rejects.
    """
    if not network.motion:
        raise ValueError("the joint network was built without its motion branch (motion=False): nothing to score.")
    device = torch.device(device)
    frames = torch.as_tensor(image).to(device=device, dtype=torch.float32)
    if orientation_ensemble:
        out, seconds = _timed(
            device, amp, lambda: orientation_averaged_joint_outputs(network, frames[None, :1], frames[None, 1:])
        )
    else:
        out, seconds = _timed(device, amp, lambda: network(frames[None, :1], frames[None, 1:]))
    logits = window_segmentation_logits(out)
    probabilities = None if logits is None else logits[0].float().softmax(1).cpu()
    return {"u_ed_to_t": None, "u_t_to_ed": out["ddf_to_target"][0].float().cpu(), "probabilities": probabilities,
            "seconds": seconds}


def motion_fields(network: torch.nn.Module, image: torch.Tensor, device: torch.device | str = "cpu",
                  amp: bool = False, orientation_ensemble: bool = False) -> dict:
    """Dispatch to :func:`probabilistic_motion_fields` or :func:`joint_motion_fields` by the network's class.

    ``orientation_ensemble``: see :func:`probabilistic_motion_fields` and :func:`joint_motion_fields`.

    Raises:
        TypeError: any other network.
    """
    if isinstance(network, ProbabilisticMotionModel):
        return probabilistic_motion_fields(network, image, device, amp, orientation_ensemble)
    if isinstance(network, JointMotionSegNet):
        return joint_motion_fields(network, image, device, amp, orientation_ensemble)
    raise TypeError(f"no motion adapter for {type(network).__name__}; expected ProbabilisticMotionModel or "
                    "JointMotionSegNet.")


def _slice_geometry(entry: Mapping, image) -> tuple[list[float] | None, float | None]:
    """In-plane spacing and slice thickness (mm) of a loaded slice, ``(None, None)`` where the spacing is unknown."""
    spacing, known = slice_spacing(image, entry)
    return ([float(s) for s in spacing[:2]], float(spacing[2])) if known else (None, None)


def _invert_timed(fields: torch.Tensor) -> tuple[torch.Tensor, float, bool]:
    """:func:`invert_displacement` of a sequence ``(T - 1, 2, H, W)``: the inverse, seconds, and convergence."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        inverse = invert_displacement(fields)
    converged = not any(issubclass(w.category, RuntimeWarning) for w in caught)
    return inverse, time.perf_counter() - start, converged


def evaluate_motion_entry(
    entry: Mapping,
    preprocessing: Callable[[Mapping], Mapping],
    fields_fn: Callable[[torch.Tensor, Sequence[float] | None], Mapping],
    invert_missing: bool = False,
) -> dict:
    """Preprocess one data-list entry, estimate its motion with ``fields_fn`` and score it.

    Args:
        entry: a per-slice entry (docs/conventions.md) whose ED and ES frames are labelled.
        preprocessing: a transform giving ``image`` / ``label`` ``(T, H, W)`` with ED first, and optionally
            ``label_mask``, ``dense_label`` and ``ddf`` (true ``u_{ED->t}``) on the same grid.
        fields_fn: ``fields_fn(image (T, H, W), spacing (sH, sW) in mm or None)`` returning
            ``{"u_ed_to_t", "u_t_to_ed", "seconds"}`` as :func:`motion_fields` does (either field may be ``None``).
        invert_missing: derive a missing direction by inverting the other (module docstring); ``False`` leaves
            its columns out.

    Returns:
        the row of :func:`evaluate_motion_sequence` with ``subject``, ``slice``, ``seconds`` and
        ``seconds_per_50_frames`` (and the inversion columns with ``invert_missing``); mm columns only where
        ``spacing_known``.
    """
    d = preprocessing(entry)
    dense, true_ddf = (d.get(k) if isinstance(d.get(k), torch.Tensor) else None for k in ("dense_label", "ddf"))
    image = convert_to_tensor(d["image"], dtype=torch.float32, track_meta=False)
    labels = convert_to_tensor(d["label"] if dense is None else dense, track_meta=False)
    label_mask = d.get("label_mask") if dense is None else torch.ones(image.shape[0], dtype=torch.bool)
    spacing, thickness = _slice_geometry(entry, d["image"])
    fields = dict(fields_fn(image, spacing))
    extra: dict = {}
    if invert_missing:
        extra["inverted"], extra["seconds_inversion"], extra["inversion_converged"] = "", 0.0, 1.0
        for missing, given in (("u_t_to_ed", "u_ed_to_t"), ("u_ed_to_t", "u_t_to_ed")):
            if fields.get(missing) is None and fields.get(given) is not None:
                fields[missing], seconds, converged = _invert_timed(torch.as_tensor(fields[given]).float())
                extra.update(inverted=missing, seconds_inversion=seconds, inversion_converged=float(converged))
    row = evaluate_motion_sequence(
        image, labels, int(d["es"]), fields.get("u_t_to_ed"), fields.get("u_ed_to_t"), spacing, true_ddf,
        None if label_mask is None else torch.as_tensor(label_mask), thickness,
    )
    row["seconds"] = float(fields["seconds"])
    row["seconds_per_50_frames"] = row["seconds"] * 50.0 / image.shape[0]
    return {"subject": entry["subject"], "slice": int(entry.get("slice", 0)), **row, **extra}


def evaluate_motion_datalist(
    network: torch.nn.Module,
    datalist: Sequence[dict],
    preprocessing,
    device: torch.device | str = "cpu",
    amp: bool = False,
    orientation_ensemble: bool = False,
) -> list[dict]:
    """Score every slice of a data list with :func:`motion_fields` and :func:`evaluate_motion_sequence`.

    Args:
        network: a trained ``ProbabilisticMotionModel`` or ``JointMotionSegNet`` (set to eval mode here).
        datalist: per-slice entries (docs/conventions.md) whose ED and ES frames are labelled.
        preprocessing: a transform giving ``image`` / ``label`` ``(T, H, W)`` with ED first, and optionally
            ``label_mask``, ``dense_label`` and ``ddf`` (true ``u_{ED->t}``) on the same grid.
        device: where the network runs.
        amp: autocast the network.
        orientation_ensemble: average the fields over the eight in-plane orientations (:func:`motion_fields`).

    Returns:
        one row per slice (:func:`evaluate_motion_entry`).

    Raises:
        CineDataError: a slice whose size the probabilistic model cannot take (naming the entry's image).
    """
    network.eval()
    rows = []
    for entry in datalist:

        def fields_fn(image: torch.Tensor, spacing, entry=entry) -> dict:
            if isinstance(network, ProbabilisticMotionModel) and tuple(image.shape[1:]) != tuple(network.spatial_size):
                raise CineDataError(
                    f"slice {entry.get('slice', 0)} is {tuple(image.shape[1:])} after preprocessing, but the "
                    f"probabilistic motion model takes {tuple(network.spatial_size)} (fixed by its dense layers); "
                    "crop to the model's roi_size, or for the phantom write it at that spatial_size",
                    entry.get("image"),
                )
            return motion_fields(network, image, device, amp, orientation_ensemble)

        rows.append(evaluate_motion_entry(entry, preprocessing, fields_fn))
    return rows


def motion_tables_markdown(summaries: Mapping[str, Mapping]) -> str:
    """Krebs et al.'s Fig. 2 quantities as Markdown tables from per-variant :func:`summarize_rows` summaries.

    Args:
        summaries: ``{variant name: summary}``; a variant without a column shows ``-``.

    Returns:
        Markdown: tracking (ED -> ES) and compensation (ES -> ED) Dice and HD95 with an "unregistered" row,
        the mean contour distances of both directions (where any summary has them), the motion-field table (RMSE,
        spatial and temporal gradient, folding, SDlogJ, LV EF error, time) and, where the true motion is known,
        the end-point errors.
    """
    names = ("LV", "Myo", "RV")
    unregistered = next((s for s in summaries.values() if "unwarped_dice_LV" in s), None)
    lines = []
    for prefix, title in (
        ("track", "Tracking: ED labels warped to ES with u_{ED->ES}, against the ES labels"),
        ("comp", "Compensation: ES labels warped to ED with u_{ES->ED}, against the ED labels "
                 "(joint bundle's Table 2 direction)"),
    ):
        lines += [f"{title}; mean (std) over slices, HD95 in mm over slices of known spacing", "",
                  "| model | Dice LV | Dice Myo | Dice RV | Dice mean | HD95 LV | HD95 Myo | HD95 RV |",
                  "|---|---|---|---|---|---|---|---|"]
        if unregistered is not None:
            cells = [mean_std(unregistered, f"unwarped_dice_{k}") for k in (*names, "mean")]
            cells += [mean_std(unregistered, f"unwarped_hd95_{k}", 2) for k in names]
            lines.append("| unregistered | " + " | ".join(cells) + " |")
        for name, s in summaries.items():
            if f"{prefix}_dice_LV" not in s:
                lines.append(f"| {name} | " + " | ".join(["n/a"] * 7) + " |")
                continue
            cells = [mean_std(s, f"{prefix}_dice_{k}") for k in (*names, "mean")]
            cells += [mean_std(s, f"{prefix}_hd95_{k}", 2) for k in names]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if any("track_mcd_LV" in s or "comp_mcd_LV" in s for s in summaries.values()):
        lines += ["Mean contour distance (mm) of the warped labels, mean (std) over slices of known spacing", "",
                  "| model | ED->ES LV | ED->ES Myo | ED->ES RV | ES->ED LV | ES->ED Myo | ES->ED RV |",
                  "|---|---|---|---|---|---|---|"]
        if unregistered is not None and "unwarped_mcd_LV" in unregistered:
            cells = [mean_std(unregistered, f"unwarped_mcd_{k}", 2) for k in names]
            lines.append("| unregistered | " + " | ".join(cells * 2) + " |")
        for name, s in summaries.items():
            cells = [mean_std(s, f"{d}_mcd_{k}", 2) for d in ("track", "comp") for k in names]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Motion fields, frames 1..T-1 (whole image unless said): RMSE of warped intensities ([0, 1]); spatial gradient "
        "(voxel/voxel) and temporal gradient (voxel/frame, ED zero field first) of u_{t->ED} (ED grid) and "
        "u_{ED->t}; % det J <= 0 over all frames (image / heart); SDlogJ (whole image, mean over frames); |EF error| "
        "of the tracked LV curve", "",
        "| model | RMSE ED->t | RMSE t->ED | grad_s u_{t->ED} | grad_t u_{t->ED} | grad_s u_{ED->t} "
        "| grad_t u_{ED->t} | % det J <= 0 u_{t->ED} | % in heart | % det J <= 0 u_{ED->t} | % in heart "
        "| SDlogJ u_{t->ED} | SDlogJ u_{ED->t} | LV EF abs error | s / 50 frames |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if unregistered is not None:
        rmse = mean_std(unregistered, "rmse_unregistered", 4)
        lines.append(f"| unregistered | {rmse} | {rmse} | " + " | ".join(["-"] * 12) + " |")
    for name, s in summaries.items():
        cells = [mean_std(s, "rmse_track", 4), mean_std(s, "rmse_comp", 4)]
        cells += [mean_std(s, f"grad_{k}_{d}", 4) for d in ("comp", "track") for k in ("s", "t")]
        cells += [mean_std(s, f"folding{h}_pct_{d}") for d in ("comp", "track") for h in ("", "_heart")]
        cells += [mean_std(s, f"sdlogj_{d}", 4) for d in ("comp", "track")]
        cells += [mean_std(s, "lv_ef_abs_error"), mean_std(s, "seconds_per_50_frames", 3)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if any("epe_px" in s or "epe_comp_px" in s for s in summaries.values()):
        lines += ["", "End-point error against the true motion (voxels): u_{ED->ES} inside the ES heart, u_{ES->ED} "
                  "inside the ED heart (composed with the truth), each with the error of assuming no motion", "",
                  "| model | EPE ED->ES | zero motion | EPE ES->ED | zero motion |", "|---|---|---|---|---|"]
        for name, s in summaries.items():
            columns = ("epe_px", "zero_motion_epe_px", "epe_comp_px", "zero_motion_epe_comp_px")
            cells = [mean_std(s, k) for k in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean(summary: Mapping | None, column: str) -> float:
    """Mean of a summary column, NaN where the variant or the column is absent."""
    if summary is None or column not in summary:
        return float("nan")
    return float(summary[column]["mean"])


def motion_target_checks(
    summaries: Mapping[str, Mapping], model: str = "TDS", baseline: str = "joint motion branch"
) -> dict:
    """The issue's targets for the probabilistic model against the joint network's motion branch.

    Dice and temporal gradient are compared on the fields both models have, ``u_{t->ED}`` (the joint network
    has no ``u_{ED->t}``): the mean over LV / Myo / RV of the ES -> ED warped-label Dice must be at least the
    baseline's, the temporal gradient of ``u_{t->ED}`` lower than the baseline's. Folding (% det J <= 0 over all
    frames and the whole image, both directions) must be exactly 0.0 %.

    Args:
        summaries: ``{variant name: summary}``.
        model: the variant held to the targets.
        baseline: the variant it is compared with.

    Returns:
        ``{"dice": bool | None, "temporal_gradient": bool | None, "folding": bool | None, "lines": [str]}``;
        ``None`` where a variant or a column is missing.
    """
    mine, base = summaries.get(model), summaries.get(baseline)

    def verdict(ok: bool | None) -> str:
        return "n/a (variant or column missing)" if ok is None else ("PASSED" if ok else "FAILED")

    dice, dice_base = _mean(mine, "comp_dice_mean"), _mean(base, "comp_dice_mean")
    grad, grad_base = _mean(mine, "grad_t_comp"), _mean(base, "grad_t_comp")
    folds = [_mean(mine, c) for c in ("folding_pct_comp", "folding_pct_track") if mine is not None and c in mine]
    result: dict = {
        "dice": None if math.isnan(dice) or math.isnan(dice_base) else dice >= dice_base,
        "temporal_gradient": None if math.isnan(grad) or math.isnan(grad_base) else grad < grad_base,
        "folding": None if not folds else max(folds) == 0.0,
    }
    track = _mean(mine, "track_dice_mean")
    result["lines"] = [
        f"target check, mean Dice over LV/Myo/RV (ES->ED, u_{{t->ED}}): {model} {dice:.4f} >= {baseline} "
        f"{dice_base:.4f}: {verdict(result['dice'])} ({model} tracking ED->ES Dice {track:.4f})",
        f"target check, temporal gradient of u_{{t->ED}}: {model} {grad:.4f} < {baseline} {grad_base:.4f} "
        f"voxel/frame: {verdict(result['temporal_gradient'])}",
        f"target check, % det J <= 0 of {model} (all frames, whole image, both directions): "
        f"{max(folds) if folds else float('nan'):.4f} % == 0.0 %: {verdict(result['folding'])}",
    ]
    return result


def plot_lv_volume_curves(rows_by_variant: Mapping[str, Sequence[Mapping]], output_file: str | Path,
                          max_slices: int = 4) -> bool:
    """LV volume curves of a few slices, one panel each: every variant's tracked curve and the labelled frames.

    The slices are those with the largest ED LV, one per subject, taken from the first variant with curves.

    Args:
        rows_by_variant: ``{variant: rows of evaluate_motion_datalist}``; variants without curves are left out.
        output_file: PNG path.
        max_slices: number of panels.

    Returns:
        whether a figure was written (not without matplotlib or without any curve).
    """
    with_curves = {n: rows for n, rows in rows_by_variant.items() if rows and "lv_volume_track" in rows[0]}
    if not with_curves:
        return False
    if not has_matplotlib:
        logger.info("matplotlib is not installed: LV volume curves not drawn")
        return False
    first = next(iter(with_curves.values()))
    order = sorted(range(len(first)), key=lambda i: -first[i]["lv_ed_voxels"])
    chosen, subjects = [], set()
    for i in order:
        if first[i]["subject"] not in subjects:
            chosen.append((first[i]["subject"], first[i]["slice"]))
            subjects.add(first[i]["subject"])
        if len(chosen) == max_slices:
            break
    fig = Figure(figsize=(4.0 * len(chosen), 3.4), dpi=100)
    for k, key in enumerate(chosen):
        ax = fig.add_subplot(1, len(chosen), k + 1)
        reference = None
        for name, rows in with_curves.items():
            row = next((r for r in rows if (r["subject"], r["slice"]) == key), None)
            if row is None:
                continue
            ax.plot(row["lv_volume_track"], "-", label=f"{name} (tracked)")
            reference = row
        assert reference is not None  # the slices are chosen from the first variant's rows
        ref = np.asarray(reference["lv_volume_ref"], dtype=float)
        labelled = np.flatnonzero(~np.isnan(ref))
        ax.plot(labelled, ref[labelled], "ko", label="labels")
        ax.set_title(f"{key[0]} slice {key[1]}", fontsize=9)
        ax.set_xlabel("frame (ED = 0)")
        ax.set_ylabel(f"LV ({reference['lv_volume_unit']})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(output_file))
    return True


def evaluate_motion_checkpoints(
    variants: Mapping[str, Mapping],
    datalist: Sequence[dict],
    preprocessing,
    device: torch.device | str = "cpu",
    amp: bool = False,
    output_dir: str | None = None,
    curve_slices: int = 4,
) -> dict[str, dict]:
    """Score trained variants (TDS, no TDS, joint motion branch) on one data list, tabulate and check the targets.

    Args:
        variants: ``{name: {"network": module, "checkpoint": path}}``; the checkpoint holds a state dict, bare or
            as ``{"model": state_dict}``. Variants whose checkpoint is missing are skipped with a message.
        datalist: per-slice entries with labelled ED and ES frames.
        preprocessing: the bundle's evaluation pipeline (cropped to the probabilistic model's size).
        device: where the networks run.
        amp: autocast the networks.
        output_dir: where ``rows_<name>.csv``, ``curves.json`` (LV volume curves), ``summary.json``,
            ``checks.json``, ``tables.md`` and ``lv_volume_curves.png`` go (``None``: not written).
        curve_slices: number of slices drawn in the PNG.

    Returns:
        ``{name: summary}`` of the variants scored.
    """
    all_rows, summaries = score_checkpoints(
        variants, lambda network: evaluate_motion_datalist(network, datalist, preprocessing, device, amp), device
    )
    tables = motion_tables_markdown(summaries)
    checks = motion_target_checks(summaries)
    tables += "\n" + "\n".join(f"- {line}" for line in checks["lines"]) + "\n"
    logger.info(tables)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, rows in all_rows.items():
            write_rows_csv(out / f"rows_{name}.csv", rows, exclude=_CURVE_KEYS)
        curves = {name: [{k: r[k] for k in ("subject", "slice", *_CURVE_KEYS) if k in r} for r in rows]
                  for name, rows in all_rows.items()}
        (out / "curves.json").write_text(json.dumps(curves, indent=1))
        (out / "summary.json").write_text(json.dumps(summaries, indent=1))
        (out / "checks.json").write_text(json.dumps(checks, indent=1))
        (out / "tables.md").write_text(tables)
        plot_lv_volume_curves(all_rows, out / "lv_volume_curves.png", curve_slices)
    return summaries


def _gate_entry(value: float, bound: float, upper: bool) -> dict:
    """One gated figure of :func:`report_phantom_motion`: met when ``value <= bound`` (``upper``) or
    ``value >= bound``; a NaN value is never met."""
    passed = bool(value <= bound) if upper else bool(value >= bound)
    return {"value": float(value), "bound": float(bound), "upper": upper, "passed": passed}


def report_phantom_motion(
    network: torch.nn.Module,
    datalist: Sequence[dict],
    device: torch.device | str = "cpu",
    output_file: str | None = None,
    max_epe_ratio: float = 0.5,
    amp: bool = False,
    epe_region: str = "heart",
    min_dice_lv: float | None = None,
    max_folding_pct: float | None = None,
) -> dict:
    """Score a trained motion model on held-out phantom slices, print the figures and save them.

    The acceptance figure: the end-point error of the estimated ``u_{ED->ES}`` inside the ES heart against the
    error of assuming no motion (for a joint network, which has no ``u_{ED->t}``, its ``u_{ES->ED}`` composed with
    the truth inside the ED heart). The slices are scored on the file's grid
    (:func:`~monai_cardiac.engines.joint_evaluation.phantom_evaluation_preprocessing`: no crop, so the true motion
    stays valid), so a probabilistic model must have been built for the phantom's size.

    Args:
        network: the trained network.
        datalist: held-out phantom slices (entries carry ``dense_label`` and ``ddf``).
        device: where the network runs.
        output_file: JSON file for rows, summary and verdict (``None``: do not write).
        max_epe_ratio: largest allowed ratio of the end-point error to the zero-motion error inside
            ``epe_region``.
        amp: autocast the network.
        epe_region: where the gated ratio is taken: ``"heart"`` (the whole ES heart, or ED heart for a joint
            network) or, for a model with ``u_{ED->t}``, one ES structure of ``STRUCTURES`` (``"Myo"``: the gate
            of intensity-driven models, which cannot see motion inside a uniform blood pool).
        min_dice_lv: also require the mean warped-label Dice of the LV to reach this (``None``: not gated).
        max_folding_pct: also require the mean % of non-positive Jacobian determinants (whole image) to be at
            most this (``None``: not gated).

    Returns:
        ``{"rows", "summary", "num_slices", "epe_ratio", "gate", "passed"}`` (``gate``: each gated figure with
        its value, bound and outcome), and for a model with ``u_{ED->t}`` ``"epe_ratio_per_structure"``
        (``{"RV", "Myo", "LV"}``: the same ratio inside each ES structure). ``epe_ratio`` is the whole heart's,
        printed and saved whatever the region gated.

    Raises:
        CineDataError: phantom slices of another size than the probabilistic model's.
        ValueError: an ``epe_region`` other than ``"heart"`` and ``STRUCTURES``, or a structure for a model
            without ``u_{ED->t}``.
    """
    if epe_region != "heart" and epe_region not in STRUCTURES:
        raise ValueError(f"epe_region must be 'heart' or one of {STRUCTURES}, got {epe_region!r}.")
    rows = evaluate_motion_datalist(network, datalist, phantom_evaluation_preprocessing(), device, amp)
    summary = summarize_rows(rows)
    result: dict = {"rows": rows, "summary": summary, "num_slices": len(rows), "gate": {}, "passed": False}
    direction = "track" if "epe_px" in summary else "comp"
    if epe_region != "heart" and direction != "track":
        raise ValueError(f"epe_region {epe_region!r} needs a model with u_{{ED->t}}; this one gives u_{{t->ED}} only.")
    epe_key, zero_key = ("epe_px", "zero_motion_epe_px") if direction == "track" else ("epe_comp_px",
                                                                                      "zero_motion_epe_comp_px")
    if epe_key in summary:
        epe, zero = summary[epe_key]["mean"], summary[zero_key]["mean"]
        result["epe_ratio"] = epe / zero if zero > 0 else float("nan")
        name = "ED->ES (u_{ED->ES}, ES heart)" if direction == "track" else "ES->ED (u_{ES->ED}, ED heart)"
        logger.info(f"held-out phantom ({len(rows)} slices): {name} end-point error {epe:.3f} px vs zero motion "
              f"{zero:.3f} px, ratio {result['epe_ratio']:.3f}; warped Dice "
              f"LV {_mean(summary, f'{direction}_dice_LV'):.3f} Myo {_mean(summary, f'{direction}_dice_Myo'):.3f} "
              f"RV {_mean(summary, f'{direction}_dice_RV'):.3f} (unregistered LV "
              f"{_mean(summary, 'unwarped_dice_LV'):.3f}); folding {_mean(summary, f'folding_pct_{direction}'):.3f} % "
              f"(heart {_mean(summary, f'folding_heart_pct_{direction}'):.3f} %)")
        if direction == "track":
            result["epe_ratio_per_structure"] = {
                name: _mean(summary, f"epe_px_{name}") / _mean(summary, f"zero_motion_epe_px_{name}")
                for name in STRUCTURES
            }
            logger.info("end-point error / zero motion per ES structure: " + ", ".join(
                f"{name} {ratio:.3f}" for name, ratio in result["epe_ratio_per_structure"].items()))
        gated_ratio = result["epe_ratio"] if epe_region == "heart" else result["epe_ratio_per_structure"][epe_region]
        result["gate"][f"epe_ratio_{epe_region}"] = _gate_entry(gated_ratio, max_epe_ratio, upper=True)
        if min_dice_lv is not None:
            result["gate"]["dice_LV"] = _gate_entry(_mean(summary, f"{direction}_dice_LV"), min_dice_lv, upper=False)
        if max_folding_pct is not None:
            result["gate"]["folding_pct"] = _gate_entry(_mean(summary, f"folding_pct_{direction}"), max_folding_pct,
                                                        upper=True)
        result["passed"] = all(entry["passed"] for entry in result["gate"].values())
        logger.info("gate: " + ", ".join(
            f"{key} {entry['value']:.3f} {'<=' if entry['upper'] else '>='} {entry['bound']} "
            f"({'met' if entry['passed'] else 'missed'})" for key, entry in result["gate"].items()))
    logger.info(f"held-out phantom verdict: {'PASSED' if result['passed'] else 'FAILED'}")
    if output_file is not None:
        Path(output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(output_file).write_text(json.dumps(result, indent=1))
    return result
