"""Command line: every motion method on every labelled slice, scored by one evaluation, side by side.

    python -m monai_cardiac.baselines.benchmark --dataset_dir /path/to/acdc --output_dir /tmp/bench --split test \\
        --methods identity ffd groupwise syn voxelmorph joint motion_only \\
        --joint_checkpoint J.pt --motion_only_checkpoint M.pt --voxelmorph_checkpoint V.pt [--prob_checkpoint P.pt]

Methods (``--methods``; a method whose package or checkpoint is absent is listed as absent and skipped):

- peers (:mod:`monai_cardiac.baselines`): ``identity``, ``ffd``, ``groupwise``, ``syn``, ``voxelmorph``
  (``--voxelmorph_checkpoint``); settings from their defaults, overridden by ``--peer_params FILE.json``
  (``{"ffd": {"grid_spacing": 8}, ...}``);
- the project's networks, from checkpoints: ``joint`` and ``motion_only`` (``JointMotionSegNet`` as
  ``bundles/joint/configs/train.json`` builds it, the motion-only variant without its segmentation branch) and
  ``probabilistic`` (``ProbabilisticMotionModel`` as ``bundles/probabilistic_motion/configs/train.json`` builds it);
  ``--peer_params`` ``{"joint": {"orientation_ensemble": true}}`` runs a joint network averaged over the eight
  in-plane orientations, as the joint inference bundle runs it.
- ``joint+refine`` and ``probabilistic+refine``: the same networks (same checkpoints), their tracking fields
  ``u_{ED->t}`` then refined on the slice's own frames (:func:`~monai_cardiac.engines.refine_tracking`, test-time
  instance optimisation; its arguments through ``--peer_params``, e.g. ``{"joint+refine": {"similarity": "lncc",
  "smoothness": 1.0, "levels": [2, 1]}}``); the time includes the network, the inversion and the refinement.

Every method gets the same slices, preprocessed once by the joint bundle's evaluation pipeline
(:func:`~monai_cardiac.baselines.data.cine_preprocessing`: 96 x 96 crops, intensities in [0, 1]; ``--no_crop`` for
the phantom, whose true motion then adds end-point errors), and each slice is scored by
:func:`~monai_cardiac.engines.probabilistic_evaluation.evaluate_motion_entry` with ``invert_missing``: the
direction a method does not give (``u_{t->ED}`` for the peers, ``u_{ED->t}`` for the joint networks) is the
numerical inverse of the one it gives, so ED -> ES and ES -> ED warped labels are scored for all.

Timing and memory. Each method runs in its own worker process (started fresh, ``spawn``), one after the other in
the same run on the same machine, with ``--threads`` threads for torch, OpenMP and ITK (elastix and ANTs read
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``). Before the timed slices the worker runs the method once untimed on the
first three frames of its first slice (library loading, first-call set-up: elastix spends ~12 s there). A slice's
time is the wall time of the method's call (``seconds``: its own conversions and post-processing included, e.g. the
group-wise inversion; training excluded), the median of ``--repeats`` calls, and ``cpu_seconds`` the process CPU
time of the same calls; ``seconds_inversion`` (the evaluator's inversion of the missing direction) is reported
apart. Tables give the median over slices of the time scaled to 50 frames and its ratio to ``ffd``. Memory is the
worker's peak resident set size (``ru_maxrss``): Python, torch, MONAI, the method's libraries and one slice's
data and evaluation; the ``identity`` worker gives the floor every method shares, and ``rss_start_mb`` the
resident size after the method was built, before its first call.

Outputs in ``--output_dir``: ``rows_<method>.jsonl`` (the journal: one JSON row per slice, failures included;
``--resume`` is the default: slices already there are skipped, ``--retry_failed`` runs failed ones again),
``rows_<method>.csv`` (per-slice rows without the curves), ``summary.csv`` (one row per method: mean and std of
every column, slices, failures, median times, peak memory), ``summary.json``, ``tables.md``, ``curves.json``,
``lv_curves_<method>.png`` and ``lv_volume_curves.png`` (LV volume curves), ``summary.png`` (bar chart),
``run.json`` (commands, machine, threads, parameters, absent methods). Methods may be run in several commands
into one ``--output_dir`` (e.g. a slow peer on its own): the reports always cover every method journalled there.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import resource
import shlex
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_cardiac.bundle_paths import bundle_root
from monai_cardiac.errors import describe_error

__all__ = [
    "METHODS",
    "NETWORK_METHODS",
    "REFINED",
    "bundle_network",
    "main",
    "method_status",
    "refined_motion_fields",
    "run_benchmark",
    "tracking_field",
    "write_reports",
]

REFINED = "+refine"
"""Suffix of a network method whose tracking fields are refined on the slice (:func:`refine_tracking`)."""
NETWORK_METHODS = ("joint", "motion_only", "probabilistic", "joint+refine", "probabilistic+refine")
_REFINE_PARAMETERS = ("iterations", "smoothness", "learning_rate", "similarity", "levels", "window",
                      "temporal_smoothness", "segmentation_weight")
METHODS = ("identity", "ffd", "groupwise", "syn", "voxelmorph", *NETWORK_METHODS)
_CURVE_KEYS = ("lv_volume_track", "lv_volume_ref", "lv_volume_unit")
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
)


def _bundle_config(network: str) -> Path:
    """The ``train.json`` of the bundle that defines ``network`` (``"probabilistic"`` or a joint network)."""
    bundle = "probabilistic_motion" if network == "probabilistic" else "joint"
    return Path(bundle_root(bundle)) / "configs" / "train.json"


# ----------------------------------------------------------------------------------------------- methods


def _network_of(name: str) -> str:
    """The network method a (possibly refined) method runs: ``"joint+refine"`` -> ``"joint"``."""
    return name[: -len(REFINED)] if name.endswith(REFINED) else name


def method_status(name: str, checkpoints: Mapping[str, str | None]) -> str | None:
    """Why ``name`` cannot run here (missing package or checkpoint), or ``None`` when it can.

    Raises:
        ValueError: an unknown method name.
    """
    from monai_cardiac.baselines import PEERS

    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    if name in PEERS and PEERS[name].missing():
        return f"not installed: {', '.join(PEERS[name].missing())} (pip install \"monai_cardiac[peers]\")"
    if name in NETWORK_METHODS or name == "voxelmorph":
        network = _network_of(name)
        path = checkpoints.get(network)
        if not path:
            return f"no checkpoint given (--{'prob' if network == 'probabilistic' else network}_checkpoint)"
        if not Path(path).is_file():
            return f"no checkpoint at {path}"
    return None


def bundle_network(name: str, config_file: str | None = None):
    """The network of a bundle's ``network_def`` (motion only: without segmentation branch)."""
    from monai.bundle import ConfigParser

    path = Path(config_file) if config_file else _bundle_config(name)
    if not path.is_file():
        raise FileNotFoundError(f"no bundle config at {path} to build the {name} network from; give --{name}_config")
    parser = ConfigParser()
    parser.read_config(str(path))
    if name == "motion_only":
        parser["network_def"]["segmentation"] = False
    return parser.get_parsed_content("network_def")


def build_method(spec: Mapping[str, Any]) -> tuple[Callable, dict]:
    """A method's ``fields_fn(image, spacing) -> {"u_ed_to_t", "u_t_to_ed", "seconds"}`` and its parameters.

    Args:
        spec: ``{"name", "params", "checkpoint", "config", "device"}``.
    """
    import torch

    from monai_cardiac.baselines import PEERS, SequenceRegistration, VoxelMorphRegistration
    from monai_cardiac.checkpoints import load_model_weights
    from monai_cardiac.engines.probabilistic_evaluation import motion_fields

    name, params, device = spec["name"], dict(spec.get("params") or {}), spec.get("device", "cpu")
    if name == "voxelmorph":
        peer: SequenceRegistration = VoxelMorphRegistration(spec["checkpoint"], device=device, **params)
        return peer.motion_fields, peer.parameters()
    if name in PEERS:
        peer = PEERS[name](**params)
        return peer.motion_fields, peer.parameters()
    base = _network_of(name)
    network = bundle_network(base, spec.get("config")).to(device)
    load_model_weights(network, spec["checkpoint"], device)
    network.eval()
    described: dict[str, Any] = {"network": type(network).__name__, "checkpoint": str(spec["checkpoint"]),
                 "config": str(spec.get("config") or _bundle_config(base)), "device": str(device)}
    if base == "motion_only":
        described["segmentation"] = False
    ensemble = bool(params.get("orientation_ensemble", False))  # the joint networks, as the inference bundle runs
    described["orientation_ensemble"] = ensemble

    def fields(image, spacing) -> dict:
        return motion_fields(network, image, torch.device(device), False, ensemble)

    if base == name:
        return fields, described
    refine = {k: params[k] for k in _REFINE_PARAMETERS if k in params}
    described["refine"] = refine
    return (lambda image, spacing: refined_motion_fields(fields(image, spacing), image, **refine)), described


def tracking_field(out: Mapping[str, Any]):
    """The tracking field ``u_{ED->t}`` ``(T - 1, 2, H, W)`` of a method's fields ``{"u_ed_to_t", "u_t_to_ed"}``:
    as given, or the inverse of ``u_{t->ED}`` (:func:`~monai_cardiac.displacement.invert_displacement`)."""
    from monai_cardiac.displacement import invert_displacement

    return out["u_ed_to_t"] if out["u_ed_to_t"] is not None else invert_displacement(out["u_t_to_ed"])


def refined_motion_fields(out: Mapping[str, Any], image, **refine: Any) -> dict:
    """A network's motion fields with its tracking fields ``u_{ED->t}`` refined on the slice's own frames.

    Args:
        out: ``{"u_ed_to_t", "u_t_to_ed", "seconds"}`` of the network, and ``"probabilities"`` ``(T, C, H, W)`` where
            it segments (the joint network: the segmentation term's input); a missing ``u_{ED->t}`` is the inverse of
            ``u_{t->ED}`` (:func:`tracking_field`).
        image: the slice ``(T, H, W)``, ED first.
        refine: keyword arguments of :func:`~monai_cardiac.engines.refine_tracking`.

    Returns:
        ``{"u_ed_to_t": refined (T - 1, 2, H, W), "u_t_to_ed": None, "seconds": network + inversion + refinement}``
        (the evaluator inverts the refined fields for the other direction).
    """
    import torch

    from monai_cardiac.engines.tracking_refinement import refine_tracking

    start = time.perf_counter()
    tracking = tracking_field(out)
    tracking = torch.cat([torch.zeros_like(tracking[:1]), tracking])  # ED's own field: the identity
    refined = refine_tracking(image, tracking, reference=0, segmentation=out.get("probabilities"), **refine)[1:]
    return {"u_ed_to_t": refined, "u_t_to_ed": None, "seconds": out["seconds"] + time.perf_counter() - start}


# ------------------------------------------------------------------------------------------------ worker


def _rss_mb() -> float:
    """Current resident set size in MB (Linux ``/proc``), NaN where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (``ru_maxrss``: KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _key(row: Mapping) -> tuple[str, int]:
    return str(row["subject"]), int(row["slice"])


def _append(path: Path, row: Mapping) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row, default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_journal(path: str | Path) -> list[dict]:
    """Rows of a ``rows_<method>.jsonl`` journal; a torn last line (a killed run) is ignored."""
    rows = []
    path = Path(path)
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _failure(entry: Mapping, method: str, error: str) -> dict:
    return {"subject": entry["subject"], "slice": int(entry.get("slice", 0)), "method": method, "status": "failed",
            "error": " ".join(error.split())[:500]}


def _worker(spec: dict, entries: list[dict], roi_size, out_dir: str, repeats: int, threads: int,
            progress: tuple[int, int]) -> None:
    """Run one method on ``entries`` in this (fresh) process, appending one journal row per slice."""
    import torch
    from monai.utils import convert_to_tensor

    from monai_cardiac.baselines.data import cine_preprocessing
    from monai_cardiac.engines.probabilistic_evaluation import evaluate_motion_entry

    torch.set_num_threads(threads)
    name, out = spec["name"], Path(out_dir)
    journal, inflight = out / f"rows_{name}.jsonl", out / f"inflight_{name}.json"
    preprocessing = cine_preprocessing(roi_size)
    try:
        fields_fn, _ = build_method(spec)
    except Exception as error:  # the whole method cannot run: every slice records why
        message = f"method could not be built: {describe_error(error)}"
        print(f"[{name}] {message}", flush=True)
        for entry in entries:
            _append(journal, _failure(entry, name, message))
        return
    rss_start = _rss_mb()
    try:  # warm-up, untimed: the first three frames of the first slice
        image = convert_to_tensor(preprocessing(entries[0])["image"], dtype=torch.float32, track_meta=False)
        fields_fn(image[: min(3, image.shape[0])], None)
    except Exception as error:  # the slice itself will record the failure
        print(f"[{name}] warm-up failed: {type(error).__name__}: {error}", flush=True)

    cpu: dict[str, float] = {}

    def timed(image, spacing):
        walls, cpus, fields = [], [], None
        for _ in range(repeats):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            fields = dict(fields_fn(image, spacing))
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
        cpu["seconds"] = statistics.median(cpus)
        fields["seconds"] = statistics.median(walls)
        return fields

    done, total = progress
    for k, entry in enumerate(entries):
        inflight.write_text(json.dumps({"subject": entry["subject"], "slice": int(entry.get("slice", 0))}))
        try:
            row = evaluate_motion_entry(entry, preprocessing, timed, invert_missing=True)
            row.update(method=name, status="ok", error="", cpu_seconds=cpu["seconds"], repeats=float(repeats),
                       threads=float(threads), rss_start_mb=rss_start, peak_rss_mb=_peak_rss_mb())
            note = (f"{row['seconds']:.2f} s ({int(row['frames'])} frames), Dice ES->ED {row['comp_dice_mean']:.3f} "
                    f"ED->ES {row['track_dice_mean']:.3f}")
        except Exception as error:
            row = _failure(entry, name, describe_error(error))
            note = f"FAILED: {row['error'][:200]}"
            traceback.print_exc()
        _append(journal, row)
        inflight.unlink(missing_ok=True)
        print(f"[{name} {done + k + 1}/{total}] {entry['subject']} slice {int(entry.get('slice', 0))}: {note}",
              flush=True)


# ------------------------------------------------------------------------------------------------ runner


def _pick(entries: list[dict], limit: int | None) -> list[dict]:
    """Every ``k``-th entry from the first, ``k = ceil(len / limit)``: at most ``limit`` entries spread over the list.

    Subsets nest when their ``k`` divide each other (68 slices: ``limit`` 34 takes every 2nd, 9 every 8th), so a
    method run on fewer slices is compared with the others on slices they all have.
    """
    if limit is None or limit >= len(entries):
        return list(entries)
    return list(entries[:: math.ceil(len(entries) / max(limit, 1))])


def run_method(spec: dict, entries: list[dict], roi_size, out_dir: str | Path, repeats: int = 1, threads: int = 1,
               retry_failed: bool = False) -> list[dict]:
    """Run one method on the entries it has not done yet, in worker processes; return all its journal rows.

    A worker that dies (e.g. a crash inside a native library) leaves the slice it was on recorded as failed, and a
    new worker goes on with the rest.
    """
    out = Path(out_dir)
    name = spec["name"]
    journal, inflight = out / f"rows_{name}.jsonl", out / f"inflight_{name}.json"
    rows = read_journal(journal)
    if retry_failed and any(r.get("status") != "ok" for r in rows):
        rows = [r for r in rows if r.get("status") == "ok"]
        journal.write_text("".join(json.dumps(r, default=float) + "\n" for r in rows))
    wanted = {_key(e) for e in entries}
    finished = {_key(r) for r in rows} & wanted
    if finished:
        print(f"[{name}] resuming: {len(finished)} of {len(entries)} slices already in {journal.name}", flush=True)
    context = multiprocessing.get_context("spawn")
    while True:
        todo = [e for e in entries if _key(e) not in finished]
        if not todo:
            break
        inflight.unlink(missing_ok=True)
        worker = context.Process(target=_worker, args=(spec, todo, roi_size, str(out), repeats, threads,
                                                       (len(finished), len(entries))))
        worker.start()
        worker.join()
        new = {_key(r) for r in read_journal(journal)} & wanted
        if worker.exitcode != 0:
            crashed = json.loads(inflight.read_text()) if inflight.is_file() else None
            victim = next((e for e in todo if crashed and _key(e) == _key(crashed)), None)
            victim = victim if victim is not None else next((e for e in todo if _key(e) not in new), None)
            if victim is not None and _key(victim) not in new:
                message = f"worker process died (exit code {worker.exitcode}) on this slice"
                print(f"[{name}] {victim['subject']} slice {victim.get('slice', 0)}: {message}", flush=True)
                _append(journal, _failure(victim, name, message))
                new.add(_key(victim))
        if new == finished:  # no progress at all: stop rather than loop
            for e in todo:
                _append(journal, _failure(e, name, "worker made no progress"))
            break
        finished = new
    inflight.unlink(missing_ok=True)
    return [r for r in read_journal(journal) if _key(r) in wanted]


def _machine(threads: int) -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": threads,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def run_benchmark(
    entries: list[dict],
    methods: Sequence[str],
    out_dir: str | Path,
    checkpoints: Mapping[str, str | None] | None = None,
    configs: Mapping[str, str | None] | None = None,
    peer_params: Mapping[str, Mapping] | None = None,
    roi_size: Sequence[int] | None = (96, 96),
    limits: Mapping[str, int] | None = None,
    repeats: Mapping[str, int] | int = 1,
    threads: int = 1,
    device: str = "cpu",
    retry_failed: bool = False,
    command: str = "",
) -> dict:
    """Run every available method on its slices, then write every report (:func:`write_reports`).

    Args:
        entries: per-slice data-list entries.
        methods: names from :data:`METHODS`, in table order.
        out_dir: output folder (created); holds the journals that make the run resumable.
        checkpoints: ``{method: path}`` for ``voxelmorph``, ``joint``, ``motion_only``, ``probabilistic``.
        configs: ``{method: bundle config}`` overriding the bundles' ``train.json`` for the networks.
        peer_params: ``{peer: {parameter: value}}`` overriding a peer's defaults.
        roi_size: crop of :func:`~monai_cardiac.baselines.data.cine_preprocessing` (``None``: phantom, no crop).
        limits: ``{method: n}`` runs that method on ``n`` slices evenly spread over ``entries``.
        repeats: timed calls per slice (median kept), one number or ``{method: n, "default": n}``.
        threads: threads of torch, OpenMP and ITK in the workers.
        device: torch device of the networks.
        retry_failed: run slices recorded as failed again.
        command: the command line, written down in the reports.

    Returns:
        ``{"rows": {method: rows}, "summaries": {method: summary}, "absent": {method: reason}, "run": {...}}``;
        ``rows`` and the reports hold every method with a journal in ``out_dir`` (an earlier run's too), on
        ``entries``' slices.

    Raises:
        ValueError: an unknown method, or no entries.
    """
    if not entries:
        raise ValueError("no slices to benchmark (empty data list or split)")
    checkpoints, configs, peer_params = dict(checkpoints or {}), dict(configs or {}), dict(peer_params or {})
    limits = dict(limits or {})
    repeat_of = repeats if isinstance(repeats, Mapping) else {"default": int(repeats)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for variable in _THREAD_VARIABLES:  # inherited by the spawned workers before they import anything
        os.environ[variable] = str(threads)
    absent = {m: reason for m in methods if (reason := method_status(m, checkpoints)) is not None}
    for m, reason in absent.items():
        print(f"[{m}] absent: {reason}", flush=True)
    run: dict[str, Any] = {"command": command, "machine": _machine(threads), "roi_size": roi_size,
                           "num_slices": len(entries), "subjects": sorted({e["subject"] for e in entries}),
                           "methods": {}, "absent": absent, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    all_rows: dict[str, list[dict]] = {}
    for name in methods:
        if name in absent:
            continue
        spec = {"name": name, "params": peer_params.get(name, {}), "checkpoint": checkpoints.get(_network_of(name)),
                "config": configs.get(_network_of(name)),
                "device": device if name in (*NETWORK_METHODS, "voxelmorph") else "cpu"}
        chosen = _pick(entries, limits.get(name))
        reps = int(repeat_of.get(name, repeat_of.get("default", 1)))
        print(f"[{name}] {len(chosen)} slices, {reps} timed call(s) per slice, {threads} thread(s)", flush=True)
        start = time.perf_counter()
        all_rows[name] = run_method(spec, chosen, roi_size, out, reps, threads, retry_failed)
        try:
            _, described = build_method(spec) if name not in NETWORK_METHODS else (None, {
                "checkpoint": str(checkpoints.get(_network_of(name))),
                "config": str(configs.get(_network_of(name)) or "bundle default"), "params": spec["params"]})
        except Exception as error:  # recorded in the rows already
            described = {"error": str(error)}
        run["methods"][name] = {"parameters": described, "slices": len(chosen), "repeats": reps,
                                "wall_minutes_this_run": (time.perf_counter() - start) / 60, "command": command}
    run["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    all_rows = _with_earlier_journals(all_rows, out, entries)
    run = _with_earlier_run(run, out)
    result = write_reports(all_rows, out, run)
    return {"rows": all_rows, **result, "absent": absent, "run": run}


def _with_earlier_journals(rows_by_method: Mapping[str, list[dict]], out: Path, entries: Sequence[Mapping]
                           ) -> dict[str, list[dict]]:
    """This run's rows plus those of methods an earlier run wrote into ``out`` (same slices only), in table order.

    A benchmark can so be run method by method (``--methods syn``) and still report every method side by side.
    """
    wanted = {_key(e) for e in entries}
    merged = {}
    for name in METHODS:
        if name in rows_by_method:
            merged[name] = list(rows_by_method[name])
        elif earlier := [r for r in read_journal(out / f"rows_{name}.jsonl") if _key(r) in wanted]:
            merged[name] = earlier
    return merged


def _with_earlier_run(run: dict, out: Path) -> dict:
    """``run`` with the methods and commands of the ``run.json`` an earlier run left in ``out`` (this run wins)."""
    path = out / "run.json"
    try:
        earlier = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        earlier = {}
    commands = earlier.get("commands", [earlier["command"]] if earlier.get("command") else [])
    return {**run, "commands": [*commands, run["command"]],
            "methods": {**earlier.get("methods", {}), **run["methods"]},
            "started": earlier.get("started", run["started"])}


# ----------------------------------------------------------------------------------------------- reports


def _median_column(rows: Sequence[Mapping], column: str) -> float:
    values = [float(r[column]) for r in rows if column in r and not math.isnan(float(r[column]))]
    return float(np.median(values)) if values else float("nan")


def _cost(rows: Sequence[Mapping]) -> dict[str, float]:
    """Median times per 50 frames and peak memory of a method's successful rows."""
    ok = [r for r in rows if r.get("status") == "ok"]
    per50 = [dict(r, cpu_per_50=float(r["cpu_seconds"]) * 50.0 / float(r["frames"]),
                  inv_per_50=float(r.get("seconds_inversion", 0.0)) * 50.0 / float(r["frames"])) for r in ok]
    return {
        "seconds_per_50_frames_median": _median_column(per50, "seconds_per_50_frames"),
        "cpu_seconds_per_50_frames_median": _median_column(per50, "cpu_per_50"),
        "inversion_seconds_per_50_frames_median": _median_column(per50, "inv_per_50"),
        "peak_rss_mb": max((float(r["peak_rss_mb"]) for r in ok), default=float("nan")),
        "rss_start_mb": _median_column(ok, "rss_start_mb"),
    }


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def cost_table_markdown(rows_by_method: Mapping[str, Sequence[Mapping]], reference: str = "ffd") -> str:
    """Slices, failures, median time per 50-frame slice (wall, CPU), its ratio to ``reference``, peak memory."""
    costs = {name: _cost(rows) for name, rows in rows_by_method.items()}
    ref = costs.get(reference, {}).get("seconds_per_50_frames_median", float("nan"))
    lines = [f"Cost per slice: median over slices of the time scaled to 50 frames (wall / CPU of the method's call); "
             f"x {reference} = time / {reference}'s time; inversion = the evaluator's inversion of the missing "
             "direction (not in the method's time); peak RSS = the method's worker process (identity = the shared "
             "floor)", "",
             f"| method | slices ok | failed | s / 50 frames | CPU s / 50 frames | x {reference} | {reference} "
             "/ method | inversion s / 50 frames | peak RSS MB | RSS before first call MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in rows_by_method.items():
        c = costs[name]
        ok = sum(r.get("status") == "ok" for r in rows)
        seconds = c["seconds_per_50_frames_median"]
        ratio = seconds / ref if ref > 0 else float("nan")
        lines.append(f"| {name} | {ok} | {len(rows) - ok} | {_fmt(seconds, 3)} | "
                     f"{_fmt(c['cpu_seconds_per_50_frames_median'], 3)} | {_fmt(ratio, 4)} | "
                     f"{_fmt(1.0 / ratio if ratio > 0 else float('nan'), 1)} | "
                     f"{_fmt(c['inversion_seconds_per_50_frames_median'], 3)} | {_fmt(c['peak_rss_mb'], 0)} | "
                     f"{_fmt(c['rss_start_mb'], 0)} |")
    return "\n".join(lines) + "\n"


def _summary_csv(path: Path, summaries: Mapping[str, Mapping], rows_by_method: Mapping[str, Sequence[Mapping]]) -> None:
    from monai_cardiac.engines.joint_evaluation import write_rows_csv

    table = []
    for name, summary in summaries.items():
        rows = rows_by_method[name]
        row: dict[str, Any] = {"method": name, "slices_ok": sum(r.get("status") == "ok" for r in rows),
                               "slices_failed": sum(r.get("status") != "ok" for r in rows), **_cost(rows)}
        for column, stats in summary.items():
            row[f"{column}_mean"], row[f"{column}_std"] = stats["mean"], stats["std"]
        table.append(row)
    write_rows_csv(path, table)


def plot_summary(summaries: Mapping[str, Mapping], rows_by_method: Mapping[str, Sequence[Mapping]],
                 output_file: str | Path) -> bool:
    """Bar chart: mean warped-label Dice (both directions), median time per 50 frames, folding, peak memory."""
    from monai.utils import optional_import

    figure_cls, has_matplotlib = optional_import("matplotlib.figure", name="Figure")
    if not has_matplotlib or not summaries:
        return False
    names = list(summaries)
    x = np.arange(len(names))

    def means(column: str) -> tuple[np.ndarray, np.ndarray]:
        stats = [summaries[n].get(column, {"mean": np.nan, "std": np.nan}) for n in names]
        return np.array([s["mean"] for s in stats], dtype=float), np.array([s["std"] for s in stats], dtype=float)

    fig = figure_cls(figsize=(4.2 * 4, 3.8), dpi=100)
    axes = [fig.add_subplot(1, 4, k + 1) for k in range(4)]
    for offset, (column, label) in enumerate((("comp_dice_mean", "ES->ED"), ("track_dice_mean", "ED->ES"))):
        mean, std = means(column)
        axes[0].bar(x + (offset - 0.5) * 0.4, mean, 0.4, yerr=std, capsize=2, label=label)
    unwarped, _ = means("unwarped_dice_mean")
    if np.isfinite(unwarped).any():
        axes[0].axhline(np.nanmean(unwarped), color="k", lw=0.8, ls="--", label="unregistered")
    axes[0].set_ylabel("warped-label Dice (mean of LV, Myo, RV)")
    axes[0].legend(fontsize=7)
    times = [_cost(rows_by_method[n])["seconds_per_50_frames_median"] for n in names]
    axes[1].bar(x, [max(t, 1e-4) if np.isfinite(t) else 0 for t in times])
    axes[1].set_yscale("log")
    axes[1].set_ylabel("median s per 50-frame slice")
    for offset, (column, label) in enumerate((("folding_pct_comp", "u_{t->ED}"), ("folding_pct_track", "u_{ED->t}"))):
        axes[2].bar(x + (offset - 0.5) * 0.4, means(column)[0], 0.4, label=label)
    axes[2].set_ylabel("% det J <= 0")
    axes[2].set_ylim(bottom=0.0)
    axes[2].legend(fontsize=7)
    axes[3].bar(x, [_cost(rows_by_method[n])["peak_rss_mb"] for n in names])
    axes[3].set_ylabel("peak RSS of the worker, MB")
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    fig.tight_layout()
    Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(output_file))
    return True


def write_reports(rows_by_method: Mapping[str, Sequence[Mapping]], out_dir: str | Path, run: Mapping) -> dict:
    """Per-method CSVs, the summary CSV / JSON, Markdown tables, LV curves and the bar chart of a benchmark.

    Args:
        rows_by_method: ``{method: journal rows}`` (failed rows included; only ``status == "ok"`` rows are scored).
        out_dir: output folder.
        run: the run description (command, machine, absent methods, parameters) written beside them.

    Returns:
        ``{"summaries": {method: summary}, "tables": markdown}``.
    """
    from monai_cardiac.engines.joint_evaluation import summarize_rows, write_rows_csv
    from monai_cardiac.engines.probabilistic_evaluation import motion_tables_markdown, plot_lv_volume_curves

    out = Path(out_dir)
    ok_rows = {n: [r for r in rows if r.get("status") == "ok"] for n, rows in rows_by_method.items()}
    summaries = {n: summarize_rows(rows) for n, rows in ok_rows.items() if rows}
    for name, rows in rows_by_method.items():
        if rows:
            write_rows_csv(out / f"rows_{name}.csv", rows, exclude=_CURVE_KEYS)
    scored = {n: rows for n, rows in rows_by_method.items() if n in summaries}
    _summary_csv(out / "summary.csv", summaries, scored)
    (out / "summary.json").write_text(json.dumps({"summaries": summaries, "costs": {
        n: _cost(rows) for n, rows in rows_by_method.items()}}, indent=1, default=float))
    curves = {n: [{k: r[k] for k in ("subject", "slice", *_CURVE_KEYS) if k in r} for r in rows]
              for n, rows in ok_rows.items()}
    (out / "curves.json").write_text(json.dumps(curves, indent=1))
    for name, rows in ok_rows.items():
        plot_lv_volume_curves({name: rows}, out / f"lv_curves_{name}.png")
    plot_lv_volume_curves(ok_rows, out / "lv_volume_curves.png")
    plot_summary(summaries, scored, out / "summary.png")

    failures = [f"- {n}: {r['subject']} slice {r['slice']}: {r.get('error', '')}"
                for n, rows in rows_by_method.items() for r in rows if r.get("status") != "ok"]
    machine = run.get("machine", {})
    lines = ["# Motion methods side by side", "",
             "Commands (in order; each method's own is in its parameters below):", "",
             *[f"    {c}" for c in run.get("commands", [run.get("command", "")])], "",
             f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {machine.get('platform', '')}; "
             f"Python {machine.get('python', '')}, torch {machine.get('torch', '')}; "
             f"GPU: {machine.get('gpu') or 'none'}; "
             f"{machine.get('threads', '?')} thread(s) per method (torch, OpenMP, ITK).", "",
             f"Slices: {run.get('num_slices', '?')} ({len(run.get('subjects', []))} subjects); per method: "
             + ", ".join(f"{n} {len(rows)}" for n, rows in rows_by_method.items()) + ".", ""]
    if run.get("absent"):
        lines += ["Absent methods (skipped):", ""] + [f"- {n}: {why}" for n, why in run["absent"].items()] + [""]
    lines += ["Failures:" if failures else "Failures: none.", ""] + failures + ([""] if failures else [])
    lines += ["## Accuracy and smoothness (each method on all its slices)", "", motion_tables_markdown(summaries),
              "## Cost", "", cost_table_markdown(rows_by_method)]
    counts = {len(rows) for rows in ok_rows.values() if rows}
    if len(counts) > 1:  # some method ran on a subset: the same figures on the slices every method has
        common = set.intersection(*({_key(r) for r in rows} for rows in ok_rows.values() if rows))
        subset = {n: [r for r in rows if _key(r) in common] for n, rows in ok_rows.items() if rows}
        lines += [f"## The {len(common)} slices every method ran", "",
                  motion_tables_markdown({n: summarize_rows(rows) for n, rows in subset.items()}),
                  cost_table_markdown(subset)]
    lines += ["## Parameters", "", "```json", json.dumps(run.get("methods", {}), indent=1, default=str), "```", ""]
    tables = "\n".join(lines)
    (out / "tables.md").write_text(tables)
    (out / "run.json").write_text(json.dumps(run, indent=1, default=str))
    return {"summaries": summaries, "tables": tables}


# ----------------------------------------------------------------------------------------------- command


def _parse_mapping(items: Sequence[str], option: str) -> dict[str, int]:
    """``["ffd=3", "5"]`` -> ``{"ffd": 3, "default": 5}``."""
    mapping = {}
    for item in items:
        name, _, value = item.rpartition("=")
        try:
            mapping[name or "default"] = int(value)
        except ValueError:
            raise SystemExit(f"{option}: expected N or METHOD=N, got {item!r}") from None
    return mapping


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse the command line (module docstring) and run :func:`run_benchmark`."""
    from monai_cardiac.baselines.data import SPLITS, split_datalist

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="ACDC-layout folder")
    parser.add_argument("--output_dir", required=True, help="where the journals, tables and figures go")
    parser.add_argument("--split", default="test", choices=SPLITS, help="part of the bundles' patient split")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=f"any of {' '.join(METHODS)}")
    parser.add_argument("--joint_checkpoint")
    parser.add_argument("--motion_only_checkpoint")
    parser.add_argument("--prob_checkpoint")
    parser.add_argument("--voxelmorph_checkpoint")
    parser.add_argument("--joint_config", help="bundle config with the joint network_def (default: bundles/joint)")
    parser.add_argument("--prob_config", help="bundle config of the probabilistic model (default: its bundle)")
    parser.add_argument("--peer_params", help="JSON file {peer: {parameter: value}} overriding peer defaults")
    parser.add_argument("--roi_size", type=int, nargs=2, default=(96, 96), help="crop around the heart")
    parser.add_argument("--no_crop", action="store_true", help="no crop (the phantom: true motion is scored)")
    parser.add_argument("--max_slices", type=int, help="only this many slices, evenly spread (a quick look)")
    parser.add_argument("--limit", nargs="*", default=[], help="METHOD=N: that method on N evenly spread slices")
    parser.add_argument("--repeats", nargs="*", default=["1"], help="N or METHOD=N timed calls per slice (median)")
    parser.add_argument("--threads", type=int, default=1, help="threads per method (torch, OpenMP, ITK)")
    parser.add_argument("--device", default="cpu", help="torch device of the networks")
    parser.add_argument("--retry_failed", action="store_true", help="run slices recorded as failed again")
    parser.add_argument("--split_seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in args.methods:
        if name not in METHODS:
            parser.error(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    entries = split_datalist(args.dataset_dir, args.split, args.split_seed)
    entries = _pick(entries, args.max_slices)
    checkpoints = {"joint": args.joint_checkpoint, "motion_only": args.motion_only_checkpoint,
                   "probabilistic": args.prob_checkpoint, "voxelmorph": args.voxelmorph_checkpoint}
    configs = {"joint": args.joint_config, "motion_only": args.joint_config, "probabilistic": args.prob_config}
    peer_params = json.loads(Path(args.peer_params).read_text()) if args.peer_params else {}
    command = "python -m monai_cardiac.baselines.benchmark " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    result = run_benchmark(
        entries, args.methods, args.output_dir, checkpoints, configs, peer_params,
        None if args.no_crop else tuple(args.roi_size), _parse_mapping(args.limit, "--limit"),
        _parse_mapping(args.repeats, "--repeats"), args.threads, args.device, args.retry_failed, command,
    )
    print(result["tables"])
    print(f"outputs in {args.output_dir}")
    return result


if __name__ == "__main__":
    main()
