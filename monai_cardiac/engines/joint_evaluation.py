"""Evaluation of a joint motion / segmentation network on whole cine slices (Qin et al., Tables 1 and 2).

One row per slice: segmentation Dice per structure on the labelled frames, and the motion branch scored
as in the paper, by warping the ES labels onto the ED frame with the estimated ``u_{ES->ED}`` (nearest
neighbour) and comparing them with the ED labels (Dice, mean contour distance, Hausdorff distance), plus the
share of folding voxels of that field inside the ED heart and, where the true motion is known (the
phantom), the end-point error of the ED -> ES motion against the zero-motion error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, ScaleIntensityRangePercentilesd

from monai_cardiac.checkpoints import load_model_weights
from monai_cardiac.data.nifti import NUM_CLASSES, STRUCTURES
from monai_cardiac.displacement import compose_displacements, warp_labels
from monai_cardiac.engines.engine_utils import slice_spacing
from monai_cardiac.inferers import orientation_averaged_joint_outputs
from monai_cardiac.metrics import (
    compute_contour_distance,
    compute_dice,
    end_point_error,
    folding_fraction,
    jacobian_determinant,
    nanmean_excluded,
)
from monai_cardiac.networks import window_segmentation_logits
from monai_cardiac.transforms import LoadCined, ReorderFromEDd

__all__ = [
    "evaluate_joint_checkpoints",
    "evaluate_joint_datalist",
    "evaluate_joint_sequence",
    "joint_tables_markdown",
    "mean_std",
    "per_structure",
    "phantom_evaluation_preprocessing",
    "report_phantom_joint",
    "score_checkpoints",
    "summarize_rows",
    "volume_rows",
    "write_rows_csv",
]

logger = logging.getLogger(__name__)


def per_structure(prefix: str, values: torch.Tensor) -> dict[str, float]:
    """``{prefix_RV: .., prefix_Myo: .., prefix_LV: ..}`` from a ``(1, 3)`` tensor."""
    return {f"{prefix}_{name}": float(v) for name, v in zip(STRUCTURES, values.reshape(-1).tolist())}


@torch.inference_mode()
def evaluate_joint_sequence(
    network: torch.nn.Module,
    image: torch.Tensor,
    labels: torch.Tensor,
    es: int,
    spacing: Sequence[float] | None = None,
    true_ddf: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    amp: bool = False,
    orientation_ensemble: bool = False,
) -> dict[str, float]:
    """Score one cine slice whose frame 0 is ED.

    Args:
        network: a ``JointMotionSegNet`` (either branch may be off; the other branch's columns are absent).
        image: ``(T, H, W)`` intensities in [0, 1], ED first.
        labels: ``(T, H, W)`` class ids; frames 0 (ED) and ``es`` must be labelled.
        es: ES frame index (>= 1).
        spacing: in-plane spacing ``(sH, sW)`` in mm; ``None`` when unknown, then the mm columns are NaN.
        true_ddf: ``(T, 2, H, W)`` true ``u_{ED->t}`` in voxels, if known (phantom): adds ``epe`` columns.
        device: where the network runs.
        amp: run the network under autocast (bfloat16 on CPU, float16 on CUDA).
        orientation_ensemble: average the network over the eight in-plane orientations, as the inference bundle
            runs it (:func:`monai_cardiac.inferers.orientation_averaged_joint_outputs`).

    Returns:
        the row: ``seg_dice_<structure>`` (mean of ED and ES), ``warp_dice_<s>``, ``warp_mcd_<s>``,
        ``seg_<ed|es>_{overlap,pred,ref}_<s>`` (voxel counts of the predicted and reference structure and their
        overlap, for :func:`volume_rows`), ``warp_hd_<s>`` (mm), ``unwarped_dice_<s>`` (ES labels against ED labels
        without motion),
        ``folding_pct`` (% of ED heart voxels with det J <= 0), ``epe_px`` and ``zero_motion_epe_px`` (error of
        the ED -> ES motion of the ED heart's voxels: each voxel moved by the estimated ``u_{ES->ED}`` and brought
        back by the true ``u_{ED->ES}`` should land where it started; voxels), ``seconds`` (network time) and
        ``frames``.

    Raises:
        ValueError: ``es`` outside ``1..T-1`` or shapes that disagree.
    """
    num_frames = image.shape[0]
    if not 1 <= es < num_frames:
        raise ValueError(f"es must lie in 1..{num_frames - 1}, got {es}")
    if labels.shape != image.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and image {tuple(image.shape)} must have the same shape")
    device = torch.device(device)
    frames = image.to(device=device, dtype=torch.float32)
    labels = labels.round().long().cpu()
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=amp):
        if orientation_ensemble:
            out = orientation_averaged_joint_outputs(network, frames[None, :1], frames[None, 1:])
        else:
            out = network(frames[None, :1], frames[None, 1:])
    seconds = time.perf_counter() - start
    row: dict[str, float] = {"frames": float(num_frames), "seconds": seconds}
    ed_es = labels[[0, es], None]

    logits = window_segmentation_logits(out)
    if logits is not None:
        pred = logits[0].argmax(1).cpu()
        dice = compute_dice(pred[[0, es], None], ed_es, num_classes=NUM_CLASSES).mean(0)
        row.update(per_structure("seg_dice", dice))
        for phase, frame in (("ed", 0), ("es", es)):  # voxel counts, for the per-volume Dice and EF
            for index, name in enumerate(STRUCTURES, start=1):
                predicted, reference = pred[frame] == index, labels[frame] == index
                row[f"seg_{phase}_overlap_{name}"] = float((predicted & reference).sum())
                row[f"seg_{phase}_pred_{name}"] = float(predicted.sum())
                row[f"seg_{phase}_ref_{name}"] = float(reference.sum())

    if "ddf_to_target" in out:
        u_es_to_ed = out["ddf_to_target"][0, es - 1].float().cpu()[None]  # (1, 2, H, W) on the ED grid
        warped = warp_labels(labels[es][None, None], u_es_to_ed)
        ed = labels[0][None, None]
        row.update(per_structure("warp_dice", compute_dice(warped, ed, num_classes=NUM_CLASSES)))
        row.update(per_structure("unwarped_dice", compute_dice(labels[es][None, None], ed, num_classes=NUM_CLASSES)))
        for metric in ("mcd", "hd"):
            if spacing is None:
                values = torch.full((1, len(STRUCTURES)), float("nan"))
            else:
                values = compute_contour_distance(warped, ed, metric, spacing=spacing, num_classes=NUM_CLASSES)
            row.update(per_structure(f"warp_{metric}", values))
        det = jacobian_determinant(u_es_to_ed)
        row["folding_pct"] = float(folding_fraction(det, (ed[:, 0] > 0)).reshape(-1)[0])
        if true_ddf is not None:
            # The network's u_{ES->ED} moves each ED voxel x to its ES position y = x + u(x); the true motion
            # u_{ED->ES} (on the ES grid) brings y back to y + v(y), which is x when the estimate is exact. The
            # error |u(x) + v(x + u(x))| needs no inversion of either field (inverting a field with strong
            # local compression or folds is unreliable); with u = 0 it is |v(x)|, the zero-motion error.
            truth = true_ddf[es][None].float()
            heart = labels[0][None] > 0
            zero = torch.zeros_like(u_es_to_ed)
            row["epe_px"] = float(end_point_error(compose_displacements(truth, u_es_to_ed), zero, heart).reshape(-1)[0])
            row["zero_motion_epe_px"] = float(
                end_point_error(compose_displacements(truth, zero), zero, heart).reshape(-1)[0]
            )
    return row


def volume_rows(rows: Iterable[Mapping]) -> list[dict[str, float]]:
    """Per-patient segmentation scores from per-slice rows: the ACDC convention of one 3D Dice per volume.

    For each subject and phase (ED, ES) the voxel counts of its slices are added up, so a structure's Dice is
    ``2 sum(overlap) / (sum(pred) + sum(ref))`` over the whole stack (NaN for a phase where both are empty);
    ``vol_dice_<s>`` is the mean of ED and ES. LV ejection fraction from voxel counts (slice spacing cancels, so
    no spacing is needed): ``lv_ef_pred``, ``lv_ef_ref`` and ``lv_ef_abs_error`` in percentage points (NaN when
    the reference LV is empty at ED).

    Args:
        rows: rows of :func:`evaluate_joint_sequence` with ``subject`` and the ``seg_<phase>_*`` count columns.

    Returns:
        one row per subject, in first-seen order: ``subject``, ``slices``, ``vol_dice_<s>``, EF columns.
    """
    by_subject: dict[str, list[Mapping]] = {}
    for row in rows:
        if "seg_ed_ref_LV" in row:
            by_subject.setdefault(str(row["subject"]), []).append(row)
    result = []
    for subject, subject_rows in by_subject.items():
        def total(column: str) -> float:
            return float(sum(r[column] for r in subject_rows))

        out: dict[str, Any] = {"subject": subject, "slices": float(len(subject_rows))}
        for name in STRUCTURES:
            dice = []
            for phase in ("ed", "es"):
                denominator = total(f"seg_{phase}_pred_{name}") + total(f"seg_{phase}_ref_{name}")
                dice.append(2 * total(f"seg_{phase}_overlap_{name}") / denominator if denominator else float("nan"))
            out[f"vol_dice_{name}"] = float(np.nanmean(dice)) if not all(np.isnan(dice)) else float("nan")
        for kind in ("pred", "ref"):
            ed, es = total(f"seg_ed_{kind}_LV"), total(f"seg_es_{kind}_LV")
            out[f"lv_ef_{kind}"] = 100.0 * (ed - es) / ed if ed else float("nan")
        out["lv_ef_abs_error"] = abs(out["lv_ef_pred"] - out["lv_ef_ref"])
        result.append(out)
    return result


def summarize_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and count of each column over rows, NaN values left out and counted.

    Args:
        rows: rows from :func:`evaluate_joint_sequence` (or any dicts); only numeric columns are summarised.

    Returns:
        ``{column: {"mean", "std", "n", "excluded"}}``.
    """
    rows = list(rows)
    columns = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and k != "slice"})
    summary = {}
    for column in columns:
        values = np.array([r.get(column, float("nan")) for r in rows], dtype=np.float64)
        mean, excluded = nanmean_excluded(values)
        defined = values[~np.isnan(values)]
        summary[column] = {
            "mean": mean,
            "std": float(defined.std()) if defined.size else float("nan"),
            "n": int(defined.size),
            "excluded": excluded,
        }
    return summary


def evaluate_joint_datalist(
    network: torch.nn.Module,
    datalist: Sequence[dict],
    preprocessing,
    device: torch.device | str = "cpu",
    amp: bool = False,
    orientation_ensemble: bool = False,
) -> list[dict]:
    """Score every slice of a data list with :func:`evaluate_joint_sequence`.

    Args:
        network: the trained network (set to eval mode here).
        datalist: per-slice entries (docs/conventions.md) whose ED and ES frames are labelled.
        preprocessing: a transform giving ``image`` / ``label`` ``(T, H, W)`` with ED first, and optionally
            ``dense_label`` and ``ddf`` (true ``u_{ED->t}``) on the same grid.
        device: where the network runs.
        amp: autocast the network.
        orientation_ensemble: see :func:`evaluate_joint_sequence`.

    Returns:
        one row per slice, with ``subject`` and ``slice`` added; mm columns only where ``spacing_known``.
    """
    network.eval()
    rows = []
    for entry in datalist:
        d = preprocessing(entry)
        # dense labels and true motion only where the pipeline loaded them (otherwise the keys hold paths)
        dense, true_ddf = (d.get(k) if isinstance(d.get(k), torch.Tensor) else None for k in ("dense_label", "ddf"))
        image, labels = d["image"], d["label"] if dense is None else dense
        voxel, known = slice_spacing(d["image"], entry)
        spacing = [float(v) for v in voxel[:2]] if known else None
        row = evaluate_joint_sequence(
            network, torch.as_tensor(image), torch.as_tensor(labels), int(d["es"]), spacing, true_ddf, device, amp,
            orientation_ensemble,
        )
        rows.append({"subject": entry["subject"], "slice": int(entry.get("slice", 0)), **row})
    return rows


def phantom_evaluation_preprocessing():
    """Pipeline for scoring on the phantom: every frame's labels and the true motion, on the file's grid.

    No crop or resampling, so the true displacements stay valid; intensities as in training.
    """
    return Compose(
        [
            LoadCined(),
            ReorderFromEDd(keys=["image", "label", "dense_label"]),
            ScaleIntensityRangePercentilesd("image", lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True),
        ]
    )


def report_phantom_joint(
    network: torch.nn.Module,
    datalist: Sequence[dict],
    device: torch.device | str = "cpu",
    output_file: str | None = None,
    min_lv_dice: float = 0.90,
    max_epe_ratio: float = 0.5,
) -> dict:
    """Score a trained joint network on held-out phantom slices, print the figures and save them.

    The bundle's acceptance figures: segmentation Dice of the LV, and the end-point error of the ED -> ES
    motion (inside the ED heart) against the error of assuming no motion.

    Args:
        network: the trained network.
        datalist: held-out phantom slices (entries carry ``dense_label`` and ``ddf``).
        device: where the network runs.
        output_file: JSON file for rows, summary and verdicts (``None``: do not write).
        min_lv_dice: LV Dice the model must reach.
        max_epe_ratio: largest allowed ratio of the motion's end-point error to the zero-motion error.

    Returns:
        ``{"rows", "summary", "lv_dice", "epe_ratio", "passed"}``.
    """
    rows = evaluate_joint_datalist(network, datalist, phantom_evaluation_preprocessing(), device)
    summary = summarize_rows(rows)
    result: dict = {"rows": rows, "summary": summary, "num_slices": len(rows)}
    checks = []
    if "seg_dice_LV" in summary:
        result["lv_dice"] = summary["seg_dice_LV"]["mean"]
        checks.append(result["lv_dice"] >= min_lv_dice)
        logger.info(f"held-out phantom ({len(rows)} slices): segmentation Dice LV {result['lv_dice']:.3f} "
              f"Myo {summary['seg_dice_Myo']['mean']:.3f} RV {summary['seg_dice_RV']['mean']:.3f} "
              f"(target LV >= {min_lv_dice})")
    if "epe_px" in summary:
        epe, zero = summary["epe_px"]["mean"], summary["zero_motion_epe_px"]["mean"]
        result["epe_ratio"] = epe / zero
        checks.append(result["epe_ratio"] <= max_epe_ratio)
        logger.info(f"held-out phantom: ED->ES end-point error {epe:.3f} px vs zero motion {zero:.3f} px, "
              f"ratio {result['epe_ratio']:.3f} (target <= {max_epe_ratio}); "
              f"warped ES->ED Dice LV {summary['warp_dice_LV']['mean']:.3f}, "
              f"folding {summary['folding_pct']['mean']:.3f} %")
    result["passed"] = bool(checks) and all(checks)
    logger.info(f"held-out phantom verdict: {'PASSED' if result['passed'] else 'FAILED'}")
    if output_file is not None:
        Path(output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(output_file).write_text(json.dumps(result, indent=1))
    return result


def mean_std(summary: Mapping, column: str, digits: int = 3) -> str:
    """``mean (std)`` of a summary column, ``-`` where absent or undefined."""
    stats = summary.get(column)
    if stats is None or np.isnan(stats["mean"]):
        return "-"
    return f"{stats['mean']:.{digits}f} ({stats['std']:.{digits}f})"


def joint_tables_markdown(summaries: dict[str, dict]) -> str:
    """The shape of Qin et al.'s Tables 1 and 2 from per-variant summaries of :func:`summarize_rows`.

    Args:
        summaries: ``{variant name: summary}``; variants without a column show ``-``.

    Returns:
        Markdown: Table 1 (segmentation Dice), Table 2 (ES -> ED warped labels: MCD, HD in mm, Dice, % det J
        <= 0) with an "unregistered" row, and the network time per slice scaled to 50 frames.
    """
    lines = ["Table 1: segmentation Dice, mean (std) over slices, ED and ES frames", "",
             "| model | LV | Myo | RV |", "|---|---|---|---|"]
    for name, s in summaries.items():
        if "seg_dice_LV" in s:
            lines.append(f"| {name} | " + " | ".join(mean_std(s, f"seg_dice_{k}") for k in ("LV", "Myo", "RV")) + " |")
    if any("vol_dice_LV" in s for s in summaries.values()):
        lines += ["", "Table 1b: segmentation Dice per volume (ACDC convention: one 3D Dice per patient and phase, "
                  "mean of ED and ES) and LV ejection fraction |error| in points, mean (std) over patients", "",
                  "| model | LV | Myo | RV | LV EF abs error |", "|---|---|---|---|---|"]
        for name, s in summaries.items():
            if "vol_dice_LV" in s:
                cells = (
                    [mean_std(s, f"vol_dice_{k}") for k in ("LV", "Myo", "RV")] + [mean_std(s, "lv_ef_abs_error", 1)]
                )
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Table 2: ES labels warped onto ED, against the ED labels; MCD and HD in mm (slices of known "
              "spacing where both masks are non-empty)", "",
              "| model | MCD LV | MCD Myo | MCD RV | HD LV | HD Myo | HD RV | Dice LV | Dice Myo | Dice RV "
              "| % det J <= 0 | s / 50 frames |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    unregistered = next((s for s in summaries.values() if "unwarped_dice_LV" in s), None)
    if unregistered is not None:
        lines.append("| unregistered | - | - | - | - | - | - | "
                     + " | ".join(mean_std(unregistered, f"unwarped_dice_{k}") for k in ("LV", "Myo", "RV"))
                     + " | - | - |")
    for name, s in summaries.items():
        if "warp_dice_LV" not in s:
            continue
        cells = [mean_std(s, f"warp_{m}_{k}", 2) for m in ("mcd", "hd") for k in ("LV", "Myo", "RV")]
        cells += [mean_std(s, f"warp_dice_{k}") for k in ("LV", "Myo", "RV")]
        cells += [mean_std(s, "folding_pct"), mean_std(s, "seconds_per_50_frames", 2)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def score_checkpoints(
    variants: Mapping[str, Mapping], score: Callable[[torch.nn.Module], list[dict]], device: torch.device | str = "cpu"
) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Load each trained variant and score it; variants whose checkpoint is missing are skipped with a message.

    Args:
        variants: ``{name: {"network": module, "checkpoint": path}}``; the checkpoint holds a state dict, bare or
            as ``{"model": state_dict}``.
        score: maps a loaded network to its rows (one dict per slice).
        device: where the networks are put.

    Returns:
        ``({name: rows}, {name: summarize_rows(rows)})`` for the variants scored.
    """
    all_rows, summaries = {}, {}
    for name, variant in variants.items():
        path = Path(variant["checkpoint"])
        if not path.is_file():
            logger.info(f"{name}: no checkpoint at {path}, skipped")
            continue
        network = variant["network"].to(device)
        load_model_weights(network, path, device)
        rows = score(network)
        all_rows[name], summaries[name] = rows, summarize_rows(rows)
    return all_rows, summaries


def write_rows_csv(path: str | Path, rows: Sequence[Mapping], exclude: Iterable[str] = ()) -> None:
    """Rows as CSV, one column per key in first-seen order, ``exclude``-d keys left out (e.g. per-frame curves)."""
    excluded = set(exclude)
    columns = list(dict.fromkeys(k for r in rows for k in r if k not in excluded))
    text = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    Path(path).write_text("\n".join(text) + "\n")


def evaluate_joint_checkpoints(
    variants: dict[str, dict],
    datalist: Sequence[dict],
    preprocessing,
    device: torch.device | str = "cpu",
    amp: bool = False,
    output_dir: str | None = None,
    orientation_ensemble: bool = False,
) -> dict[str, dict]:
    """Score trained variants (joint, motion only, segmentation only) on one data list and tabulate them.

    Args:
        variants: ``{name: {"network": module, "checkpoint": path}}``; the checkpoint holds
            ``{"model": state_dict}`` as the bundle saves it. Variants whose checkpoint is missing are skipped
            with a message.
        datalist: per-slice entries with labelled ED and ES frames.
        preprocessing: the bundle's evaluation pipeline.
        device: where the networks run.
        amp: autocast the networks.
        output_dir: where ``rows_<name>.csv``, ``summary.json`` and ``tables.md`` go (``None``: not written).
        orientation_ensemble: see :func:`evaluate_joint_sequence`.

    Returns:
        ``{name: summary}``.
    """
    def score(network: torch.nn.Module) -> list[dict]:
        rows = evaluate_joint_datalist(network, datalist, preprocessing, device, amp, orientation_ensemble)
        for row in rows:
            row["seconds_per_50_frames"] = row["seconds"] * 50.0 / row["frames"]
        return rows

    all_rows, summaries = score_checkpoints(variants, score, device)
    for name, rows in all_rows.items():  # per-patient columns join the per-slice ones (their names differ)
        summaries[name].update(summarize_rows(volume_rows(rows)))
    tables = joint_tables_markdown(summaries)
    logger.info(tables)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, rows in all_rows.items():
            write_rows_csv(out / f"rows_{name}.csv", rows)
            write_rows_csv(out / f"volumes_{name}.csv", volume_rows(rows))
        (out / "summary.json").write_text(json.dumps(summaries, indent=1))
        (out / "tables.md").write_text(tables)
    return summaries
