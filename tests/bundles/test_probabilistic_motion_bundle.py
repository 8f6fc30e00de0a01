"""The probabilistic motion bundle: properties, metadata, network I/O, a short run of every config, DDP with gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow, verify_metadata, verify_net_in_out

from monai_cardiac.checkpoints import read_checkpoint
from monai_cardiac.data import write_phantom_dataset
from monai_cardiac.handlers import ResumableTrainingState

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "probabilistic_motion"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")

# small enough for a 2-core CPU: 8 subjects of 6 frames at 32 x 32 (5 mm), a small network
TINY = {
    "roi_size": [32, 32],
    "nominal_spacing": [5.0, 5.0],
    "epochs": 1,
    "network_def#latent_dim": 8,
    "network_def#encoder_channels": [4, 8, 8, 2],
    "network_def#decoder_channels": [8, 8, 8],
    "network_def#decoder_latent_channels": 8,
}


@pytest.fixture(scope="module")
def tiny_phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom")
    write_phantom_dataset(root, num_subjects=8, seed=3, num_frames=6, num_slices=None, spatial_size=(32, 32),
                          spacing=(5.0, 5.0))
    return root


def _overrides(tmp_path: Path, data: Path, **extra) -> dict:
    return {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(data), **TINY, **extra}


def _workflow(config, workflow_type: str, run_id: str | None = None, **override) -> ConfigWorkflow:
    files = [str(CONFIGS / c) for c in config] if isinstance(config, list) else str(CONFIGS / config)
    run_id = run_id or ("training" if workflow_type == "train" else "run")
    return ConfigWorkflow(config_file=files, meta_file=META, logging_file=False, workflow_type=workflow_type,
                          run_id=run_id, **override)


def _cli(config: str, run_id: str, overrides: dict, extra: list[str] = (), nproc: int = 0):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc \
        else [sys.executable]
    args = launcher + ["-m", "monai.bundle", "run", run_id, "--config_file", config]
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args + list(extra), cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_metadata_verifies_offline_against_the_shipped_schema():
    verify_metadata(meta_file=META, filepath=str(REPO / "bundles" / "metadata_schema.json"))
    broken = json.loads(Path(META).read_text())
    del broken["network_data_format"]["inputs"]["image"]["channel_def"]
    with pytest.raises(ValueError, match="channel_def"):
        verify_metadata(meta_file=broken, filepath=str(REPO / "bundles" / "metadata_schema.json"))


def test_network_in_out_matches_metadata():
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=str(CONFIGS / "train.json"), device="cpu")


@pytest.mark.parametrize("config", ["train.json", ["train.json", "train_no_tds.json"]])
def test_train_properties(config, tiny_phantom, tmp_path):
    workflow = _workflow(config, "train", **_overrides(tmp_path, tiny_phantom))
    workflow.initialize()
    assert not workflow.check_properties()


def test_no_tds_config_turns_temporal_dropout_off(tiny_phantom, tmp_path):
    workflow = _workflow(["train.json", "train_no_tds.json"], "train", **_overrides(tmp_path, tiny_phantom))
    workflow.initialize()
    assert workflow.parser.get_parsed_content("network").temporal_dropout == 0.0
    assert workflow.parser.get_parsed_content("ckpt_dir").endswith(os.path.join("models", "no_tds"))


def test_documented_command_trains_and_reports(tiny_phantom, tmp_path):
    """`python -m monai.bundle run training --config_file bundles/probabilistic_motion/train.json`."""
    report = tmp_path / "report.json"
    # the tiny phantom folder is not the default one, so the report is asked for explicitly
    done = _cli("bundles/probabilistic_motion/train.json", "training", _overrides(tmp_path, tiny_phantom),
                ["--report",
                 f"$monai_cardiac.engines.report_phantom_motion(@network, @splits[2], @device, '{report}')"])
    models = tmp_path / "bundle" / "models"
    assert (models / "model.pt").is_file() and (models / "final.pt").is_file()
    state, run = read_checkpoint(models / "final.pt")
    assert run["stage"] == "train" and run["finished"] and run["network"] == "ProbabilisticMotionModel"
    assert any(k.startswith("tcn.") for k in state) and any(k.startswith("decoder.") for k in state)
    # model.pt holds the moving average of the weights (ema_decay 0.99), final.pt the last weights
    averaged, averaged_run = read_checkpoint(models / "model.pt")
    assert averaged_run["finished"] and averaged_run["run_id"] == run["run_id"]  # saved mid-run, marked at the end
    assert averaged.keys() == state.keys()
    assert not all(torch.equal(averaged[k], state[k]) for k in state)
    result = json.loads(report.read_text())
    assert "epe_ratio" in result and result["epe_ratio"] > 0
    assert "held-out phantom verdict" in done.stdout


def test_zero_ema_decay_validates_and_saves_the_last_weights(tiny_phantom, tmp_path):
    workflow = _workflow("train.json", "train", **_overrides(tmp_path, tiny_phantom, report=None, ema_decay=0.0))
    workflow.initialize()
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    averaging = workflow.parser.get_parsed_content("weight_averaging")
    assert evaluator.network is averaging.module and averaging.network is workflow.parser.get_parsed_content("network")
    workflow.run()
    models = tmp_path / "bundle" / "models"
    best, final = (read_checkpoint(models / name)[0] for name in ("model.pt", "final.pt"))
    assert averaging.num_updates == 6  # 6 training subjects, batch size 1, one epoch
    assert all(torch.equal(best[k], final[k]) for k in final)  # one epoch: the best is the last


def test_multi_gpu_config_runs_ddp_with_gloo(tiny_phantom, tmp_path):
    # two ranks need at least two validation sequences: split the 8 subjects 4 / 2 / 2
    overrides = _overrides(tmp_path, tiny_phantom, split_fractions=[0.5, 0.25, 0.25])
    _cli("['bundles/probabilistic_motion/configs/train.json','bundles/probabilistic_motion/configs/multi_gpu_train.json']",
         "training", overrides, ["--meta_file", META, "--logging_file", "False", "--report", "$None"], nproc=2)
    state, _ = read_checkpoint(tmp_path / "bundle" / "models" / "final.pt")
    # MONAI's CheckpointSaver unwraps DDP: the checkpoint loads into a plain network
    assert any(k.startswith("encoder.") for k in state) and not any(k.startswith("module.") for k in state)


def test_evaluate_reconstruction_and_transport_entry_points(tiny_phantom, tmp_path):
    # the learning rate decays at the end of epoch 1 (milestone 1): the one epoch ends at 1e-3 * 0.1
    train = _workflow("train.json", "train", **_overrides(tmp_path, tiny_phantom, report=None, lr_decay_epochs=[1]))
    train.initialize()
    train.run()
    optimizer = train.parser.get_parsed_content("train#optimizer")
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.1)
    configs = ["train.json", "evaluate.json"]
    # the one held-out subject has one group only: transport between two training subjects instead
    extra = {"transport_source": "$monai_cardiac.engines.select_slice(@splits[0], subject=@splits[0][0]['subject'])",
             "transport_target": "$monai_cardiac.engines.select_slice(@splits[0], subject=@splits[0][-1]['subject'])"}
    for run_id in ("evaluating", "reconstruction_study", "transport_figure"):
        workflow = _workflow(configs, "infer", run_id=run_id, **_overrides(tmp_path, tiny_phantom, **extra))
        workflow.initialize()
        workflow.run()
    out = tmp_path / "bundle" / "runs" / "evaluation"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"TDS"}  # no TDS and the joint model were not trained here: skipped, not faked
    assert 0.0 <= summary["TDS"]["track_dice_LV"]["mean"] <= 1.0
    assert (out / "tables.md").read_text().count("| TDS |") >= 1
    study = (out / "reconstruction" / "reconstruction_study.md").read_text()
    assert "every 2nd" in study and "linear" in study and "cubic" in study
    assert (out / "transport.png").is_file()


def test_resume_continues_with_the_weight_average_and_scheduler(tiny_phantom, tmp_path):
    """Two epochs, then `--resume true` with three: one more epoch, the weight average's count carried on."""
    first = _workflow("train.json", "train", **_overrides(tmp_path, tiny_phantom, report=None, epochs=2))
    first.initialize()
    first.run()
    state_file = tmp_path / "bundle" / "models" / "resume.pt"
    saved = ResumableTrainingState.read(state_file)
    assert (saved["epoch"], saved["iteration"]) == (2, 12)  # 6 training subjects, batch size 1
    resumed = _workflow("train.json", "train", **_overrides(tmp_path, tiny_phantom, report=None, epochs=3,
                                                            resume=True))
    resumed.initialize()
    averaging = resumed.parser.get_parsed_content("weight_averaging")
    resumed.run()
    assert resumed.parser.get_parsed_content("train#trainer").state.iteration == 18
    assert averaging.num_updates == 18  # 12 restored + 6 in the resumed epoch, not a fresh average of 6
    assert ResumableTrainingState.read(state_file)["epoch"] == 3
