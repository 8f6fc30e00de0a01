"""GPU check: CUDA tests, both bundles' networks under AMP against fp32 CPU, joint speed, training throughput.

One script for the day a GPU is lent, sized to finish within ``--time_budget_s`` (default 480 s) on one GPU.
It writes ``report.json`` and ``report.md`` to ``--output`` with four sections:

(i) ``cuda_tests``: ``pytest -m cuda tests`` in a subprocess (every test that needs CUDA carries the ``cuda``
    marker); pass/fail counts from its JUnit XML. Recorded as ``"skipped: no CUDA"`` on ``--device cpu``.
(ii) ``bundle_inference``: the ``network_def`` of ``bundles/joint/configs/inference.json`` and of
    ``bundles/probabilistic_motion/configs/inference.json`` (built with ``monai.bundle.ConfigParser``, so the
    check follows the configs), with the same random weights, on one phantom cine
    (:func:`monai_cardiac.data.make_cine_phantom`): fp32 on the CPU (reference) against the config's
    ``network`` item (moved to the device, channels_last where the config says so) under autocast (float16 on
    CUDA, bfloat16 on the CPU), as the bundles' engines run it with AMP. Reported: the
    largest absolute displacement difference (voxels), the label agreement (%), whether every output is
    finite, and pass/fail against :data:`TOLERANCES`.
(iii) ``joint_speed``: :class:`~monai_cardiac.networks.JointMotionSegNet` at the paper's width (1.0) on one
    50-frame slice (ED target + 49 sources) of 192 x 192, eval mode, ``torch.inference_mode``: fp32 NCHW,
    fp32 channels_last, fp16 and bf16 autocast with channels_last, and ``torch.compile`` of the fp16 (CUDA)
    or bf16 (CPU) configuration in a child process (a failure or time-out is recorded, not raised). Median
    of the timed runs after warm-up, bracketed by ``torch.cuda.synchronize``; target <= 50 ms per slice.
(iv) ``training_throughput``: the network, losses and optimizers of ``bundles/joint/configs/train.json`` +
    ``full_scale.json`` (ConfigParser), trained with MONAI's ``SupervisedTrainer`` and the bundle's
    ``JointTrainingIteration`` for each stage of the schedule on one phantom batch of the config's batch size,
    window and ROI (reused every iteration: data loading and augmentation are not timed); iterations/s per
    stage and the paper schedule's hours, ``sum over stages of epochs[stage] * iterations_per_epoch /
    (iterations/s)[stage] / 3600`` with ``iterations_per_epoch = ceil(381 / batch_size)`` (the bundles'
    patient-level split of acdc_dev has 381 training slices); validation is not included.

Sections run in the order (i), (ii), (iii) without compile, (iv), then (iii)'s ``torch.compile`` row, so the
cheap figures come first; a section that finds the budget spent stops and says so. ``--quick`` shrinks every
size (width 0.0625, 64 x 64, few frames, 2 timed iterations, ``torch.compile`` with the ``eager`` backend) so
that the CPU mode runs in the test suite in well under a minute; its numbers only show that the script works.

The exit status is 0 when every correctness check holds (the CUDA tests ran, or were skipped without CUDA, with
no failure; both bundle comparisons ran and are within tolerance) and 1 otherwise; the speed target does not
change it.

Example (from the repository root)::

    python benchmarks/gpu_check.py --output gpu_report            # on a GPU machine
    python benchmarks/gpu_check.py --device cpu --quick --output /tmp/gpu_check_cpu
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch

_ROOT = Path(__file__).resolve().parents[1]
_JOINT_BUNDLE = _ROOT / "bundles" / "joint" / "configs"
_PROBABILISTIC_BUNDLE = _ROOT / "bundles" / "probabilistic_motion" / "configs"

TOLERANCES = {
    "float16": {"max_abs_ddf_diff_voxels": 0.25, "min_label_agreement_pct": 98.0},
    "bfloat16": {"max_abs_ddf_diff_voxels": 1.0, "min_label_agreement_pct": 95.0},
}
"""Largest allowed |displacement difference| (voxels, over every pixel, frame and axis) and smallest label
agreement (%) of a network under autocast against fp32 on the CPU, per autocast dtype. The weights are random
(flows of a few voxels RMS, see :func:`joint_bundle_network` and :func:`probabilistic_bundle_network`) and the
labels are arg-max of untrained logits, with many near-ties, so the label bound is loose; a wrong layout, dtype
or device path gives errors of voxels and agreements near chance, far outside these bounds. bfloat16 keeps 8
mantissa bits against float16's 11, hence its wider bounds. Measured with CPU autocast at the bundles' sizes
(30 frames of 96 x 96, joint width 0.25): float16 0.031 voxels / 99.90 % (joint) and 0.033 voxels / 99.999 %
(probabilistic); bfloat16 0.23 voxels / 98.1 % and 0.14 voxels / 99.94 %; bfloat16 at the quick sizes 0.06
voxels / 97.7 % (joint)."""

SPEED_TARGET_MS = 50.0
"""Target inference time of the joint network (width 1.0) on one 50-frame 192 x 192 slice on one GPU."""

PAPER_SPEED = {"width": 1.0, "size": 192, "frames": 50}
"""Sizes at which :data:`SPEED_TARGET_MS` applies."""

QUICK = {"width": 0.0625, "size": 64, "frames": 6, "iterations": 2, "warmup": 1, "batch_size": 2, "window": 4}
"""Sizes of ``--quick``."""

TRAIN_SLICES = 381
"""Training slices of the bundles' patient-level split of acdc_dev (seed 0: 56 patients, 381 slices), the
assumed epoch size of the paper schedule's estimate (one epoch = one pass over them, last batch partial)."""

STAGES = ("motion", "segmentation", "joint")


def _load_speed_benchmark() -> ModuleType:
    """Import ``benchmarks/joint_inference_speed.py`` from its file (``benchmarks/`` is not a package)."""
    name = "joint_inference_speed"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


speed = _load_speed_benchmark()


# ----------------------------------------------------------------------------------------------- arguments
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line.

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The namespace.

    Raises:
        SystemExit: (via ``argparse``) on a bad value, or ``--device cuda`` without CUDA.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device under test (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script works")
    parser.add_argument("--output", type=Path, default=Path("gpu_check_report"),
                        help="folder for report.json and report.md")
    parser.add_argument("--time_budget_s", type=float, default=480.0, help="wall-clock budget of all sections")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads value")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs / iterations (default 10, quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs before (default 3, quick 1)")
    parser.add_argument("--compile_backend", default=None,
                        help="torch.compile backend (default inductor; eager with --quick)")
    parser.add_argument("--compile_mode", default=None,
                        help="torch.compile mode, e.g. reduce-overhead (CUDA graphs); default: torch's")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs")
    parser.add_argument("--compile_worker", default=None, help=argparse.SUPPRESS)  # internal: one job, as JSON
    args = parser.parse_args(argv)
    if args.compile_worker is not None:
        return args
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here (use --device cpu).")
    if args.time_budget_s <= 0 or args.threads < 1:
        parser.error("--time_budget_s must be positive and --threads at least 1.")
    args.repeats = (QUICK["iterations"] if args.quick else 10) if args.repeats is None else args.repeats
    args.warmup = (QUICK["warmup"] if args.quick else 3) if args.warmup is None else args.warmup
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0.")
    args.compile_backend = args.compile_backend or ("eager" if args.quick else "inductor")
    return args


class Budget:
    """Wall-clock budget shared by the sections.

    Args:
        seconds: the budget.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()
        self.exhausted_in: list[str] = []

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds left (negative once spent)."""
        return self.seconds - self.elapsed()

    def spent(self, where: str) -> bool:
        """Whether the budget is spent; if so, remember ``where`` it stopped a section."""
        if self.left() > 0:
            return False
        self.stopped(where)
        return True

    def stopped(self, where: str) -> None:
        """Remember that the budget stopped ``where`` (once)."""
        if where not in self.exhausted_in:
            self.exhausted_in.append(where)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    """Return cached CUDA memory between measurements (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _autocast(device: torch.device, dtype: str | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=getattr(torch, dtype)) if dtype else contextlib.nullcontext()


def amp_dtype(device: torch.device) -> str:
    """Autocast dtype of the bundles' AMP on ``device``: float16 on CUDA, bfloat16 on the CPU."""
    return "float16" if device.type == "cuda" else "bfloat16"


def device_environment(device: torch.device, threads: int) -> dict:
    """:func:`joint_inference_speed.environment` plus the CUDA details that change the numbers.

    Args:
        device: device under test.
        threads: the ``torch.set_num_threads`` value.

    Returns:
        The environment dict, with ``device``, ``cuda_version``, ``cudnn_version``, ``gpu_capability``,
        ``gpu_memory_gib`` and the TF32 switches (fp32 convolutions run in TF32 on Ampere and later when
        ``cudnn_allow_tf32`` is on, torch's default) where CUDA is available.
    """
    env = {**speed.environment(threads), "device": str(device)}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    return env


# --------------------------------------------------------------------------------------- (i) CUDA tests
def parse_junit(path: str | Path) -> dict[str, int]:
    """Counts of a pytest JUnit XML report.

    Args:
        path: the file written by ``pytest --junitxml``.

    Returns:
        ``tests``, ``passed``, ``failed``, ``errors`` and ``skipped`` (summed over the test suites).
    """
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    return {
        "tests": counts["tests"],
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
    }


def run_cuda_tests(device: torch.device, budget: Budget, tmp: Path) -> dict:
    """Section (i): ``pytest -m cuda tests`` in a subprocess.

    Args:
        device: device under test (the section is skipped on the CPU).
        budget: the shared budget (the subprocess is stopped when it is spent).
        tmp: scratch folder for the JUnit XML.

    Returns:
        ``status`` (``"ok"``, ``"failed"``, ``"skipped: no CUDA"`` or ``"stopped: time budget"``), the counts
        of :func:`parse_junit`, ``returncode``, ``seconds`` and the ``command``.
    """
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "tests", "-q", "-p", "no:cacheprovider",
               f"--junitxml={tmp / 'cuda_tests.xml'}"]
    result: dict = {"command": " ".join(["python"] + command[1:-1])}
    if device.type != "cuda":
        return {**result, "status": "skipped: no CUDA"}
    if budget.spent("cuda_tests"):
        return {**result, "status": "stopped: time budget"}
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=_ROOT, capture_output=True, text=True, timeout=budget.left(), check=False)
    except subprocess.TimeoutExpired:
        budget.stopped("cuda_tests")
        return {**result, "status": "stopped: time budget", "seconds": time.perf_counter() - start}
    result.update(returncode=done.returncode, seconds=time.perf_counter() - start,
                  output_tail=done.stdout[-1500:] + done.stderr[-500:])
    if not (tmp / "cuda_tests.xml").exists():
        return {**result, "status": "failed"}
    result.update(parse_junit(tmp / "cuda_tests.xml"))
    result["status"] = "ok" if result["failed"] == 0 and result["errors"] == 0 and result["tests"] > 0 else "failed"
    return result


# -------------------------------------------------------------------------------- (ii) bundle inference
def _read_config(files: Sequence[Path], overrides: dict):
    """A ``ConfigParser`` over ``files`` (merged in order) with ``overrides`` set (ids as in ``--key`` overrides)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    for key, value in overrides.items():
        parser[key] = value
    return parser


def phantom_cine(seed: int, frames: int, size: int) -> dict[str, torch.Tensor]:
    """A phantom cine, intensities scaled to [0, 1] (1st-99th percentile, clipped) as the bundles' pipelines do.

    Args:
        seed: the phantom's seed.
        frames: frames, ED first.
        size: height = width; the voxel size grows below 96 so that the heart fits in the field of view.

    Returns:
        ``image`` float32 ``(frames, size, size)``, ``label`` int64 of the same shape, ``es`` (frame index).
    """
    from monai.transforms import ScaleIntensityRangePercentiles

    from monai_cardiac.data import make_cine_phantom

    spacing = 1.5 * max(1.0, 96.0 / size)
    phantom = make_cine_phantom(seed, num_frames=frames, spatial_size=(size, size), spacing=(spacing, spacing))
    image = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)(torch.as_tensor(phantom["image"]))
    return {"image": torch.as_tensor(image).float(), "label": torch.as_tensor(phantom["label"]).long(),
            "es": int(phantom["es"])}


def joint_bundle_network(overrides: dict, seed: int) -> tuple[torch.nn.Module, dict, object]:
    """The joint bundle's inference ``network_def`` with the random weights of ``build_network``.

    The weights are those of :func:`joint_inference_speed.build_network` at the config's width (its motion
    RNN's input weights are redrawn so that the flow is a few voxels, not a near-identity); they load into the
    config's network because ``StackedJointMotionSegNet`` has the parameters of ``JointMotionSegNet``.

    Args:
        overrides: config overrides (``--quick`` sets ``width_multiplier`` and ``roi_size``).
        seed: seed of the weights.

    Returns:
        The network (fp32, CPU, eval mode), ``{"width", "roi_size", "outputs"}`` read from the config, and the
        ``ConfigParser`` (its ``network`` item moves this same module to ``device``, as the bundle does).
    """
    parser = _read_config([_JOINT_BUNDLE / "inference.json"], overrides)
    net = parser.get_parsed_content("network_def").eval()
    width = float(parser.get_parsed_content("width_multiplier"))
    roi = list(parser.get_parsed_content("roi_size"))
    net.load_state_dict(speed.build_network(width, seed, min(roi)).state_dict())
    return net, {"width": width, "roi_size": roi, "outputs": list(net.outputs)}, parser


def probabilistic_bundle_network(
    overrides: dict, seed: int, flow_rms: float = 3.0
) -> tuple[torch.nn.Module, dict, object]:
    """The probabilistic bundle's inference ``network_def`` with random weights that move a few voxels.

    A fresh decoder predicts an almost-zero velocity (its last convolution starts with std 1e-5), which would
    make any precision look exact; that convolution's weights are scaled so that the smoothed velocity on a
    random cine has ``flow_rms`` voxels RMS (the velocity is linear in them, the bias being zero).

    Args:
        overrides: config overrides (``--quick`` sets ``roi_size``).
        seed: seed of the weights.
        flow_rms: target velocity RMS in voxels.

    Returns:
        The network (fp32, CPU, eval mode), ``{"roi_size"}`` read from the config, and the ``ConfigParser``.
    """
    parser = _read_config([_PROBABILISTIC_BUNDLE / "inference.json"], overrides)
    torch.manual_seed(seed)
    net = parser.get_parsed_content("network_def").eval()
    roi = list(parser.get_parsed_content("roi_size"))
    cine = torch.rand(1, 4, *roi, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        velocity = net.decode(net.encode(cine[:, :1], cine[:, 1:]), cine[:, :1])["velocity"]
    rms = velocity.pow(2).mean().sqrt().item()
    with torch.no_grad():
        net.decoder.velocity.conv.weight.mul_(flow_rms / (rms + 1e-12))
    return net, {"roi_size": roi}, parser


def _joint_outputs(out: torch.Tensor, outputs: Sequence[str], frames: int, classes: int = 4) -> dict:
    """Split a ``StackedJointMotionSegNet`` output into its ddf ``(T, 2, H, W)`` and labels ``(frames, H, W)``."""
    sources = frames - 1
    sizes = {"ddf_to_target": 2 * sources, "warped_sources": sources, "seg_logits_target": classes,
             "seg_logits_sources": classes * sources}
    parts = dict(zip(outputs, out.float().cpu()[0].split([sizes[k] for k in outputs])))
    result = {}
    if "ddf_to_target" in parts:
        result["ddf"] = parts["ddf_to_target"].unflatten(0, (sources, 2))
    if "seg_logits_target" in parts:
        logits = [parts["seg_logits_target"][None]]
        if "seg_logits_sources" in parts:
            logits.append(parts["seg_logits_sources"].unflatten(0, (sources, classes)))
        result["labels"] = torch.cat(logits).argmax(1)
    return result


def compare_to_cpu(
    bundle: str, device: torch.device, dtype: str, quick: bool = False, seed: int = 0, frames: int | None = None
) -> dict:
    """Section (ii) for one bundle: the network under autocast on ``device`` against fp32 on the CPU.

    The reference runs first, fp32 on the CPU; then the config's ``network`` item (``network_def`` moved to
    ``device``, with the memory format the config gives, e.g. channels_last for the joint bundle) runs under
    autocast (the engines' AMP) on the same phantom, both under ``torch.inference_mode``.

    Args:
        bundle: ``"joint"`` or ``"probabilistic_motion"``.
        device: device under test.
        dtype: autocast dtype, a key of :data:`TOLERANCES`.
        quick: use :data:`QUICK`'s sizes (width and ROI set over the config).
        seed: seed of the weights and of the phantom.
        frames: frames of the phantom cine (default 30, the ACDC norm; quick: :data:`QUICK`'s).

    Returns:
        ``bundle``, ``network``, ``device``, ``autocast``, the config values used, ``frames``,
        ``max_abs_ddf_diff_voxels``, ``ddf_rms_voxels`` (of the reference), ``label_agreement_pct`` (joint:
        arg-max labels of every frame; probabilistic: the phantom's ED labels warped to every frame with each
        displacement), ``finite``, ``tolerance`` and ``passed``.
    """
    frames = frames or (QUICK["frames"] if quick else 30)
    overrides: dict = {"device": f"$torch.device('{device}')"}
    if quick:
        overrides["roi_size"] = [QUICK["size"]] * 2
    if bundle == "joint":
        if quick:
            overrides["width_multiplier"] = QUICK["width"]
        net, config, parser = joint_bundle_network(overrides, seed)
    elif bundle == "probabilistic_motion":
        net, config, parser = probabilistic_bundle_network(overrides, seed)
    else:
        raise ValueError(f"unknown bundle {bundle!r}")
    size = min(config["roi_size"])
    cine = phantom_cine(seed, frames, size)
    x = cine["image"][None]
    with torch.inference_mode():
        reference = net(x)
    tested = parser.get_parsed_content("network").eval()  # the same module, moved as the config says
    with torch.inference_mode():
        with _autocast(device, dtype):
            out = tested(x.to(device))
        _sync(device)
    finite = bool(torch.isfinite(out).all())
    if bundle == "joint":
        ref, got = _joint_outputs(reference, config["outputs"], frames), _joint_outputs(out, config["outputs"], frames)
    else:
        from monai_cardiac.displacement import warp_labels

        ed = cine["label"][:1, None].expand(frames, 1, size, size)
        ref = {"ddf": reference[0].unflatten(0, (frames, 2))}
        got = {"ddf": out.float().cpu()[0].unflatten(0, (frames, 2))}
        for d in (ref, got):
            d["labels"] = warp_labels(ed, d["ddf"]) if bool(torch.isfinite(d["ddf"]).all()) else None
    tolerance = TOLERANCES[dtype]
    row = {"bundle": bundle, "network": type(net).__name__, "device": str(device), "autocast": dtype,
           "reference": "fp32, NCHW, cpu", "channels_last": _is_channels_last(tested), **config, "frames": frames,
           "finite": finite, "tolerance": tolerance}
    row["max_abs_ddf_diff_voxels"] = (got["ddf"] - ref["ddf"]).abs().max().item() if "ddf" in ref else None
    row["ddf_rms_voxels"] = ref["ddf"].pow(2).mean().sqrt().item() if "ddf" in ref else None
    row["label_agreement_pct"] = (
        100.0 * (got["labels"] == ref["labels"]).float().mean().item()
        if ref.get("labels") is not None and got.get("labels") is not None
        else None
    )
    checks = [finite]
    if row["max_abs_ddf_diff_voxels"] is not None:
        checks.append(row["max_abs_ddf_diff_voxels"] <= tolerance["max_abs_ddf_diff_voxels"])
    if "labels" in ref:
        checks.append(row["label_agreement_pct"] is not None
                      and row["label_agreement_pct"] >= tolerance["min_label_agreement_pct"])
    row["passed"] = all(checks)
    return row


def _is_channels_last(net: torch.nn.Module) -> bool:
    """Whether the first 4-d weight of ``net`` with several input channels and a spatial kernel is channels_last."""
    weight = next((p for p in net.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last)


def run_bundle_inference(device: torch.device, quick: bool, seed: int, budget: Budget) -> dict:
    """Section (ii): :func:`compare_to_cpu` for both bundles with the device's AMP dtype.

    Args:
        device: device under test.
        quick: tiny sizes.
        seed: seed of the weights and inputs.
        budget: the shared budget.

    Returns:
        ``status`` (``"ok"``, ``"failed"`` or ``"stopped: time budget"``) and ``rows``.
    """
    rows = []
    for bundle in ("joint", "probabilistic_motion"):
        if budget.spent("bundle_inference"):
            return {"status": "stopped: time budget", "rows": rows}
        try:
            rows.append(compare_to_cpu(bundle, device, amp_dtype(device), quick, seed))
        except Exception as error:  # noqa: BLE001 - recorded as a failed check (e.g. out of memory), not raised
            rows.append({"bundle": bundle, "device": str(device), "autocast": amp_dtype(device),
                         "error": f"{type(error).__name__}: {error}"[:500], "passed": False})
        _free(device)
    return {"status": "ok" if all(r["passed"] for r in rows) else "failed", "rows": rows}


# ------------------------------------------------------------------------------------- (iii) joint speed
def speed_configs(device: torch.device) -> list[dict]:
    """Precision/layout configurations of section (iii) on ``device`` (``torch.compile`` excluded)."""
    configs = [("fp32", None, False), ("fp32-cl", None, True), ("bf16-cl", "bfloat16", True)]
    if device.type == "cuda":
        configs.insert(2, ("fp16-cl", "float16", True))
    return [{"name": n, "label": _label(dtype, cl), "autocast": dtype, "channels_last": cl} for n, dtype, cl in configs]


def _label(dtype: str | None, channels_last: bool, compiled: bool = False) -> str:
    precision = {None: "fp32", "float16": "fp16 autocast", "bfloat16": "bf16 autocast"}[dtype]
    return precision + (" + channels_last" if channels_last else " NCHW") + (" + torch.compile" if compiled else "")


def time_forward(net: Callable, inputs: Sequence[torch.Tensor], device: torch.device, dtype: str | None,
                 warmup: int, repeats: int, budget: Budget | None = None) -> tuple[list[float], object]:
    """Time ``net(*inputs)`` under ``torch.inference_mode`` and autocast.

    Args:
        net: the network (or compiled network), on ``device``.
        inputs: its inputs, on ``device``.
        device: where it runs (CUDA work is synchronised before and after every run).
        dtype: autocast dtype, ``None`` for none.
        warmup: untimed runs first.
        repeats: timed runs.
        budget: when given and spent, stop after the first timed run.

    Returns:
        The timed runs (seconds) and the last output.
    """
    times = []
    with torch.inference_mode(), _autocast(device, dtype):
        for run in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            out = net(*inputs)
            _sync(device)
            if run >= warmup:
                times.append(time.perf_counter() - start)
                if budget is not None and budget.spent("joint_speed"):
                    break
    return times, out


def _speed_row(config: dict, times: Sequence[float], gflop: float | None) -> dict:
    median = statistics.median(times)
    return {**config, "median_ms": 1000 * median, "min_ms": 1000 * min(times), "max_ms": 1000 * max(times),
            "repeats": len(times), "gflop_per_s": gflop / median if gflop else None}


def _speed_sizes(quick: bool) -> dict:
    return ({"width": QUICK["width"], "size": QUICK["size"], "frames": QUICK["frames"]} if quick
            else dict(PAPER_SPEED))


def run_joint_speed(device: torch.device, quick: bool, seed: int, warmup: int, repeats: int, budget: Budget) -> dict:
    """Section (iii) without ``torch.compile`` (see :func:`run_compiled_speed`).

    Args:
        device: device under test.
        quick: tiny sizes (else width 1.0, 192 x 192, 50 frames).
        seed: seed of the weights (:func:`joint_inference_speed.build_network`) and inputs.
        warmup: untimed runs per configuration.
        repeats: timed runs per configuration.
        budget: the shared budget.

    Returns:
        ``status``, the sizes, ``params_m``, ``gflop`` (:func:`joint_inference_speed.count_gflop`),
        ``target_ms``, ``rows`` (one per configuration: ``median_ms``, ``min_ms``, ``max_ms``, ``gflop_per_s``,
        ``peak_cuda_mb``, or ``error``), ``best`` and ``target_met`` (``None`` unless the sizes are the
        paper's and the device is CUDA).
    """
    sizes = _speed_sizes(quick)
    result = {"status": "ok", **sizes, "target_ms": SPEED_TARGET_MS, "warmup": warmup, "rows": [], "notes": []}
    if device.type == "cuda":
        result["notes"].append(
            f"fp32 convolutions run in TF32 where cudnn.allow_tf32 is on (here: {torch.backends.cudnn.allow_tf32})."
        )
    base = speed.build_network(sizes["width"], seed, sizes["size"]).to(device)
    inputs = [x.to(device) for x in speed.make_inputs(sizes["frames"], sizes["size"], seed)]
    result["params_m"] = sum(p.numel() for p in base.parameters()) / 1e6
    result["gflop"] = speed.count_gflop(base, *inputs)
    for config in speed_configs(device):
        if budget.spent("joint_speed"):
            result["status"] = "stopped: time budget"
            break
        net = base.to(memory_format=torch.channels_last if config["channels_last"] else torch.contiguous_format)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            times, _ = time_forward(net, inputs, device, config["autocast"], warmup, repeats, budget)
        except Exception as error:  # noqa: BLE001 - a configuration the device lacks is recorded, not raised
            result["rows"].append({**config, "error": f"failed: {type(error).__name__}: {error}"[:500]})
            continue
        row = _speed_row(config, times, result["gflop"])
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        result["rows"].append(row)
    base = net = None  # release the weights before the next section
    _free(device)
    _update_best(result, device)
    return result


def _update_best(result: dict, device: torch.device) -> None:
    timed = [r for r in result["rows"] if "median_ms" in r]
    result["best"] = min(timed, key=lambda r: r["median_ms"])["name"] if timed else None
    at_paper_sizes = all(result[k] == v for k, v in PAPER_SPEED.items())
    result["target_met"] = (
        min(r["median_ms"] for r in timed) <= SPEED_TARGET_MS if timed and at_paper_sizes and device.type == "cuda"
        else None
    )


def compile_worker(job: dict) -> dict:
    """Time the compiled joint network in this process (run it in a child: see :func:`run_compiled_speed`).

    Args:
        job: ``device``, ``width``, ``size``, ``frames``, ``seed``, ``autocast``, ``backend``, ``mode``,
            ``threads``, ``warmup``, ``repeats``.

    Returns:
        ``times_s`` (timed runs), ``first_call_s`` (the first call, which compiles), ``peak_cuda_mb`` and
        ``max_abs_ddf_diff_vs_eager`` (voxels, same autocast).
    """
    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    net = speed.build_network(job["width"], job["seed"], job["size"]).to(device, memory_format=torch.channels_last)
    inputs = [x.to(device) for x in speed.make_inputs(job["frames"], job["size"], job["seed"])]
    compiled = torch.compile(net, backend=job["backend"], mode=job["mode"])
    first, _ = time_forward(compiled, inputs, device, job["autocast"], 0, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, out = time_forward(compiled, inputs, device, job["autocast"], job["warmup"], job["repeats"])
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    _, eager = time_forward(net, inputs, device, job["autocast"], 0, 1)
    diff = (out["ddf_to_target"].float() - eager["ddf_to_target"].float()).abs().max().item()
    return {"times_s": times, "first_call_s": first[0], "peak_cuda_mb": peak, "max_abs_ddf_diff_vs_eager": diff}


def run_compiled_speed(result: dict, device: torch.device, args: argparse.Namespace, budget: Budget) -> None:
    """Add the ``torch.compile`` row to section (iii)'s ``result``, timed in a child process.

    The configuration is the device's AMP with channels_last. The child is stopped when the budget runs out;
    a failure (compiler missing, unsupported operator, time-out) is recorded as the row's ``error``.

    Args:
        result: what :func:`run_joint_speed` returned (changed in place: a row, ``best``, ``target_met``).
        device: device under test.
        args: the command line (``seed``, ``threads``, ``warmup``, ``repeats``, ``compile_backend``,
            ``compile_mode``).
        budget: the shared budget.
    """
    dtype = amp_dtype(device)
    config = {"name": "compile", "label": _label(dtype, True, compiled=True), "autocast": dtype,
              "channels_last": True, "backend": args.compile_backend, "mode": args.compile_mode}
    if budget.spent("joint_speed (torch.compile)"):
        result["rows"].append({**config, "error": "not run: time budget spent"})
        return
    job = {"device": str(device), **{k: result[k] for k in ("width", "size", "frames")}, "seed": args.seed,
           "autocast": dtype, "backend": args.compile_backend, "mode": args.compile_mode, "threads": args.threads,
           "warmup": args.warmup, "repeats": args.repeats}
    command = [sys.executable, str(Path(__file__).resolve()), "--compile_worker", json.dumps(job)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=budget.left(), check=False)
    except subprocess.TimeoutExpired:
        budget.stopped("joint_speed (torch.compile)")
        result["rows"].append({**config, "error": f"stopped: did not finish within the {budget.seconds:g} s budget"})
        return
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        result["rows"].append({**config, "error": f"failed: {reason}"[:500]})
        return
    worker = json.loads(lines[-1])
    row = _speed_row(config, worker["times_s"], result["gflop"])
    row.update(first_call_s=worker["first_call_s"], peak_cuda_mb=worker["peak_cuda_mb"],
               max_abs_ddf_diff_vs_eager=worker["max_abs_ddf_diff_vs_eager"])
    result["rows"].append(row)
    _update_best(result, device)


# ------------------------------------------------------------------------------ (iv) training throughput
def schedule_hours(epochs: dict[str, int], iterations_per_epoch: int, iterations_per_s: dict[str, float]) -> float:
    """Hours of the three-stage schedule: ``sum(epochs[s] * iterations_per_epoch / iterations_per_s[s]) / 3600``.

    Args:
        epochs: epochs per stage.
        iterations_per_epoch: optimizer steps per epoch.
        iterations_per_s: measured throughput per stage.

    Returns:
        The estimate in hours (training steps only).
    """
    return sum(epochs[s] * iterations_per_epoch / iterations_per_s[s] for s in epochs) / 3600.0


def training_batch(batch_size: int, window: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """One batch as the joint bundle's training pipeline gives it, from phantom cines.

    Args:
        batch_size: slices in the batch (phantom seeds ``seed ... seed + batch_size - 1``).
        window: frames per slice, ED first.
        size: height = width.
        seed: first phantom seed.

    Returns:
        ``image`` float ``(B, window, size, size)`` in [0, 1], ``label`` float of the same shape and
        ``label_mask`` bool ``(B, window)``, true on ED and ES (the frames ACDC labels).
    """
    cines = [phantom_cine(seed + i, window, size) for i in range(batch_size)]
    mask = torch.zeros(batch_size, window, dtype=torch.bool)
    for i, cine in enumerate(cines):
        mask[i, [0, cine["es"]]] = True
    images = torch.stack([c["image"] for c in cines])
    return {"image": images, "label": torch.stack([c["label"] for c in cines]).float(), "label_mask": mask}


def run_training_throughput(device: torch.device, quick: bool, seed: int, warmup: int, repeats: int,
                            budget: Budget) -> dict:
    """Section (iv): iterations/s of each stage of ``train.json`` + ``full_scale.json`` and the schedule's hours.

    Args:
        device: device under test; AMP is on where the bundle turns it on (CUDA).
        quick: tiny sizes (width, ROI, window and batch size set over the config).
        seed: seed of the weights and batch.
        warmup: untimed iterations per stage.
        repeats: timed iterations per stage.
        budget: the shared budget.

    Returns:
        ``status``, the config values used, ``amp``, ``stages`` (``iterations``, ``seconds``,
        ``iterations_per_s``, ``peak_cuda_mb`` per stage), ``epochs``, ``iterations_per_epoch``,
        ``assumption``, ``formula`` and ``estimated_hours`` (``None`` when a stage was not measured).
    """
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer
    from monai.utils import set_determinism

    from monai_cardiac.engines import JointTrainingIteration

    amp = device.type == "cuda"
    overrides = {"device": f"$torch.device('{device}')", "amp": amp}
    if quick:
        overrides.update(width_multiplier=QUICK["width"], roi_size=[QUICK["size"]] * 2,
                         window_frames=QUICK["window"], batch_size=QUICK["batch_size"])
    parser = _read_config([_JOINT_BUNDLE / "train.json", _JOINT_BUNDLE / "full_scale.json"], overrides)
    config = {key: parser.get_parsed_content(key) for key in
              ("width_multiplier", "roi_size", "window_frames", "batch_size", "learning_rate", "epochs")}
    config["roi_size"] = list(config["roi_size"])
    set_determinism(seed=seed)
    network = parser.get_parsed_content("network")
    losses = {"motion": parser.get_parsed_content("loss"), "joint": parser.get_parsed_content("loss"),
              "segmentation": parser.get_parsed_content("segmentation_loss")}
    batch = training_batch(config["batch_size"], config["window_frames"], min(config["roi_size"]), seed)
    ipe = math.ceil(TRAIN_SLICES / config["batch_size"])
    result = {"status": "ok", **config, "amp": amp, "device": str(device), "warmup": warmup, "stages": {},
              "iterations_per_epoch": ipe,
              "assumption": f"one epoch = ceil({TRAIN_SLICES} training slices of the acdc_dev split / batch size "
                            f"{config['batch_size']}) = {ipe} iterations; one phantom batch reused (data loading, "
                            "augmentation and validation not timed)",
              "formula": "hours = sum over stages of epochs[stage] * iterations_per_epoch / "
                         "iterations_per_s[stage] / 3600"}
    for stage in STAGES:  # the schedule's order; each stage's optimizer marks its trainable parameters
        if budget.spent("training_throughput"):
            result["status"] = "stopped: time budget"
            break
        optimizer = parser.get_parsed_content("train#optimizer" if stage == "joint" else f"stages#{stage}#optimizer")
        iterations = warmup + repeats
        trainer = SupervisedTrainer(
            device=device, max_epochs=1, epoch_length=iterations, train_data_loader=[batch] * iterations,
            network=network, optimizer=optimizer, loss_function=losses[stage],
            iteration_update=JointTrainingIteration(stage), amp=amp,
        )
        stamps: list[float] = []

        def _stamp(engine, _stamps=stamps) -> None:  # bound per stage
            _sync(device)
            _stamps.append(time.perf_counter())
            if budget.left() <= 0 and len(_stamps) > warmup:  # keep what was timed, stop the rest
                engine.terminate()

        trainer.add_event_handler(Events.ITERATION_COMPLETED, _stamp)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        start = time.perf_counter()
        try:
            trainer.run()
        except Exception as error:  # noqa: BLE001 - e.g. out of memory: recorded, the other stages still run
            reason = f"{type(error).__name__}: {error}"[:500]
            result["stages"][stage] = {"epochs": config["epochs"][stage], "error": reason}
            result["status"] = "failed"
            del trainer, optimizer
            _free(device)
            continue
        timed = len(stamps) - warmup
        if timed < repeats:
            budget.stopped(f"training_throughput ({stage})")
            result["status"] = "stopped: time budget"
        seconds = stamps[-1] - (stamps[warmup - 1] if warmup else start)
        result["stages"][stage] = {
            "iterations": timed, "seconds": seconds, "iterations_per_s": timed / seconds,
            "epochs": config["epochs"][stage],
            "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        }
    measured = {s: r["iterations_per_s"] for s, r in result["stages"].items() if "iterations_per_s" in r}
    epochs = {s: config["epochs"][s] for s in STAGES}
    result["estimated_hours"] = schedule_hours(epochs, ipe, measured) if len(measured) == len(STAGES) else None
    del network, losses
    _free(device)
    return result


# ------------------------------------------------------------------------------------------------ report
def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _report_cuda_tests(tests: dict) -> list[str]:
    if "tests" not in tests:
        return [f"`{tests['command']}`: {tests['status']}."]
    return [f"`{tests['command']}`: {tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors, "
            f"{tests['skipped']} skipped in {tests['seconds']:.1f} s: {tests['status']}."]


def _report_bundles(section: dict) -> list[str]:
    bounds = "; ".join(f"{dtype}: max |ddf diff| <= {t['max_abs_ddf_diff_voxels']} voxels, label agreement >= "
                       f"{t['min_label_agreement_pct']} %" for dtype, t in TOLERANCES.items())
    rows = []
    for r in section["rows"]:
        if "error" in r:
            rows.append([r["bundle"], "-", r["device"], r["autocast"], "-", "-", "-", "-", "-", "-",
                         f"FAIL: {r['error']}"])
            continue
        rows.append([r["bundle"], r["network"], r["device"], r["autocast"], "x".join(map(str, r["roi_size"])),
                     r["frames"], _fmt(r["max_abs_ddf_diff_voxels"]), _fmt(r["ddf_rms_voxels"]),
                     _fmt(r["label_agreement_pct"], ".2f"), r["finite"], "pass" if r["passed"] else "FAIL"])
    header = ["bundle", "network", "device", "autocast", "ROI", "frames", "max abs ddf diff (voxels)",
              "ddf RMS (voxels)", "label agreement (%)", "finite", "result"]
    return [f"Status: {section['status']}. Same random weights, one phantom cine; tolerances: {bounds}.", "",
            *_table(header, rows)]


def _report_speed(sp: dict) -> list[str]:
    target = {True: "met", False: "NOT met", None: "not applicable at these sizes/device"}[sp["target_met"]]
    rows = []
    for r in sp["rows"]:
        if "error" in r:
            rows.append([r["label"], "-", "-", "-", "-", "-", r["error"]])
            continue
        note = ""
        if "first_call_s" in r:
            note = (f"backend {r['backend']}, mode {r['mode'] or 'default'}; first call (compiles) "
                    f"{r['first_call_s']:.1f} s; max abs ddf diff vs eager {r['max_abs_ddf_diff_vs_eager']:.2g} "
                    "voxels")
        rows.append([r["label"], f"{r['median_ms']:.1f}", f"{r['min_ms']:.1f}", f"{r['max_ms']:.1f}",
                     _fmt(r["gflop_per_s"], ".0f"), _fmt(r["peak_cuda_mb"], ".0f"), note])
    header = ["configuration", "median (ms)", "min (ms)", "max (ms)", "GFLOP/s", "peak CUDA MB", "note"]
    return [f"Width {sp['width']:g} ({sp['params_m']:.2f} M parameters), one slice of {sp['frames']} frames "
            f"({sp['frames'] - 1} sources + ED target) of {sp['size']} x {sp['size']}, {sp['gflop']:.1f} GFLOP; "
            f"median after {sp['warmup']} warm-up run(s). Target <= {sp['target_ms']:g} ms per slice: {target} "
            f"(best: {sp['best']}). Status: {sp['status']}.", "", *_table(header, rows),
            *([""] + [f"- {note}" for note in sp["notes"]] if sp["notes"] else [])]


def _report_training(tr: dict) -> list[str]:
    rows = []
    for stage, s in tr["stages"].items():
        if "error" in s:
            rows.append([stage, s["epochs"], "-", "-", f"failed: {s['error']}", "-"])
            continue
        rows.append([stage, s["epochs"], s["iterations"], f"{s['seconds']:.2f}", f"{s['iterations_per_s']:.3g}",
                     _fmt(s["peak_cuda_mb"], ".0f")])
    header = ["stage", "epochs", "timed iterations", "seconds", "iterations/s", "peak CUDA MB"]
    hours = ("not available (a stage was not measured)" if tr["estimated_hours"] is None
             else f"{tr['estimated_hours']:.3g} h")
    return [f"Width {tr['width_multiplier']:g}, ROI {tr['roi_size'][0]} x {tr['roi_size'][1]}, window "
            f"{tr['window_frames']} frames, batch size {tr['batch_size']}, AMP {tr['amp']}, on {tr['device']}; "
            f"{tr['warmup']} warm-up iteration(s) per stage. Status: {tr['status']}.", "", *_table(header, rows), "",
            f"Paper schedule estimate: {hours}. {tr['formula']}; {tr['assumption']}."]


def format_report(report: dict) -> str:
    """Render the report as Markdown.

    Args:
        report: what :func:`main` writes to ``report.json``.

    Returns:
        The Markdown text, ending with a newline.
    """
    env, settings, sections = report["environment"], report["settings"], report["sections"]
    cuda = f", CUDA {env['cuda_version']}, cuDNN {env['cudnn_version']}" if env.get("cuda_version") else ""
    stopped = f" (stopped in: {', '.join(report['budget_exhausted_in'])})" if report["budget_exhausted_in"] else ""
    lines = [
        "# GPU check", "",
        f"Device under test: {env['device']} ({env['cuda'] or 'no CUDA'}); torch {env['torch']}{cuda}; CPU "
        f"{env['cpu']} (threads: {env['threads']}). quick: {settings['quick']}; budget {settings['time_budget_s']:g} "
        f"s, used {report['elapsed_s']:.1f} s{stopped}. Overall: {'PASS' if report['passed'] else 'FAIL'}.",
        "", "## (i) CUDA tests", "", *_report_cuda_tests(sections["cuda_tests"]),
        "", "## (ii) Bundle networks under AMP against fp32 on the CPU", "",
        *_report_bundles(sections["bundle_inference"]),
        "", "## (iii) Joint network inference speed", "", *_report_speed(sections["joint_speed"]),
        "", "## (iv) Training throughput (train.json + full_scale.json)", "",
        *_report_training(sections["training_throughput"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check (or, with the internal ``--compile_worker`` argument, the compiled timing).

    Args:
        argv: command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 when every correctness check holds (CUDA tests, bundle comparisons), 1 otherwise.
    """
    args = parse_args(argv)
    if args.compile_worker is not None:
        print(json.dumps(compile_worker(json.loads(args.compile_worker))))
        return 0
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    budget = Budget(args.time_budget_s)
    args.output.mkdir(parents=True, exist_ok=True)
    sections: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        sections["cuda_tests"] = run_cuda_tests(device, budget, Path(tmp))
    _progress("cuda_tests", sections["cuda_tests"]["status"], budget)
    sections["bundle_inference"] = run_bundle_inference(device, args.quick, args.seed, budget)
    _progress("bundle_inference", sections["bundle_inference"]["status"], budget)
    sections["joint_speed"] = run_joint_speed(device, args.quick, args.seed, args.warmup, args.repeats, budget)
    _progress("joint_speed (eager)", sections["joint_speed"]["status"], budget)
    sections["training_throughput"] = run_training_throughput(
        device, args.quick, args.seed, args.warmup, args.repeats, budget
    )
    _progress("training_throughput", sections["training_throughput"]["status"], budget)
    run_compiled_speed(sections["joint_speed"], device, args, budget)
    _progress("joint_speed (torch.compile)", sections["joint_speed"]["rows"][-1].get("error", "ok"), budget)
    passed = sections["cuda_tests"]["status"] in ("ok", "skipped: no CUDA") and all(
        r["passed"] for r in sections["bundle_inference"]["rows"]
    ) and sections["bundle_inference"]["status"] != "stopped: time budget"
    report = {
        "environment": device_environment(device, args.threads),
        "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
                     if key != "compile_worker"},
        "tolerances": TOLERANCES,
        "sections": sections,
        "elapsed_s": budget.elapsed(),
        "budget_exhausted_in": budget.exhausted_in,
        "passed": passed,
    }
    (args.output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "report.md").write_text(format_report(report))
    print(format_report(report), end="")
    return 0 if passed else 1


def _progress(section: str, status: str, budget: Budget) -> None:
    print(f"[gpu_check] {section}: {status} ({budget.elapsed():.1f} s)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
