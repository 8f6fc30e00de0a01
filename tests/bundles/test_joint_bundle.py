"""The joint bundle: properties, metadata, network I/O, a short run of every config, DDP with gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow, verify_metadata, verify_net_in_out

from monai_cardiac.checkpoints import read_checkpoint
from monai_cardiac.data import write_phantom_dataset
from monai_cardiac.handlers import ResumableTrainingState

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "joint"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")

# small enough for a 2-core CPU: 8 subjects of 8 frames at 64 x 64 (2.5 mm), a 1/16-width network
TINY = {
    "roi_size": [64, 64],
    "window_frames": 4,
    "width_multiplier": 0.0625,
    "batch_size": 2,
    "epochs": {"motion": 1, "segmentation": 1, "joint": 1},
}


@pytest.fixture(scope="module")
def tiny_phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, num_subjects=8, seed=3, num_frames=8, num_slices=None, spatial_size=(64, 64),
                          spacing=(2.5, 2.5))
    return root


def _overrides(tmp_path: Path, data: Path, **extra) -> dict:
    return {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data), **TINY, **extra}


def _workflow(config, workflow_type: str, **override) -> ConfigWorkflow:
    files = [str(CONFIGS / c) for c in config] if isinstance(config, list) else str(CONFIGS / config)
    return ConfigWorkflow(config_file=files, meta_file=META, logging_file=False, workflow_type=workflow_type,
                          run_id="training" if workflow_type == "train" else "run", **override)


def test_metadata_verifies_offline_against_the_shipped_schema():
    verify_metadata(meta_file=META, filepath=str(REPO / "bundles" / "metadata_schema.json"))
    broken = json.loads(Path(META).read_text())
    del broken["network_data_format"]["outputs"]["pred"]["channel_def"]
    with pytest.raises(ValueError, match="channel_def"):
        verify_metadata(meta_file=broken, filepath=str(REPO / "bundles" / "metadata_schema.json"))


def test_network_in_out_matches_metadata():
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=str(CONFIGS / "inference.json"),
                      n=4, any=4, device="cpu")


@pytest.mark.parametrize("config", ["train.json", ["train.json", "train_motion_only.json"],
                                    ["train.json", "train_segmentation_only.json"]])
def test_train_properties(config, tiny_phantom, tmp_path):
    workflow = _workflow(config, "train", **_overrides(tmp_path, tiny_phantom))
    workflow.initialize()
    assert not workflow.check_properties()


def test_inference_properties(tiny_phantom, tmp_path):
    workflow = _workflow("inference.json", "infer", **_overrides(tmp_path, tiny_phantom))
    workflow.initialize()
    assert not workflow.check_properties()


def test_documented_command_runs_the_schedule(tiny_phantom, tmp_path):
    """`python -m monai.bundle run training --config_file bundles/joint/train.json` (the top-level entry point)."""
    report = tmp_path / "report.json"
    args = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "bundles/joint/train.json"]
    for key, value in _overrides(tmp_path, tiny_phantom).items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    # the tiny phantom folder is not the default one, so the report is asked for explicitly
    args += ["--report", f"$monai_cardiac.engines.report_phantom_joint(@network, @splits[2], @device, '{report}')"]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    models = tmp_path / "bundle" / "models"
    for name in ("stage_motion.pt", "stage_segmentation.pt", "model.pt", "resume_motion.pt", "resume_joint.pt"):
        assert (models / name).is_file(), name
    result = json.loads(report.read_text())
    assert result["num_slices"] == 1 and "lv_dice" in result and "epe_ratio" in result
    assert "held-out phantom verdict" in done.stdout
    # the segmentation stage trained the head only: the encoder is the motion stage's
    stages = ("stage_motion.pt", "stage_segmentation.pt")
    (motion, motion_run), (seg, seg_run) = (read_checkpoint(models / name) for name in stages)
    _, joint_run = read_checkpoint(models / "model.pt")
    assert [r["stage"] for r in (motion_run, seg_run, joint_run)] == ["motion", "segmentation", "joint"]
    assert all(r["finished"] and r["run_id"] == joint_run["run_id"] for r in (motion_run, seg_run))
    assert joint_run["arguments"]["width_multiplier"] == TINY["width_multiplier"] and joint_run["config_sha256"]
    assert json.loads((models / "run.json").read_text())["stages"]["joint"]["finished"]
    encoder_keys = [k for k in motion if k.startswith("encoder.")]
    assert encoder_keys and all(torch.equal(motion[k], seg[k]) for k in encoder_keys)
    head_keys = [k for k in seg if k.startswith("seg_head.") and k.endswith("weight")]
    assert any(not torch.equal(motion[k], seg[k]) for k in head_keys)


@pytest.mark.parametrize("variant, present, absent", [
    ("train_motion_only.json", "ddf_to_target", "seg_head."),
    ("train_segmentation_only.json", "seg_head.", "motion_head."),
])
def test_baselines_train(variant, present, absent, tiny_phantom, tmp_path):
    workflow = _workflow(["train.json", variant], "train", **_overrides(tmp_path, tiny_phantom, report=None))
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    sub = "motion_only" if "motion" in variant else "segmentation_only"
    state, _ = read_checkpoint(tmp_path / "bundle" / "models" / sub / "model.pt")
    assert not any(k.startswith(absent) for k in state)
    if present.endswith("."):
        assert any(k.startswith(present) for k in state)


def test_evaluate_writes_tables(tiny_phantom, tmp_path):
    train = _workflow("train.json", "train", **_overrides(tmp_path, tiny_phantom, report=None))
    train.initialize()
    train.run()
    workflow = ConfigWorkflow(config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
                              meta_file=META, logging_file=False, workflow_type="infer", run_id="evaluating",
                              **_overrides(tmp_path, tiny_phantom))
    workflow.initialize()
    workflow.run()
    out = tmp_path / "bundle" / "runs" / "evaluation"
    tables = (out / "tables.md").read_text()
    assert "Table 1" in tables and "| joint |" in tables and "| unregistered |" in tables
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"joint"}  # the baselines were not trained here: skipped, not faked
    assert 0.0 <= summary["joint"]["seg_dice_LV"]["mean"] <= 1.0


def test_multi_gpu_config_runs_ddp_with_gloo(tiny_phantom, tmp_path):
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "monai.bundle", "run", "training", "--config_file",
            "['bundles/joint/configs/train.json','bundles/joint/configs/multi_gpu_train.json']",
            "--meta_file", META, "--logging_file", "False"]
    # two ranks need at least two validation sequences: split the 8 subjects 4 / 2 / 2
    for key, value in _overrides(tmp_path, tiny_phantom, split_fractions=[0.5, 0.25, 0.25]).items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    args += ["--report", "$None"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state, _ = read_checkpoint(tmp_path / "bundle" / "models" / "model.pt")
    # MONAI's CheckpointSaver unwraps DDP: the checkpoint loads into a plain network
    assert any(k.startswith("encoder.") for k in state) and not any(k.startswith("module.") for k in state)


def _training_command(tmp_path: Path, data: Path, epochs: dict, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", "bundles/joint/train.json"]
    for key, value in _overrides(tmp_path, data, epochs=epochs, report=None).items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return args + list(extra)


def test_killed_run_resumes_to_the_uninterrupted_schedule(tiny_phantom, tmp_path):
    """SIGKILL during the motion stage, then `--resume true`: the schedule ends as an uninterrupted run's."""
    epochs = {"motion": 4, "segmentation": 1, "joint": 2}
    models = tmp_path / "bundle" / "models"
    state_file = models / "resume_motion.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(_training_command(tmp_path, tiny_phantom, epochs), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not state_file.is_file() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the run ended before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert not (models / "model.pt").exists()  # no delivered model from a half-finished schedule
    done_epochs = ResumableTrainingState.read(state_file)["epoch"]
    assert 1 <= done_epochs < epochs["motion"]

    resumed = subprocess.run(_training_command(tmp_path, tiny_phantom, epochs, "--resume", "true"), cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    # the motion stage went on after its last saved epoch and did not start again
    assert f"Epoch[{done_epochs + 1}] Complete" in log
    assert f"Epoch: {done_epochs}/{epochs['motion']}," not in log
    # every stage ended at its full length, the same epoch and iteration counts as an uninterrupted run
    slices_per_epoch = None
    for stage, n in epochs.items():
        state = ResumableTrainingState.read(models / f"resume_{stage}.pt")
        assert state["epoch"] == n == state["max_epochs"], stage
        per_epoch = state["iteration"] // n
        assert state["iteration"] == n * per_epoch and per_epoch >= 1
        if stage != "segmentation":
            slices_per_epoch = slices_per_epoch or per_epoch
            assert per_epoch == slices_per_epoch
    assert (models / "model.pt").is_file()
