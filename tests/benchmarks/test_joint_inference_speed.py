"""Tests of the non-timing logic of ``benchmarks/joint_inference_speed.py`` (no assertion on any time)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from monai_cardiac.networks import JointMotionSegNet

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "joint_inference_speed.py"


@pytest.fixture(scope="module")
def bench():
    """The benchmark script, imported from its file (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("joint_inference_speed", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults(bench):
    args = bench.parse_args([])
    assert args.widths == [1.0, 0.25, 0.5]
    assert (args.frames, args.size, args.sources) == (50, 192, 49)
    assert args.threads == os.cpu_count()
    assert (args.repeats, args.warmup, args.chunk) == (3, 1, None)
    assert args.configs == ["fp32", "fp32-cl", "bf16-cl", "cuda-amp"]
    assert args.output is None and args.json is None


def test_chunk_covering_all_sources_is_accepted(bench):
    assert bench.parse_args(["--chunk", "49"]).chunk == 49
    assert bench.parse_args(["--frames", "11", "--chunk", "10"]).sources == 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "100"], "multiple of 16"),
        (["--widths", "1.0", "0"], "--widths must be positive"),
        (["--frames", "1"], "--frames must be at least 2"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--warmup", "-1"], "--warmup at least 0"),
        (["--chunk", "10"], "chunked inference is not available"),
        (["--configs", "fp64"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_with_a_message(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as raised:
        bench.parse_args(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_select_configs_drops_cuda_without_a_device_and_repeats(bench):
    kept, notes = bench.select_configs(["fp32", "cuda-amp", "fp32", "bf16-cl"], cuda_available=False)
    assert kept == ["fp32", "bf16-cl"]
    assert len(notes) == 1 and notes[0].startswith("cuda-amp") and "CUDA is not available" in notes[0]
    assert bench.select_configs(["cuda-amp", "fp32"], cuda_available=True) == (["cuda-amp", "fp32"], [])


@pytest.mark.parametrize(
    "seconds, text", [(2.5, "2.50 s"), (1.0, "1.00 s"), (0.0452, "45.2 ms"), (0.9999, "999.9 ms")]
)
def test_format_time(bench, seconds, text):
    assert bench.format_time(seconds) == text


def test_make_inputs_shapes_range_and_seed(bench):
    target, sources = bench.make_inputs(5, 32, seed=3)
    assert target.shape == (1, 1, 32, 32) and sources.shape == (1, 4, 32, 32)
    assert target.dtype == sources.dtype == torch.float32
    assert 0 <= min(target.min(), sources.min()) and max(target.max(), sources.max()) <= 1
    again = bench.make_inputs(5, 32, seed=3)
    assert torch.equal(again[0], target) and torch.equal(again[1], sources)
    assert not torch.equal(bench.make_inputs(5, 32, seed=4)[1], sources)


def test_build_network_is_reproducible_with_a_non_trivial_flow(bench):
    torch.set_num_threads(1)
    net = bench.build_network(0.125, seed=1, size=32, flow_rms=3.0)
    same = bench.build_network(0.125, seed=1, size=32, flow_rms=3.0)
    other = bench.build_network(0.125, seed=2, size=32, flow_rms=3.0)
    assert not net.training
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), same.state_dict().values()))
    assert not torch.equal(net.motion_rnn.input_conv.weight, other.motion_rnn.input_conv.weight)
    with torch.inference_mode():
        ddf = net(*bench.make_inputs(4, 32, seed=1))["ddf_to_target"]
    rms = ddf.pow(2).mean().sqrt().item()
    # a freshly built network moves < 0.01 voxel; the redrawn RNN weights give a flow of the requested order
    assert 1.0 < rms < 9.0


def test_count_gflop_scales_with_area_and_frames(bench):
    torch.set_num_threads(1)
    net = bench.build_network(0.125, seed=0, size=32)

    def count(frames: int, size: int) -> float:
        return bench.count_gflop(net, *bench.make_inputs(frames, size, seed=0))

    # every counted operation is a convolution: 4x the pixels is exactly 4x the work
    assert count(3, 64) == pytest.approx(4 * count(3, 32))
    # the target is encoded once, every source frame adds the same work (its encoder, motion and segmentation
    # passes): the count is affine in the number of frames
    two, three, five = count(2, 32), count(3, 32), count(5, 32)
    assert three - two > 0
    assert five - three == pytest.approx(2 * (three - two))


def test_compare_outputs_hand_computed(bench, tmp_path):
    ddf = torch.full((1, 2, 2, 2, 5), 2.0)  # (B, T, S, H, W), every component 2 voxels: RMS 2
    labels = torch.zeros(1, 2, 2, 5, dtype=torch.uint8)  # 20 pixels
    moved, relabelled = ddf.clone(), labels.clone()
    moved[0, 1, 0, 1, 3] += 0.25
    moved[0, 0, 1, 0, 0] -= 0.125
    relabelled[0, 0, 0, :3] = 3  # 3 of 20 pixels disagree: 85 %
    torch.save({"ddf": ddf, "labels": labels}, tmp_path / "ref.pt")
    torch.save({"ddf": moved, "labels": relabelled}, tmp_path / "other.pt")
    result = bench.compare_outputs(tmp_path / "ref.pt", tmp_path / "other.pt")
    assert result["max_abs_ddf_diff"] == pytest.approx(0.25)
    assert result["ddf_rms"] == pytest.approx(2.0)
    assert result["seg_agreement_pct"] == pytest.approx(85.0)


def test_format_report_rows(bench):
    env = {"torch": "2.x", "cpu": "Some CPU", "logical_cpus": 2, "cpu_capability": "AVX2",
           "bf16_instructions": [], "threads": 2, "cuda": None}
    settings = {"frames": 50, "size": 192, "sources_per_forward": 49, "warmup": 1, "repeats": 3}
    results = [
        {"width": 0.5, "config": "fp32", "threads": 2, "params_m": 1.2345, "median_s": 2.5, "min_s": 2.0,
         "max_s": 3.0, "gflop": 100.04, "gflop_per_s": 40.016, "peak_rss_mb": 1024.4, "peak_cuda_mb": None},
        {"width": 1.0, "config": "cuda-amp", "threads": 2, "params_m": 4.0, "median_s": 0.0452, "min_s": 0.04,
         "max_s": 0.05, "gflop": 400.0, "gflop_per_s": 8849.56, "peak_rss_mb": 2000.0,
         "peak_cuda_mb": 3071.6},
    ]
    comparison = [{"width": 0.5, "config": "bf16-cl", "max_abs_ddf_diff": 0.0123, "ddf_rms": 3.456,
                   "seg_agreement_pct": 99.5}]
    lines = bench.format_report(env, settings, results, comparison, ["a note"]).splitlines()
    assert "bf16 instructions: none" in lines[0] and "CUDA: none" in lines[0]
    assert lines[3] == (
        "| width | params (M) | precision/layout | device | threads | median per 50-frame slice | min | max "
        "| GFLOP | GFLOP/s | peak RSS MB | peak CUDA MB |"
    )
    assert lines[5] == "| 0.5 | 1.23 | fp32 NCHW | cpu | 2 | 2.50 s | 2.00 s | 3.00 s | 100.0 | 40.0 | 1024 | - |"
    assert lines[6] == (
        "| 1 | 4.00 | fp16 AMP + channels_last | cuda | 2 | 45.2 ms | 40.0 ms | 50.0 ms | 400.0 | 8849.6 | 2000 "
        "| 3072 |"
    )
    assert "| 0.5 | bf16 autocast + channels_last | cpu | 0.012 | 3.46 | 99.50 |" in lines
    assert lines[-1] == "- a note"


def test_main_tiny_configuration(bench, tmp_path, capsys):
    md, js = tmp_path / "speed.md", tmp_path / "speed.json"
    argv = ["--widths", "0.125", "--frames", "3", "--size", "32", "--threads", "1", "--repeats", "2",
            "--warmup", "0", "--configs", "fp32", "fp32-cl", "--output", str(md), "--json", str(js)]
    assert bench.main(argv) == 0
    report = md.read_text()
    assert capsys.readouterr().out == report
    rows = [line for line in report.splitlines() if line.startswith("| 0.125 |")]
    timing = [row for row in rows if "| cpu | 1 |" in row]
    assert len(timing) == 2 and all(row.count("|") == 13 for row in timing)
    assert "fp32 NCHW" in timing[0] and "fp32 channels_last" in timing[1]

    payload = json.loads(js.read_text())
    expected_gflop = bench.count_gflop(bench.build_network(0.125, 0, 32), *bench.make_inputs(3, 32, seed=0))
    params = sum(p.numel() for p in JointMotionSegNet(width_multiplier=0.125).parameters()) / 1e6
    assert payload["settings"]["sources_per_forward"] == 2
    assert [r["config"] for r in payload["results"]] == ["fp32", "fp32-cl"]
    for r in payload["results"]:
        assert r["params_m"] == pytest.approx(params)
        assert len(r["times_s"]) == 2 and r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0 and r["peak_cuda_mb"] is None
        assert "outputs" not in r
        assert r["gflop"] == pytest.approx(expected_gflop)
        assert r["gflop_per_s"] == pytest.approx(r["gflop"] / r["median_s"])
    (cmp,) = payload["comparison"]
    # channels_last changes only the summation order of fp32: same flow and labels up to rounding
    assert cmp["config"] == "fp32-cl" and cmp["max_abs_ddf_diff"] < 1e-3 and cmp["seg_agreement_pct"] > 99.0
    assert cmp["ddf_rms"] > 0.5
    assert any("chunked inference is not available" in note for note in payload["notes"])
