"""Tests of ``benchmarks/gpu_check.py``: its CUDA checks (marker ``cuda``, skipped without a GPU) and its CPU mode.

The CPU mode (``--device cpu --quick``) runs the whole script in a subprocess, so the GPU check cannot rot
between the days a GPU is lent; no assertion is made on any time beyond its being positive.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

_ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = _ROOT / "benchmarks" / "gpu_check.py"
_FULL_SCALE = _ROOT / "bundles" / "joint" / "configs" / "full_scale.json"

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def gpu_check():
    """The script, imported from its file (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------ CUDA (skipped on CPU)
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("bundle", ["joint", "probabilistic_motion"])
def test_bundle_network_on_cuda_with_amp_matches_fp32_cpu(gpu_check, bundle):
    # the bundle's inference network_def at the config's sizes, fp16 autocast on CUDA vs fp32 on the CPU
    row = gpu_check.compare_to_cpu(bundle, torch.device("cuda"), "float16")
    tolerance = gpu_check.TOLERANCES["float16"]
    assert row["finite"]
    assert row["ddf_rms_voxels"] > 0.5  # the random weights move pixels: the comparison is not trivially exact
    assert row["max_abs_ddf_diff_voxels"] <= tolerance["max_abs_ddf_diff_voxels"]
    assert row["label_agreement_pct"] >= tolerance["min_label_agreement_pct"]
    assert row["passed"]


@pytest.mark.cuda
@needs_cuda
def test_joint_training_stages_run_on_cuda_with_amp(gpu_check):
    budget = gpu_check.Budget(300.0)
    result = gpu_check.run_training_throughput(torch.device("cuda"), True, 0, 1, 2, budget)
    assert result["amp"] is True and result["status"] == "ok"
    assert all(result["stages"][s]["iterations_per_s"] > 0 for s in gpu_check.STAGES)
    assert all(result["stages"][s]["peak_cuda_mb"] > 0 for s in gpu_check.STAGES)
    assert result["estimated_hours"] > 0


# ------------------------------------------------------------------------------------------- CPU logic
def test_parse_junit_counts(gpu_check, tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="7" failures="1" errors="1" '
                   'skipped="2"></testsuite></testsuites>')
    assert gpu_check.parse_junit(xml) == {"tests": 7, "passed": 3, "failed": 1, "errors": 1, "skipped": 2}


def test_quick_defaults_and_cuda_request_without_cuda(gpu_check, capsys):
    args = gpu_check.parse_args(["--device", "cpu", "--quick"])
    assert (args.repeats, args.warmup, args.compile_backend, args.time_budget_s) == (2, 1, "eager", 480.0)
    assert gpu_check.parse_args(["--device", "cpu"]).compile_backend == "inductor"
    if not torch.cuda.is_available():
        assert gpu_check.parse_args([]).device == "cpu"
        with pytest.raises(SystemExit):
            gpu_check.parse_args(["--device", "cuda"])
        assert "CUDA is not available" in capsys.readouterr().err


def test_schedule_hours_formula(gpu_check):
    hours = gpu_check.schedule_hours({"motion": 100, "segmentation": 50, "joint": 100}, 48,
                                     {"motion": 2.0, "segmentation": 8.0, "joint": 1.5})
    assert hours == pytest.approx((100 * 48 / 2.0 + 50 * 48 / 8.0 + 100 * 48 / 1.5) / 3600)


def test_spent_budget_stops_sections_and_says_so(gpu_check):
    budget = gpu_check.Budget(1e-9)
    cpu = torch.device("cpu")
    assert gpu_check.run_bundle_inference(cpu, True, 0, budget) == {"status": "stopped: time budget", "rows": []}
    training = gpu_check.run_training_throughput(cpu, True, 0, 1, 2, budget)
    assert training["status"] == "stopped: time budget" and training["stages"] == {}
    assert training["estimated_hours"] is None
    assert "bundle_inference" in budget.exhausted_in and "training_throughput" in budget.exhausted_in


@pytest.fixture(scope="module")
def cpu_mode(tmp_path_factory):
    """Run ``gpu_check.py --device cpu --quick`` on one thread; return its exit code, JSON report and Markdown."""
    out = tmp_path_factory.mktemp("gpu_check_cpu")
    command = [sys.executable, str(_SCRIPT), "--device", "cpu", "--quick", "--threads", "1", "--output", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    markdown = (out / "report.md").read_text() if (out / "report.md").exists() else ""
    return done, report, markdown


def test_cpu_mode_passes_and_writes_both_reports(cpu_mode):
    done, report, markdown = cpu_mode
    assert done.returncode == 0, done.stderr[-3000:]
    assert report["passed"] is True and report["budget_exhausted_in"] == []
    assert report["settings"]["device"] == "cpu" and report["settings"]["quick"] is True
    assert 0 < report["elapsed_s"] < report["settings"]["time_budget_s"]
    for heading in ("## (i) CUDA tests", "## (ii) Bundle networks", "## (iii) Joint network inference speed",
                    "## (iv) Training throughput", "Overall: PASS", "Paper schedule estimate"):
        assert heading in markdown


def test_cpu_mode_skips_the_cuda_tests(cpu_mode):
    assert cpu_mode[1]["sections"]["cuda_tests"]["status"] == "skipped: no CUDA"


def test_cpu_mode_bundle_comparison_within_stated_tolerances(cpu_mode):
    section = cpu_mode[1]["sections"]["bundle_inference"]
    assert section["status"] == "ok"
    assert [r["bundle"] for r in section["rows"]] == ["joint", "probabilistic_motion"]
    for row in section["rows"]:
        tolerance = row["tolerance"]
        assert row["autocast"] == "bfloat16" and tolerance == cpu_mode[1]["tolerances"]["bfloat16"]
        assert row["finite"] and row["passed"]
        assert row["ddf_rms_voxels"] > 0.5
        assert 0 <= row["max_abs_ddf_diff_voxels"] <= tolerance["max_abs_ddf_diff_voxels"]
        assert tolerance["min_label_agreement_pct"] <= row["label_agreement_pct"] <= 100
        assert row["roi_size"] == [64, 64] and row["frames"] == 6
    assert [r["network"] for r in section["rows"]] == ["StackedJointMotionSegNet", "ProbabilisticMotionModel"]
    assert section["rows"][0]["channels_last"] is True  # the joint config moves its network to channels_last


def test_cpu_mode_speed_section(cpu_mode):
    section = cpu_mode[1]["sections"]["joint_speed"]
    assert (section["width"], section["size"], section["frames"]) == (0.0625, 64, 6)
    assert section["target_ms"] == 50.0 and section["target_met"] is None  # the target is for width 1.0 on CUDA
    assert section["gflop"] > 0 and section["params_m"] > 0
    names = [r["name"] for r in section["rows"]]
    assert names == ["fp32", "fp32-cl", "bf16-cl", "compile"]
    for row in section["rows"]:
        if row["name"] == "compile" and "error" in row:  # torch.compile may fail: the reason is recorded
            assert row["error"]
            continue
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"] and row["repeats"] == 2
    assert section["best"] in names


def test_cpu_mode_training_throughput_and_hours_estimate(cpu_mode):
    section = cpu_mode[1]["sections"]["training_throughput"]
    epochs = json.loads(_FULL_SCALE.read_text())["epochs"]
    assert section["status"] == "ok" and section["epochs"] == epochs
    assert (section["batch_size"], section["window_frames"], section["roi_size"]) == (2, 4, [64, 64])
    assert section["iterations_per_epoch"] == math.ceil(381 / section["batch_size"])
    stages = section["stages"]
    assert list(stages) == ["motion", "segmentation", "joint"]
    for stage in stages.values():
        assert stage["iterations"] == 2 and stage["seconds"] > 0
        assert stage["iterations_per_s"] == pytest.approx(stage["iterations"] / stage["seconds"])
    expected = sum(epochs[s] * section["iterations_per_epoch"] / stages[s]["iterations_per_s"] for s in epochs) / 3600
    assert section["estimated_hours"] == pytest.approx(expected)
