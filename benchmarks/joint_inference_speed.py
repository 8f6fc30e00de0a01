"""Inference time and peak memory of :class:`~monai_cardiac.networks.JointMotionSegNet` (Qin et al.) per cine slice.

One slice is the ED target plus ``frames - 1`` source frames (default 50 frames of 192 x 192), run through the
network in eval mode under ``torch.inference_mode`` for each width multiplier and each precision/layout:

- ``fp32``: float32, NCHW (CPU);
- ``fp32-cl``: float32, channels_last (CPU);
- ``bf16-cl``: ``torch.autocast("cpu", dtype=torch.bfloat16)``, channels_last (CPU);
- ``cuda-amp``: ``torch.autocast("cuda", dtype=torch.float16)``, channels_last (only when CUDA is available).

Every configuration runs in a fresh Python process, so its peak resident memory (``ru_maxrss``) is its own;
warm-up runs are excluded and the median, minimum and maximum of the timed repeats are reported. The outputs of
each configuration are then compared with those of ``fp32`` at the same width and the same weights, to show the
accuracy cost of reduced precision. The weights are random (see :func:`build_network`), so this comparison only
shows numerical drift, not the effect on trained accuracy.

Example (from the repository root)::

    python benchmarks/joint_inference_speed.py --repeats 3 --output speed.md --json speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from monai_cardiac.networks import JointMotionSegNet

__all__ = [
    "CONFIGS",
    "Config",
    "build_network",
    "compare_outputs",
    "count_gflop",
    "cpu_model",
    "environment",
    "format_report",
    "format_time",
    "main",
    "make_inputs",
    "parse_args",
    "run_configuration",
    "run_worker",
    "select_configs",
]

_STRIDE = 16  # total stride of the network's encoder: spatial sizes must be multiples of it
_CHUNK_UNAVAILABLE = (
    "chunked inference is not available: JointMotionSegNet starts its motion RNN from a zero hidden state in "
    "every forward and cannot take the state of a previous chunk, so splitting the sources would change the "
    "result; all sources run in one forward"
)


class Config(NamedTuple):
    """One precision/layout: its label in the tables, device, autocast dtype (``None``: off) and memory format."""

    label: str
    device: str
    autocast_dtype: str | None
    channels_last: bool


CONFIGS = {
    "fp32": Config("fp32 NCHW", "cpu", None, False),
    "fp32-cl": Config("fp32 channels_last", "cpu", None, True),
    "bf16-cl": Config("bf16 autocast + channels_last", "cpu", "bfloat16", True),
    "cuda-amp": Config("fp16 AMP + channels_last", "cuda", "float16", True),
}
_REFERENCE = "fp32"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line.

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The namespace, with ``sources`` (= ``frames - 1``, the source frames per forward) added.

    Raises:
        SystemExit: (via ``argparse``) on a bad value, including a ``--chunk`` smaller than the number of
            source frames: the network cannot carry its RNN state from one forward to the next.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25, 0.5], help="width multipliers")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                        help="precision/layout configurations (cuda-amp is skipped without CUDA)")
    parser.add_argument("--frames", type=int, default=50, help="frames per slice, ED target included")
    parser.add_argument("--size", type=int, default=192, help=f"height = width of a frame, a multiple of {_STRIDE}")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads value")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    parser.add_argument("--chunk", type=int, default=None,
                        help="source frames per forward; only 'all of them' is available (see the report)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--output", type=Path, default=None, help="also write the Markdown report here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one configuration, as JSON
    args = parser.parse_args(argv)
    if args.worker is not None:
        return args
    if min(args.widths) <= 0:
        parser.error(f"--widths must be positive, got {args.widths}.")
    if args.frames < 2:
        parser.error(f"--frames must be at least 2 (the target and one source), got {args.frames}.")
    if args.size < _STRIDE or args.size % _STRIDE:
        parser.error(f"--size must be a positive multiple of {_STRIDE}, got {args.size}.")
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--threads and --repeats must be at least 1 and --warmup at least 0.")
    args.sources = args.frames - 1
    if args.chunk is not None and args.chunk < args.sources:
        parser.error(f"--chunk {args.chunk} < {args.sources} source frames: {_CHUNK_UNAVAILABLE}.")
    return args


def _cpuinfo(field: str) -> str | None:
    """Value of the first ``field`` line of ``/proc/cpuinfo``, or ``None`` where there is no such file or line."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    return None


def cpu_model() -> str:
    """Return the CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` where that file is missing)."""
    return _cpuinfo("model name") or platform.processor() or "unknown"


def environment(threads: int) -> dict[str, object]:
    """Describe the software and hardware the figures were taken on.

    Args:
        threads: the ``torch.set_num_threads`` value the workers use.

    Returns:
        torch version, CPU model, logical CPUs, torch's CPU capability (e.g. ``AVX2``, ``AVX512``), the CPU's
        bf16 instruction sets (``avx512_bf16``, ``amx_bf16``; without them bf16 autocast is emulated and slow),
        the thread count, and the CUDA device name (or ``None``).
    """
    flags = (_cpuinfo("flags") or "").split()
    return {
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_instructions": [f for f in ("avx512_bf16", "amx_bf16") if f in flags],
        "threads": threads,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def select_configs(names: Sequence[str], cuda_available: bool) -> tuple[list[str], list[str]]:
    """Keep the configurations this machine can run.

    Args:
        names: keys of :data:`CONFIGS`.
        cuda_available: whether a CUDA device is present.

    Returns:
        The runnable keys (in the given order, without repeats) and one note per key that was dropped.
    """
    kept, notes = [], []
    for name in dict.fromkeys(names):
        if CONFIGS[name].device == "cuda" and not cuda_available:
            notes.append(f"{name} ({CONFIGS[name].label}) skipped: CUDA is not available.")
        else:
            kept.append(name)
    return kept, notes


def make_inputs(frames: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random frames with intensities in [0, 1], as the network receives them after normalisation.

    Args:
        frames: frames of the slice, target included (``>= 2``).
        size: height and width of every frame.
        seed: seed of the generator (the same seed gives the same frames).

    Returns:
        ``target`` ``(1, 1, size, size)`` and ``sources`` ``(1, frames - 1, size, size)``, float32.
    """
    generator = torch.Generator().manual_seed(seed)
    slice_ = torch.rand(1, frames, size, size, generator=generator)
    return slice_[:, :1].clone(), slice_[:, 1:].clone()


def build_network(width: float, seed: int, size: int, flow_rms: float = 3.0) -> JointMotionSegNet:
    """Build a :class:`JointMotionSegNet` in eval mode with random weights that give a non-trivial flow.

    A freshly built network predicts an almost-identity warp (the input weights of its motion RNN start with
    std 1e-5), which would make any precision look exact. Those weights are therefore redrawn with a std set
    from the RMS of the RNN's input features on a small random slice, so that the displacement of a
    ``size x size`` frame is about ``flow_rms`` voxels RMS per axis (up to the recurrence). The same
    arguments give the same weights, in any process.

    Args:
        width: width multiplier of the network (1.0 is the paper).
        seed: seed of the weights.
        size: height = width of the frames the network will see (it sets the voxel scale of the flow).
        flow_rms: target displacement RMS in voxels.

    Returns:
        The network, float32, NCHW, on the CPU, in eval mode.
    """
    torch.manual_seed(seed)
    net = JointMotionSegNet(width_multiplier=width).eval()
    seen: list[torch.Tensor] = []
    hook = net.motion_rnn.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    with torch.inference_mode():
        net(*make_inputs(3, 2 * _STRIDE, seed))
    hook.remove()
    conv = net.motion_rnn.input_conv
    flow_normalised = 2.0 * flow_rms / (size - 1)  # voxels -> [-1, 1] coordinates (align_corners=True)
    std = flow_normalised / (seen[0].pow(2).mean().sqrt().item() * conv.in_channels**0.5 + 1e-12)
    with torch.no_grad():
        conv.weight.normal_(0.0, std)
    return net


def count_gflop(net: JointMotionSegNet, target: torch.Tensor, sources: torch.Tensor) -> float:
    """Floating-point operations of one forward of ``net``, as counted by ``torch.utils.flop_counter``.

    The count covers the convolutions and matrix products (a multiply-add is 2 operations); the warps, the
    activations and the upsampling are not counted, so it is a lower bound of the work, and the same for every
    precision and memory layout. Dividing it by a measured time gives the arithmetic throughput the CPU
    sustained, to compare with its peak.

    Args:
        net: the network, on the device of the inputs.
        target: ``(1, 1, H, W)`` target frame.
        sources: ``(1, S, H, W)`` source frames.

    Returns:
        The count in GFLOP (1e9 operations).
    """
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(target, sources)
    return counter.get_total_flops() / 1e9


def run_worker(job: dict) -> dict:
    """Time one configuration in this process (run it in a fresh process: see :func:`run_configuration`).

    Args:
        job: ``width``, ``config`` (a key of :data:`CONFIGS`), ``frames``, ``size``, ``threads``, ``warmup``,
            ``repeats``, ``seed`` and ``outputs`` (file the last outputs are saved to, for the comparison).

    Returns:
        ``params_m`` (parameters, millions), ``times_s`` (each timed run, seconds), ``peak_rss_mb`` (peak
        resident memory of the process, MiB), ``baseline_rss_mb`` (resident memory before the network was
        built, MiB), ``peak_cuda_mb`` (``torch.cuda.max_memory_allocated``, MiB; ``None`` on the CPU) and
        ``gflop`` (:func:`count_gflop`).
    """
    config = CONFIGS[job["config"]]
    torch.set_num_threads(job["threads"])
    baseline = _peak_rss_mb()
    device = torch.device(config.device)
    net = build_network(job["width"], job["seed"], job["size"]).to(device)
    target, sources = (x.to(device) for x in make_inputs(job["frames"], job["size"], job["seed"]))
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    autocast = (
        torch.autocast(config.device, dtype=getattr(torch, config.autocast_dtype))
        if config.autocast_dtype
        else contextlib.nullcontext()
    )
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode(), autocast:
        for run in range(job["warmup"] + job["repeats"]):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = net(target, sources)
            if cuda:
                torch.cuda.synchronize()
            if run >= job["warmup"]:
                times.append(time.perf_counter() - start)
    labels = torch.cat([out["seg_logits_target"].unsqueeze(1), out["seg_logits_sources"]], 1).argmax(2)
    torch.save({"ddf": out["ddf_to_target"].float().cpu(), "labels": labels.to(torch.uint8).cpu()}, job["outputs"])
    result = {
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "times_s": times,
        "peak_rss_mb": _peak_rss_mb(),
        "baseline_rss_mb": baseline,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }
    # counted after the peaks were read, in this process: a parent that ran the network would hand its own peak
    # resident memory down to every worker (Linux keeps ``ru_maxrss`` across fork and exec)
    result["gflop"] = count_gflop(net, target, sources)
    return result


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def run_configuration(job: dict) -> dict:
    """Run :func:`run_worker` for ``job`` in a fresh Python process and return its result with the job merged in.

    Args:
        job: see :func:`run_worker`.

    Returns:
        The job's fields, the worker's result, ``median_s``, ``min_s``, ``max_s`` of ``times_s`` and
        ``gflop_per_s`` (``gflop / median_s``).

    Raises:
        RuntimeError: if the worker process fails (the end of its stderr is included).
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"worker for {job} failed (exit code {done.returncode}):\n{done.stderr[-2000:]}")
    result = {**job, **json.loads(lines[-1])}
    times = result["times_s"]
    result.update(median_s=statistics.median(times), min_s=min(times), max_s=max(times))
    result["gflop_per_s"] = result["gflop"] / result["median_s"]
    return result


def compare_outputs(reference: str | Path, other: str | Path) -> dict[str, float]:
    """Compare the saved outputs of two configurations that ran the same weights on the same slice.

    Args:
        reference: outputs file of the reference (fp32) run.
        other: outputs file of the run to compare.

    Returns:
        ``max_abs_ddf_diff`` (largest absolute difference of any displacement component, voxels),
        ``ddf_rms`` (RMS of the reference displacement components, voxels, for scale) and
        ``seg_agreement_pct`` (percentage of pixels of all frames with the same arg-max label).
    """
    ref, out = torch.load(reference), torch.load(other)
    return {
        "max_abs_ddf_diff": (out["ddf"] - ref["ddf"]).abs().max().item(),
        "ddf_rms": ref["ddf"].pow(2).mean().sqrt().item(),
        "seg_agreement_pct": 100.0 * (out["labels"] == ref["labels"]).float().mean().item(),
    }


def format_time(seconds: float) -> str:
    """Format a duration: seconds with 2 decimals from 1 s up, milliseconds with 1 decimal below."""
    return f"{seconds:.2f} s" if seconds >= 1 else f"{1000 * seconds:.1f} ms"


def format_report(env: dict, settings: dict, results: list[dict], comparison: list[dict], notes: list[str]) -> str:
    """Render the environment, the timing table, the precision comparison and the notes as Markdown.

    Args:
        env: see :func:`environment`.
        settings: ``frames``, ``size``, ``sources_per_forward``, ``warmup``, ``repeats``.
        results: rows from :func:`run_configuration`.
        comparison: rows with ``width``, ``config`` and the fields of :func:`compare_outputs`.
        notes: free-text lines added at the end.

    Returns:
        The report, ending with a newline.
    """
    frames = settings["frames"]
    lines = [
        f"torch {env['torch']}; CPU: {env['cpu']} ({env['logical_cpus']} logical CPUs, capability "
        f"{env['cpu_capability']}, bf16 instructions: {', '.join(env['bf16_instructions']) or 'none'}); "
        f"CUDA: {env['cuda'] or 'none'}.",
        f"One slice = 1 target + {frames - 1} source frames of {settings['size']} x {settings['size']}, "
        f"{settings['sources_per_forward']} sources per forward; eval mode, inference_mode; "
        f"median of {settings['repeats']} runs after {settings['warmup']} warm-up run(s).",
        "",
        f"| width | params (M) | precision/layout | device | threads | median per {frames}-frame slice | min | max "
        "| GFLOP | GFLOP/s | peak RSS MB | peak CUDA MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        config = CONFIGS[r["config"]]
        cuda_mb = "-" if r["peak_cuda_mb"] is None else f"{r['peak_cuda_mb']:.0f}"
        lines.append(
            f"| {r['width']:g} | {r['params_m']:.2f} | {config.label} | {config.device} | {r['threads']} | "
            f"{format_time(r['median_s'])} | {format_time(r['min_s'])} | {format_time(r['max_s'])} | "
            f"{r['gflop']:.1f} | {r['gflop_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {cuda_mb} |"
        )
    if comparison:
        lines += [
            "",
            f"Outputs against {CONFIGS[_REFERENCE].label} at the same width (same random weights, not trained):",
            "",
            "| width | precision/layout | device | max abs ddf difference (voxels) | ddf RMS of fp32 (voxels) "
            "| segmentation agreement (%) |",
            "|---|---|---|---|---|---|",
        ]
        for c in comparison:
            config = CONFIGS[c["config"]]
            lines.append(
                f"| {c['width']:g} | {config.label} | {config.device} | {c['max_abs_ddf_diff']:.2g} | "
                f"{c['ddf_rms']:.2f} | {c['seg_agreement_pct']:.2f} |"
            )
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with the internal ``--worker`` argument, one configuration of it).

    Args:
        argv: command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status, 0.

    Raises:
        SystemExit: if no requested configuration can run on this machine.
        RuntimeError: if a worker process fails.
    """
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    names, notes = select_configs(args.configs, torch.cuda.is_available())
    if not names:
        raise SystemExit("no configuration can run here: " + " ".join(notes))
    notes.append(f"--chunk: {_CHUNK_UNAVAILABLE}.")
    env = environment(args.threads)
    settings = {"frames": args.frames, "size": args.size, "sources_per_forward": args.sources,
                "warmup": args.warmup, "repeats": args.repeats}
    results, comparison = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            outputs = {}
            for name in names:
                outputs[name] = str(Path(tmp) / f"{width:g}_{name}.pt")
                job = {"width": width, "config": name, "frames": args.frames, "size": args.size,
                       "threads": args.threads, "warmup": args.warmup, "repeats": args.repeats,
                       "seed": args.seed, "outputs": outputs[name]}
                results.append(run_configuration(job))
                print(f"done: width {width:g}, {CONFIGS[name].label}, median {format_time(results[-1]['median_s'])}",
                      file=sys.stderr, flush=True)
            if _REFERENCE in outputs:
                comparison += [
                    {"width": width, "config": name, **compare_outputs(outputs[_REFERENCE], path)}
                    for name, path in outputs.items()
                    if name != _REFERENCE
                ]
    for r in results:
        del r["outputs"]
    report = format_report(env, settings, results, comparison, notes)
    print(report, end="")
    if args.output is not None:
        args.output.write_text(report)
    if args.json is not None:
        payload = {"environment": env, "settings": settings, "results": results, "comparison": comparison,
                   "notes": notes}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
