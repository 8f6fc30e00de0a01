"""Motion reconstruction from subsets of frames and motion transport (Krebs et al., STACOM 2019, Sec. 3.2, Fig. 4).

Time convention (that of :class:`~monai_cardiac.networks.ProbabilisticMotionModel`): a cine slice with ED first
(``ReorderFromEDd``) is split into the moving ED frame ``cine[0]`` and the ``T`` frames after it,
``fixed = cine[1:]``. Step ``i`` (0-based index into ``fixed``) is cine frame ``i + 1`` (0-based, ED = 0) at
normalised time ``(i + 1) / T``; ED sits at time 0 with velocity ``v_0 = 0`` and is always given.

Reconstruction study (Fig. 4, left): for every labelled slice the model tracks the whole sequence (all steps
given); its LV volume curve (the ED LV mask warped to every frame) is the reference. For each subset of
:data:`SUBSETS` the full motion is then recovered in three ways, and each LV volume curve is compared with the
tracking curve (mean absolute difference over the ``T`` frames after ED):

- ``model``: :meth:`~monai_cardiac.networks.ProbabilisticMotionModel.reconstruct`: posterior codes at the given
  steps, prior samples elsewhere (the same draw for all slices of one volume, see :func:`volume_generator`);
- ``linear`` / ``cubic``: the tracking velocities ``v_t`` at the given steps interpolated in time
  (:func:`interpolate_velocities`), exponentiated with the model's ``exponentiation`` (scaling and squaring)
  and used to warp the ED mask.

Motion transport (Fig. 4, right, :func:`transport_figure`): the motion matrix of a source slice decoded on the
ED frame of a target slice.
"""

from __future__ import annotations

import csv
import json
import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy, convert_to_tensor, look_up_option, optional_import
from scipy.interpolate import CubicSpline, make_interp_spline

from monai_cardiac.checkpoints import load_model_weights
from monai_cardiac.data.nifti import LABEL_IDS
from monai_cardiac.displacement import propagate_labels
from monai_cardiac.engines.engine_utils import slice_spacing
from monai_cardiac.engines.joint_evaluation import summarize_rows
from monai_cardiac.errors import CineDataError
from monai_cardiac.metrics.volume import ejection_fraction, structure_volume_curve
from monai_cardiac.networks import ProbabilisticMotionModel

Figure, _ = optional_import("matplotlib.figure", name="Figure")

__all__ = [
    "INTERPOLATION_KINDS",
    "METHODS",
    "SUBSETS",
    "interpolate_velocities",
    "reconstruction_curves",
    "reconstruction_study",
    "reconstruction_tables_markdown",
    "select_slice",
    "subset_indices",
    "transport_figure",
    "volume_generator",
]

logger = logging.getLogger(__name__)

LV_LABEL = LABEL_IDS["LV"]
INTERPOLATION_KINDS = ("linear", "cubic")
METHODS = ("model", *INTERPOLATION_KINDS)


def _only_the_10th(num_steps: int) -> list[int] | None:
    """Cine frame 10 counted from ED = frame 1, i.e. step 8; ``None`` (skip) for sequences shorter than that."""
    return [8] if num_steps > 8 else None


#: Named subsets of the steps after ED as functions of ``T``: the 0-based indices into ``fixed = cine[1:]``
#: (step ``i`` is cine frame ``i + 1``, ED = cine frame 0 is always given), or ``None`` where the subset does
#: not exist for that ``T``. "every 2nd" gives cine frames 2, 4, ... (steps 1, 3, ...); "every 5th" cine frames
#: 5, 10, ... (steps 4, 9, ...); "first five" the five frames after ED (steps 0-4); "only the 10th" the 10th
#: frame counting ED as the 1st (step 8); "none (sampling)" no frame: the model samples the whole motion.
SUBSETS: dict[str, Callable[[int], list[int] | None]] = {
    "every 2nd": lambda num_steps: list(range(1, num_steps, 2)),
    "every 5th": lambda num_steps: list(range(4, num_steps, 5)),
    "first five": lambda num_steps: list(range(min(5, num_steps))),
    "only the 10th": _only_the_10th,
    "none (sampling)": lambda num_steps: [],
}


def subset_indices(name: str, num_steps: int) -> list[int] | None:
    """Given steps of the subset ``name`` of :data:`SUBSETS` for a sequence with ``num_steps`` frames after ED.

    Args:
        name: a key of :data:`SUBSETS`.
        num_steps: ``T``, frames after ED.

    Returns:
        sorted 0-based indices into ``fixed = cine[1:]``, or ``None`` where the subset does not exist for ``T``.

    Raises:
        ValueError: unknown ``name`` or ``num_steps < 1``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}.")
    return look_up_option(name, SUBSETS)(num_steps)


def _given_mask(given: NdarrayOrTensor | Sequence[int], num_steps: int, source: str) -> np.ndarray:
    """``(T,)`` bool mask from a bool mask or a sequence of step indices."""
    values = convert_to_numpy(given, wrap_sequence=True)
    if values.size == 0:
        return np.zeros(num_steps, dtype=bool)
    if values.dtype == bool:
        if values.shape != (num_steps,):
            raise CineDataError(
                f"a bool mask of given steps must have shape ({num_steps},), got {values.shape}.", source
            )
        return values.copy()
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise CineDataError(f"expected a bool mask or a 1-D sequence of integer step indices, got {given}.", source)
    if values.min() < 0 or values.max() >= num_steps:
        raise CineDataError(f"step indices must lie in [0, {num_steps}), got {values.tolist()}.", source)
    mask = np.zeros(num_steps, dtype=bool)
    mask[values] = True
    return mask


def interpolate_velocities(
    velocity: NdarrayOrTensor, given: NdarrayOrTensor | Sequence[int], kind: str = "linear"
) -> torch.Tensor:
    """Fill the velocities of the missing steps by interpolation in time between the given ones.

    Knots are ED (normalised time 0, ``v = 0``, always given) and the given steps ``i`` at times ``(i + 1) / T``;
    every voxel and component is interpolated independently (vectorised over voxels). Values at the given steps
    are copied unchanged. Between knots:

    - ``"linear"``: piecewise linear (:func:`scipy.interpolate.make_interp_spline` with ``k=1``);
    - ``"cubic"``: :class:`scipy.interpolate.CubicSpline` with not-a-knot ends, the classic interpolating cubic
      spline (what ``interp1d(kind="cubic")`` computes). It reproduces cubic polynomials exactly (4 or more
      knots); with 3 knots it is the interpolating parabola, with 2 the straight line. A shape-preserving PCHIP
      was not used: it does not reproduce smooth curves exactly and flattens every local extremum at a knot,
      whereas the velocity of a cardiac cycle peaks between frames.

    After the last given step the last given velocity is held (constant extrapolation) for both kinds:
    extrapolating a line or a cubic beyond the knots diverges, and closing the cycle with ``v = 0`` at the end
    would assume that the last frame returns exactly to ED, which a cine does not guarantee. With no given step
    the result is zero motion.

    Args:
        velocity: ``(T, 2, H, W)`` or ``(B, T, 2, H, W)`` velocities (e.g. the model's ``"velocity"``), voxels.
        given: the given steps: a bool mask ``(T,)`` or 0-based indices into the ``T`` steps (same for the batch).
        kind: ``"linear"`` or ``"cubic"``.

    Returns:
        float tensor of the shape, dtype and device of ``velocity`` (float32 for integer input).

    Raises:
        CineDataError: ``velocity`` not shaped as above or ``given`` not a valid mask / indices.
        ValueError: unknown ``kind``.
    """
    kind = look_up_option(kind, INTERPOLATION_KINDS)
    source = "interpolate_velocities"
    tensor = convert_to_tensor(velocity, track_meta=False)
    if tensor.ndim not in (4, 5) or tensor.shape[-3] != 2:
        raise CineDataError(
            f"velocity must be shaped (T, 2, H, W) or (B, T, 2, H, W), got {tuple(tensor.shape)}.",
            f"{source}(velocity)",
        )
    dtype = tensor.dtype if tensor.is_floating_point() else torch.float32
    num_steps = tensor.shape[-4]
    mask = _given_mask(given, num_steps, f"{source}(given)")
    values = np.moveaxis(convert_to_numpy(tensor, dtype=np.float64), -4, 0)  # (T, [B,] 2, H, W)
    if not mask.all():
        times = np.arange(1, num_steps + 1, dtype=np.float64) / num_steps
        knot_times = np.concatenate([[0.0], times[mask]])
        knots = np.concatenate([np.zeros_like(values[:1]), values[mask]]).reshape(knot_times.size, -1)
        query = np.minimum(times[~mask], knot_times[-1])  # hold the last given velocity
        if knot_times.size == 1:
            filled = np.zeros((query.size, knots.shape[1]))
        elif kind == "linear":
            filled = make_interp_spline(knot_times, knots, k=1, axis=0)(query)
        else:
            filled = CubicSpline(knot_times, knots, axis=0, bc_type="not-a-knot")(query)
        filled[query >= knot_times[-1]] = knots[-1]  # exactly the last given value, not the spline's rounding
        values = values.copy()
        values[~mask] = filled.reshape(query.size, *values.shape[1:])
    out = torch.as_tensor(np.ascontiguousarray(np.moveaxis(values, 0, -4)), dtype=dtype, device=tensor.device)
    return out


def volume_generator(seed: int, subject: str, draw: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """Random generator seeded from ``(seed, subject, draw)`` only, for the prior samples of a reconstruction.

    Re-creating it for every slice gives all slices of one volume the same prior codes (for the same ``T``), as
    Krebs et al. do, while different subjects and draws get different ones; the seed is a CRC32 of the subject
    id, so it is the same in every run and process.

    Args:
        seed: base seed of the study.
        subject: subject (volume) id.
        draw: index of the draw when several samples are taken per slice.
        device: device of the generator (that of the model).

    Returns:
        a seeded :class:`torch.Generator`.
    """
    value = (int(seed) * 1_000_003 + zlib.crc32(str(subject).encode()) + int(draw) * 7_919) % (2**63)
    return torch.Generator(device=torch.device(device)).manual_seed(value)


def _warped_curve(
    ed_labels: torch.Tensor, ddf: torch.Tensor, spacing: np.ndarray, label_mode: str
) -> np.ndarray:
    """LV volume curve ``(T + 1,)`` in mL of the ED labels ``(H, W)`` warped by ``u_{ED->t}`` ``(T, 2, H, W)``."""
    ddf = ddf.detach().float().cpu()
    labels = torch.cat([ed_labels[None], propagate_labels(ed_labels, ddf, mode=label_mode)])
    return structure_volume_curve(labels, spacing, LV_LABEL).numpy()


def _mae(curve: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute difference over the frames after ED (``mask`` ``(T,)`` selects some of them)."""
    diff = np.abs(np.asarray(curve)[1:] - np.asarray(reference)[1:])
    if mask is not None:
        diff = diff[mask]
    return float(diff.mean()) if diff.size else float("nan")


def _check_sequence(network: torch.nn.Module, image: torch.Tensor, source: str) -> None:
    """Raise a CineDataError unless ``image`` is a ``(N >= 2, H, W)`` cine of the model's size."""
    size = tuple(getattr(network, "spatial_size", image.shape[-2:]))
    if image.ndim != 3 or image.shape[0] < 2 or tuple(image.shape[1:]) != size:
        raise CineDataError(
            f"expected a cine slice (N >= 2, {size[0]}, {size[1]}) with ED first (the model's spatial_size), got "
            f"{tuple(image.shape)}; crop or pad it to the model's size first.",
            source,
        )


@torch.inference_mode()
def reconstruction_curves(
    network: ProbabilisticMotionModel,
    image: torch.Tensor,
    ed_labels: torch.Tensor,
    spacing: Sequence[float] | np.ndarray,
    subject: str,
    subsets: Mapping[str, Callable[[int], list[int] | None]] | None = None,
    seed: int = 0,
    num_draws: int = 1,
    device: torch.device | str = "cpu",
    label_mode: str = "nearest",
    source: str = "reconstruction_curves",
) -> dict[str, Any]:
    """LV volume curves of one slice: tracking, and each subset's model reconstruction and interpolations.

    Args:
        network: a :class:`~monai_cardiac.networks.ProbabilisticMotionModel` (used in eval mode).
        image: cine ``(N, H, W)`` with ED first, ``N = T + 1``, intensities as in training.
        ed_labels: class ids ``(H, W)`` of the ED frame (LV blood pool = 3).
        spacing: ``(sH, sW, slice thickness)`` in mm for the volumes (only the product matters).
        subject: volume id, seeds the prior draws (:func:`volume_generator`).
        subsets: ``{name: function of T giving step indices or None}``; defaults to :data:`SUBSETS`.
        seed: base seed of the prior draws.
        num_draws: model reconstructions per subset, each with its own draw.
        device: where the network runs.
        label_mode: :func:`~monai_cardiac.displacement.warp_labels` mode for the ED mask.
        source: name used in error messages.

    Returns:
        ``{"tracking": (N,) mL, "subsets": {name: {"given": indices, "model": (num_draws, N),
        "linear": (N,), "cubic": (N,)}}}`` (numpy curves, ED first); subsets whose function returns ``None`` are
        left out.

    Raises:
        CineDataError: ``image`` not a cine of the model's size or ``ed_labels`` of another size.
        ValueError: ``num_draws < 1``.
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be at least 1, got {num_draws}.")
    subsets = SUBSETS if subsets is None else subsets
    device = torch.device(device)
    network.eval()
    image = torch.as_tensor(image).float()
    _check_sequence(network, image, source)
    ed_labels = torch.as_tensor(ed_labels).round().long().cpu()
    if tuple(ed_labels.shape) != tuple(image.shape[1:]):
        raise CineDataError(
            f"ED labels {tuple(ed_labels.shape)} do not match the frames {tuple(image.shape[1:])}.", source
        )
    spacing = np.asarray(spacing, dtype=np.float64)
    frames = image.to(device)
    moving, fixed = frames[None, :1], frames[None, 1:]
    num_steps = fixed.shape[1]
    tracked = network.decode(network.encode(moving, fixed), moving)
    velocity = tracked["velocity"][0]  # (T, 2, H, W)
    tracking = _warped_curve(ed_labels, tracked["ddf"][0], spacing, label_mode)
    result: dict[str, Any] = {"tracking": tracking, "subsets": {}}
    for name, subset in subsets.items():
        given = subset(num_steps)
        if given is None:
            continue
        entry: dict[str, Any] = {"given": [int(i) for i in given]}
        draws = []
        for draw in range(num_draws):
            generator = volume_generator(seed, subject, draw, device)
            out = network.reconstruct(moving, fixed, entry["given"], generator=generator)
            draws.append(_warped_curve(ed_labels, out["ddf"][0], spacing, label_mode))
        entry["model"] = np.stack(draws)
        for kind in INTERPOLATION_KINDS:
            ddf = network.exponentiation(interpolate_velocities(velocity, entry["given"], kind))
            entry[kind] = _warped_curve(ed_labels, ddf, spacing, label_mode)
        result["subsets"][name] = entry
    return result


def _prepare(entry: Mapping, preprocessing: Callable) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray, bool]:
    """Run the pipeline; returns the cine, its ED labels (None if ED is unlabelled), spacing and its trust."""
    d = preprocessing(dict(entry))
    image = d["image"]
    labels, mask = d.get("label"), d.get("label_mask")
    ed_labels = None
    if isinstance(labels, torch.Tensor) and labels.ndim == 3 and (mask is None or bool(torch.as_tensor(mask)[0])):
        ed_labels = torch.as_tensor(labels[0]).round().long()
    spacing, known = slice_spacing(image, entry)
    return torch.as_tensor(image).float(), ed_labels, spacing, known


def _fmt(stats: Mapping[str, float] | None, digits: int = 2) -> str:
    """``mean (std)`` or ``-``."""
    if stats is None or not np.isfinite(stats["mean"]):
        return "-"
    return f"{stats['mean']:.{digits}f} ({stats['std']:.{digits}f})"


def reconstruction_tables_markdown(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The reconstruction errors (Fig. 4, bottom left) as Markdown tables.

    Args:
        summary: ``summary`` of :func:`reconstruction_study`: ``{subset: {"given": stats, method:
            {column: stats}}}`` with ``stats`` as :func:`~monai_cardiac.engines.summarize_rows` gives.

    Returns:
        two tables, LV volume error in % of the tracking EDV (all slices) and in mL (slices of known spacing).
    """
    lines = []
    for column, title in (
        ("mae_pct_edv", "LV volume error, % of the tracking EDV (all slices)"),
        ("mae_ml", "LV volume error, mL (slices of known spacing)"),
    ):
        lines += [
            f"{title}: mean absolute difference to the tracking LV volume over the frames after ED, mean (std) "
            "over slices",
            "",
            "| given frames besides ED | frames given, mean [min-max] | slices | model | linear | cubic |",
            "|---|---|---|---|---|---|",
        ]
        for name, stats in summary.items():
            given = stats["given"]
            count = stats["model"].get(column, {}).get("n", 0)
            cells = [_fmt(stats[m].get(column)) for m in METHODS]
            frames = f"{given['mean']:.1f} [{given['min']}-{given['max']}]"
            lines.append(f"| {name} | {frames} | {count} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _target_check(rows: list[dict], subsets: Sequence[str], min_given: int, max_given: int) -> dict[str, Any]:
    """Model against linear interpolation on the slice/subset pairs with ``min_given..max_given`` given frames."""
    check: dict[str, Any] = {"min_given": min_given, "max_given": max_given, "subsets": {}}
    for name in subsets:
        per_method = {}
        for method in ("model", "linear"):
            values = [r["mae_pct_edv"] for r in rows
                      if r["subset"] == name and r["method"] == method and min_given <= r["num_given"] <= max_given]
            per_method[method] = values
        if per_method["model"]:
            model, linear = float(np.nanmean(per_method["model"])), float(np.nanmean(per_method["linear"]))
            check["subsets"][name] = {"slices": len(per_method["model"]), "model": model, "linear": linear,
                                      "passed": bool(model < linear)}
    check["passed"] = bool(check["subsets"]) and all(s["passed"] for s in check["subsets"].values())
    return check


def _plot_study(path: Path, example: dict, summary: Mapping, num_slices: int) -> None:
    """Example LV volume curves (left) and mean errors per subset and method (right)."""
    fig = Figure(figsize=(12.0, 4.5), dpi=100)
    left, right = fig.subplots(1, 2)
    curves = example["curves"]
    frames = np.arange(len(curves["tracking"]))
    unit = "mL" if example["spacing_known"] else "mL, placeholder spacing"
    left.plot(frames, curves["tracking"], "k-", linewidth=2.5, label="tracking (all frames)")
    for name, entry in curves["subsets"].items():
        line = left.plot(frames, entry["model"][0], "-", linewidth=1.2, label=f"model, {name}")[0]
        given = np.asarray(entry["given"], dtype=int) + 1
        left.plot(given, np.asarray(entry["model"][0])[given], "o", color=line.get_color(), markersize=3)
    left.set_xlabel("frame (ED = 0; dots: given frames)")
    left.set_ylabel(f"LV volume ({unit})")
    left.set_title(f"{example['subject']} slice {example['slice']}: reconstructed LV volume", fontsize=10)
    left.legend(fontsize=7)
    names = list(summary)
    width = 0.8 / len(METHODS)
    x = np.arange(len(names))
    for k, method in enumerate(METHODS):
        stats = [summary[n][method].get("mae_pct_edv", {"mean": np.nan, "std": np.nan}) for n in names]
        right.bar(x + (k - (len(METHODS) - 1) / 2) * width, [s["mean"] for s in stats], width,
                  yerr=[s["std"] for s in stats], capsize=2, label=method)
    right.set_xticks(x, [f"{n}\n({summary[n]['given']['mean']:.1f} given)" for n in names], fontsize=8)
    right.set_ylabel("mean |V - V_tracking| (% of EDV)")
    right.set_title(f"LV volume error against tracking, mean (std) over {num_slices} slices", fontsize=10)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path))


def reconstruction_study(
    network: ProbabilisticMotionModel,
    datalist: Sequence[Mapping],
    preprocessing: Callable,
    device: torch.device | str = "cpu",
    output_dir: str | Path | None = None,
    seed: int = 0,
    num_draws: int = 1,
    subsets: Mapping[str, Callable[[int], list[int] | None]] | None = None,
    checkpoint: str | None = None,
    label_mode: str = "nearest",
    max_given: int = 5,
    min_given: int = 1,
    example: int | None = None,
    plot: bool = True,
) -> dict[str, Any]:
    """LV volume error of motion reconstructed from subsets of frames, against interpolation (Fig. 4, left).

    For every slice whose ED frame is labelled and holds an LV: the tracking curve and, per subset, the curves
    of :func:`reconstruction_curves`; the error of a curve is the mean absolute difference to the tracking curve
    over the ``T`` frames after ED (ED itself is the reference frame, identical for all methods), in mL (NaN for
    slices whose spacing the dataset marks unknown) and in % of the tracking EDV (the ED mask volume; a ratio
    that does not depend on the spacing, so all slices pool). ``*_missing`` columns average over the steps that
    were not given only. With ``num_draws > 1`` the model's errors are the mean over the draws. Slices with an
    unlabelled ED frame or no LV at ED are skipped and counted.

    The target check compares model and linear interpolation, subset by subset, on the slices where between
    ``min_given`` and ``max_given`` frames besides ED are given (per slice, as e.g. "every 5th" gives 4 to 7
    frames depending on ``T``). "none (sampling)" (0 frames) is left out by default (``min_given=1``): it is a
    simulation, not meant to follow the sequence (Krebs et al.), and its "linear" baseline is no motion at all.

    Files in ``output_dir``: ``reconstruction_study.md`` (tables), ``reconstruction_study.csv`` (one row per
    slice, subset and method), ``reconstruction_study.json`` (settings, summary, target check, example curves)
    and ``reconstruction_study.png`` (example curves and mean errors; needs matplotlib).

    Args:
        network: a trained :class:`~monai_cardiac.networks.ProbabilisticMotionModel`.
        datalist: per-slice entries (docs/conventions.md), e.g. the test split.
        preprocessing: transform giving ``image`` / ``label`` ``(N, H, W)`` with ED first, cropped to the model's
            size, and ``label_mask`` (the bundle's ``load_pipeline``).
        device: where the network runs.
        output_dir: folder for the files (``None``: nothing written).
        seed: base seed of the prior draws (:func:`volume_generator`).
        num_draws: model reconstructions per slice and subset.
        subsets: ``{name: function of T}``; defaults to :data:`SUBSETS`.
        checkpoint: ``{"model": state_dict}`` file to load into ``network`` first (``None``: as it is).
        label_mode: how the ED labels are warped (``"nearest"`` or ``"onehot"``).
        max_given: largest number of given frames for the target check.
        min_given: smallest number of given frames for the target check.
        example: index (among evaluated slices) of the slice plotted; ``None`` takes the one with the largest
            tracking LV ejection fraction.
        plot: write the PNG.

    Returns:
        ``{"rows", "summary", "target", "num_slices", "skipped", "example", "tables"}``.

    Raises:
        CineDataError: a preprocessed cine that does not fit the model.
        FileNotFoundError: ``checkpoint`` named but missing.
    """
    device = torch.device(device)
    network.to(device)
    if checkpoint is not None:
        load_model_weights(network, checkpoint, device)
    subsets = SUBSETS if subsets is None else subsets
    rows: list[dict] = []
    examples: list[dict] = []
    skipped: list[str] = []
    for entry in datalist:
        name = f"{entry.get('subject', entry.get('image'))} slice {entry.get('slice', 0)}"
        image, ed_labels, spacing, known = _prepare(entry, preprocessing)
        if ed_labels is None or not bool((ed_labels == LV_LABEL).any()):
            skipped.append(name)
            continue
        subject = str(entry.get("subject", entry.get("image")))
        curves = reconstruction_curves(
            network, image, ed_labels, spacing, subject, subsets, seed, num_draws, device, label_mode,
            source=str(entry.get("image", name)),
        )
        tracking = curves["tracking"]
        edv = float(tracking[0])
        info = {"subject": subject, "slice": int(entry.get("slice", 0)), "group": entry.get("group", ""),
                "frames": int(image.shape[0]), "spacing_known": known, "edv_ml": edv if known else float("nan")}
        for subset, result in curves["subsets"].items():
            missing = np.ones(image.shape[0] - 1, dtype=bool)
            missing[result["given"]] = False
            for method in METHODS:
                draws = result[method] if method == "model" else result[method][None]
                mae = float(np.mean([_mae(c, tracking) for c in draws]))
                mae_missing = float(np.mean([_mae(c, tracking, missing) for c in draws]))
                rows.append({
                    **info, "subset": subset, "num_given": len(result["given"]), "method": method,
                    "mae_ml": mae if known else float("nan"),
                    "mae_pct_edv": 100.0 * mae / edv,
                    "mae_missing_ml": mae_missing if known else float("nan"),
                    "mae_missing_pct_edv": 100.0 * mae_missing / edv,
                })
        examples.append({**info, "ef": ejection_fraction(tracking, ed=0)[2], "curves": curves})

    summary: dict[str, dict] = {}
    for subset in subsets:
        subset_rows = [r for r in rows if r["subset"] == subset]
        if not subset_rows:
            continue
        counts = [r["num_given"] for r in subset_rows if r["method"] == "model"]
        summary[subset] = {"given": {"mean": float(np.mean(counts)), "min": int(min(counts)), "max": int(max(counts))}}
        columns = ("mae_ml", "mae_pct_edv", "mae_missing_ml", "mae_missing_pct_edv")
        for method in METHODS:
            method_rows = [{c: r[c] for c in columns} for r in subset_rows if r["method"] == method]
            summary[subset][method] = summarize_rows(method_rows)
    target = _target_check(rows, list(summary), min_given, max_given)
    tables = reconstruction_tables_markdown(summary)

    example_slice = None
    if examples:
        index = int(np.nanargmax([e["ef"] for e in examples])) if example is None else example
        example_slice = examples[index]
    logger.info(f"motion reconstruction from subsets of frames: {len(examples)} slices ({len(skipped)} skipped: no ED "
          f"labels or no LV at ED), {num_draws} draw(s) per slice, seed {seed}")
    logger.info(tables)
    verdicts = "; ".join(
        f"{n}: model {s['model']:.2f} % vs linear {s['linear']:.2f} % ({s['slices']} slices) "
        f"{'yes' if s['passed'] else 'NO'}" for n, s in target["subsets"].items()
    )
    logger.info(f"target (model below linear interpolation where {min_given}-{max_given} frames besides ED are given): "
          f"{verdicts or 'no slice qualifies'} -> {'PASSED' if target['passed'] else 'FAILED'}")

    result = {"rows": rows, "summary": summary, "target": target, "num_slices": len(examples), "skipped": skipped,
              "example": example_slice, "tables": tables}
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "reconstruction_study.md").write_text(tables)
        with open(out / "reconstruction_study.csv", "w", newline="") as f:
            fieldnames = list(dict.fromkeys(k for r in rows for k in r))
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        settings = {"seed": seed, "num_draws": num_draws, "label_mode": label_mode, "checkpoint": checkpoint,
                    "subsets": list(summary), "error": "mean |V - V_tracking| over the frames after ED"}
        payload = {"settings": settings, "num_slices": len(examples), "skipped": skipped, "summary": summary,
                   "target": target, "example": _jsonable(example_slice)}
        (out / "reconstruction_study.json").write_text(json.dumps(payload, indent=1))
        if plot and example_slice is not None:
            _plot_study(out / "reconstruction_study.png", example_slice, summary, len(examples))
    return result


def _jsonable(value: Any) -> Any:
    """Numpy arrays and scalars inside nested dicts / lists as plain Python values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def select_slice(datalist: Sequence[Mapping], group: str | None = None, subject: str | None = None,
                 position: float = 0.5) -> dict:
    """One slice of the first subject (in sorted order) of a diagnosis group, e.g. for :func:`transport_figure`.

    Args:
        datalist: per-slice entries.
        group: diagnosis group (e.g. ``"DCM"``, ``"NOR"``); ``None``: any.
        subject: subject id; ``None``: the first subject of ``group``.
        position: relative position of the slice in the subject's stack, 0 basal ... 1 apical (0.5: mid-ventricle).

    Returns:
        the entry (a copy).

    Raises:
        CineDataError: no entry matches.
    """
    matches = [e for e in datalist if (group is None or e.get("group") == group)
               and (subject is None or e.get("subject") == subject)]
    if not matches:
        raise CineDataError(f"no slice of group {group!r} / subject {subject!r} in the data list "
                            f"({len(datalist)} entries).", "select_slice")
    first = sorted(str(e.get("subject")) for e in matches)[0]
    slices = sorted((e for e in matches if str(e.get("subject")) == first), key=lambda e: e.get("slice", 0))
    return dict(slices[int(round(position * (len(slices) - 1)))])


def _contours(ax, labels: np.ndarray) -> None:
    """LV blood pool (red) and epicardium (yellow) outlines of a label map."""
    for mask, color in ((labels == LV_LABEL, "red"), ((labels == LV_LABEL) | (labels == LABEL_IDS["Myo"]), "yellow")):
        if mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], colors=color, linewidths=0.8)


def _plot_transport(path: Path, panels: list[tuple[str, list[np.ndarray], list[np.ndarray | None]]],
                    phases: list[str], curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> None:
    """Image grid (rows of frames with contours) and the LV volume curves on the right."""
    columns = len(phases)
    fig = Figure(figsize=(2.2 * columns + 5.0, 2.2 * len(panels)), dpi=100)
    grid = fig.add_gridspec(len(panels), columns + 2)
    for row, (label, images, labels) in enumerate(panels):
        for col in range(columns):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(images[col], cmap="gray", vmin=0.0, vmax=1.0)
            frame_labels = labels[col]
            if frame_labels is not None:
                _contours(ax, frame_labels)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(phases[col], fontsize=9)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    ax = fig.add_subplot(grid[:, columns:])
    for name, (time, curve) in curves.items():
        ax.plot(time, curve, "-o", markersize=2.5, label=name)
    ax.set_xlabel("normalised time t / T")
    ax.set_ylabel("LV volume (mL)")
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path))


@torch.inference_mode()
def transport_figure(
    network: ProbabilisticMotionModel,
    source_entry: Mapping,
    target_entry: Mapping,
    preprocessing: Callable,
    output_file: str | Path | None = None,
    device: torch.device | str = "cpu",
    checkpoint: str | None = None,
    label_mode: str = "nearest",
) -> dict[str, Any]:
    """Motion transport (Fig. 4, right): the source's motion matrix decoded on the target's ED frame.

    ``z = encode(source)``; the source's tracking is ``decode(z, I_0^source)``, the transported motion
    ``transport(z, I_0^target)`` (same ``T`` as the source), and the target's own tracking is shown for
    comparison. The figure has four rows at ED, mid-systole, ES and mid-diastole of the source (ES = smallest
    tracked source LV volume; the target's own frames at the same normalised times): the source cine with its
    tracked LV / epicardium contours, the source ED frame warped by its tracking, the target cine with its own
    tracked contours, and the target ED frame warped by the transported motion with the transported contours; on
    the right the three LV volume curves over normalised time.

    Figures of ACDC images must not be committed (licence); the committed example comes from the phantom.

    Args:
        network: a trained :class:`~monai_cardiac.networks.ProbabilisticMotionModel`.
        source_entry: per-slice entry whose motion is transported (ED labelled), e.g. from :func:`select_slice`.
        target_entry: per-slice entry whose ED frame receives it (ED labelled).
        preprocessing: the bundle's ``load_pipeline`` (ED first, cropped to the model's size).
        output_file: PNG to write (and the numbers as JSON next to it, same name with ``.json``); ``None``: none.
        device: where the network runs.
        checkpoint: ``{"model": state_dict}`` file to load into ``network`` first (``None``: as it is).
        label_mode: how the ED labels are warped.

    Returns:
        ``{"source", "target", "transported"}``, each with ``subject``, ``group``, ``slice``, ``edv_ml``,
        ``esv_ml`` (smallest volume), ``ef`` (fraction), ``spacing_known`` and ``curve`` (mL, ED first), plus
        ``phases`` (source frame indices) and ``output_file``.

    Raises:
        CineDataError: an ED frame without labels or a cine that does not fit the model.
        FileNotFoundError: ``checkpoint`` named but missing.
    """
    device = torch.device(device)
    network.to(device)
    if checkpoint is not None:
        load_model_weights(network, checkpoint, device)
    network.eval()
    slices: dict[str, dict[str, Any]] = {}
    for role, entry in (("source", source_entry), ("target", target_entry)):
        image, ed_labels, spacing, known = _prepare(entry, preprocessing)
        src = str(entry.get("image", role))
        _check_sequence(network, image, src)
        if ed_labels is None:
            raise CineDataError(f"the {role} slice has no labels at ED, needed for its LV volume curve.", src)
        frames = image.to(device)
        z = network.encode(frames[None, :1], frames[None, 1:])
        tracked = network.decode(z, frames[None, :1])
        slices[role] = {"entry": entry, "image": image, "ed_labels": ed_labels, "spacing": spacing, "known": known,
                        "z": z, "ddf": tracked["ddf"][0].float().cpu(), "warped": tracked["warped"][0].float().cpu()}
    source, target = slices["source"], slices["target"]
    moved = network.transport(source["z"], target["image"][None, :1].to(device))
    transported = {"ddf": moved["ddf"][0].float().cpu(), "warped": moved["warped"][0].float().cpu()}

    def labels_sequence(ed_labels: torch.Tensor, ddf: torch.Tensor) -> np.ndarray:
        return torch.cat([ed_labels[None], propagate_labels(ed_labels, ddf, mode=label_mode)]).numpy()

    seq = {
        "source": labels_sequence(source["ed_labels"], source["ddf"]),
        "target": labels_sequence(target["ed_labels"], target["ddf"]),
        "transported": labels_sequence(target["ed_labels"], transported["ddf"]),
    }
    numbers: dict[str, Any] = {}
    for role, geometry in (("source", source), ("target", target), ("transported", target)):
        curve = structure_volume_curve(seq[role], geometry["spacing"], LV_LABEL).numpy()
        edv, esv, ef = ejection_fraction(curve, ed=0)
        entry = geometry["entry"]
        numbers[role] = {"subject": entry.get("subject"), "group": entry.get("group", ""),
                         "slice": int(entry.get("slice", 0)), "edv_ml": edv, "esv_ml": esv, "ef": ef,
                         "spacing_known": geometry["known"], "curve": curve.tolist()}
    num_frames = source["image"].shape[0]
    es = int(np.argmin(numbers["source"]["curve"]))
    phases = sorted({0, es // 2, es, es + (num_frames - 1 - es) // 2})
    numbers["phases"] = phases
    numbers["output_file"] = None if output_file is None else str(output_file)
    logger.info(f"motion transport: {numbers['source']['subject']} ({numbers['source']['group']}) onto "
          f"{numbers['target']['subject']} ({numbers['target']['group']}): LV EF source tracking "
          f"{100 * numbers['source']['ef']:.1f} %, transported {100 * numbers['transported']['ef']:.1f} %, "
          f"target's own {100 * numbers['target']['ef']:.1f} %")
    if output_file is not None:
        path = Path(output_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        target_frames = target["image"].shape[0]
        target_phases = [min(int(round(p * (target_frames - 1) / (num_frames - 1))), target_frames - 1) for p in phases]
        source_warped = torch.cat([source["image"][:1], source["warped"]]).numpy()
        transported_warped = torch.cat([target["image"][:1], transported["warped"]]).numpy()
        name = {r: f"{numbers[r]['subject']} ({numbers[r]['group']})" for r in ("source", "target")}
        panels = [
            (f"source {name['source']}\ncine, tracked", [source["image"][p].numpy() for p in phases],
             [seq["source"][p] for p in phases]),
            ("source ED warped\nby its tracking", [source_warped[p] for p in phases], [None] * len(phases)),
            (f"target {name['target']}\ncine, own tracking", [target["image"][p].numpy() for p in target_phases],
             [seq["target"][p] for p in target_phases]),
            ("target ED with the\nsource's motion", [transported_warped[p] for p in phases],
             [seq["transported"][p] for p in phases]),
        ]
        labels = ["ED", "mid-systole", "ES", "mid-diastole"] if len(phases) == 4 else [f"frame {p}" for p in phases]
        phase_titles = [f"{lab} (frame {p})" for lab, p in zip(labels, phases)]

        def timeline(curve: list[float]) -> tuple[np.ndarray, np.ndarray]:
            return np.arange(len(curve)) / (len(curve) - 1), np.asarray(curve)

        curves = {
            f"source tracking (EF {100 * numbers['source']['ef']:.0f} %)": timeline(numbers["source"]["curve"]),
            f"transported (EF {100 * numbers['transported']['ef']:.0f} %)": timeline(numbers["transported"]["curve"]),
            f"target's own (EF {100 * numbers['target']['ef']:.0f} %)": timeline(numbers["target"]["curve"]),
        }
        title = f"motion of {name['source']} transported onto {name['target']}"
        _plot_transport(path, panels, phase_titles, curves, title)
        path.with_suffix(".json").write_text(json.dumps(_jsonable(numbers), indent=1))
    return numbers
