"""Training runs that describe themselves: checkpoint descriptions, the run manifest, runs that never mix."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

from monai_cardiac.checkpoints import load_model_weights, read_checkpoint
from monai_cardiac.errors import CineDataError
from monai_cardiac.handlers import TrainingRunRecord
from monai_cardiac.handlers.run_record import EARLIER_RUNS, MANIFEST_NAME, command_identity
from monai_cardiac.networks import JointMotionSegNet

ARGV = ["monai.bundle", "run", "training", "--epochs", "3"]


def _train(models, epochs=3, stop_after=None, resume=False):
    """A stand-in trainer (no optimisation) with the bundles' handlers: record first, then the savers."""
    net = JointMotionSegNet(width_multiplier=0.0625)
    engine = Engine(lambda engine, batch: None)
    record = TrainingRunRecord(models, resume=resume, argv=ARGV)
    stage = record.stage("joint", net)
    stage.attach(engine)
    CheckpointSaver(str(models), {"model": net, "run": stage}, save_interval=1, n_saved=None).attach(engine)
    CheckpointSaver(str(models), {"model": net, "run": stage}, save_final=True, final_filename="model.pt").attach(
        engine
    )
    if stop_after is not None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(once=stop_after), lambda e: e.terminate())
    engine.run([0, 1], max_epochs=epochs)
    return record


def _epoch_files(models):
    return sorted(p for p in models.glob("*.pt") if p.name != "model.pt")


def test_a_completed_stage_marks_every_checkpoint_it_saved_finished(tmp_path):
    models = tmp_path / "models"
    record = _train(models)
    final = read_checkpoint(models / "model.pt")[1]
    assert final["finished"] and final["epoch"] == 3 == final["max_epochs"] and final["stage"] == "joint"
    assert final["arguments"]["width_multiplier"] == 0.0625 and final["network"] == "JointMotionSegNet"
    assert final["run_id"] == record.run_id and final["command"] == " ".join(ARGV)
    epochs = [read_checkpoint(p)[1] for p in _epoch_files(models)]
    assert [d["epoch"] for d in epochs] == [1, 2, 3] and all(d["finished"] for d in epochs)  # rewritten at the end
    manifest = json.loads((models / MANIFEST_NAME).read_text())
    assert manifest["run_id"] == record.run_id
    assert manifest["stages"]["joint"] == {"finished": True, "epoch": 3, "max_epochs": 3}


def test_an_interrupted_runs_checkpoints_are_refused_unless_asked(tmp_path):
    models = tmp_path / "models"
    _train(models, stop_after=1)
    assert not (models / "model.pt").exists() or not read_checkpoint(models / "model.pt")[1]["finished"]
    (early,) = _epoch_files(models)
    assert read_checkpoint(early)[1]["finished"] is False
    assert json.loads((models / MANIFEST_NAME).read_text())["stages"]["joint"]["finished"] is False
    with pytest.raises(CineDataError, match="unfinished training run"):
        load_model_weights(JointMotionSegNet(width_multiplier=0.0625), early)
    assert load_model_weights(JointMotionSegNet(width_multiplier=0.0625), early, allow_unfinished=True)["epoch"] == 1


def test_a_fresh_run_copies_the_earlier_runs_files_aside(tmp_path):
    models = tmp_path / "models"
    first = _train(models)
    first_files = sorted(p.name for p in models.glob("*.pt"))
    second = _train(models)
    assert second.run_id != first.run_id
    archive = models / EARLIER_RUNS / first.run_id
    assert sorted(p.name for p in archive.glob("*.pt")) == first_files
    assert json.loads((archive / MANIFEST_NAME).read_text())["run_id"] == first.run_id
    assert {read_checkpoint(p)[1]["run_id"] for p in models.glob("*.pt")} == {second.run_id}  # nothing mixed


def test_files_of_an_undescribed_run_are_copied_aside_too(tmp_path):
    """A file the new run does not overwrite (e.g. the weights it starts from) stays, undescribed, beside its copy."""
    models = tmp_path / "models"
    models.mkdir()
    torch.save({"model": {}}, models / "stage_motion.pt")
    _train(models)
    (archive,) = (models / EARLIER_RUNS).iterdir()
    assert archive.name.startswith("unknown-") and (archive / "stage_motion.pt").is_file()
    assert (models / "stage_motion.pt").is_file() and read_checkpoint(models / "stage_motion.pt")[1] is None


def test_a_resumed_run_keeps_its_id_and_files(tmp_path):
    models = tmp_path / "models"
    first = _train(models, stop_after=1)
    resumed = _train(models, resume=True)
    assert resumed.run_id == first.run_id and not (models / EARLIER_RUNS).exists()
    assert read_checkpoint(models / "model.pt")[1]["finished"]


def test_the_config_hash_follows_the_config_files_and_the_overrides(tmp_path):
    config = tmp_path / "train.json"
    config.write_text('{"epochs": 3}')
    argv = ["monai.bundle", "run", "training", "--config_file", str(config)]
    base = command_identity(argv)["config_sha256"]
    assert command_identity(argv)["config_sha256"] == base
    assert command_identity(argv + ["--epochs", "4"])["config_sha256"] != base
    config.write_text('{"epochs": 5}')
    assert command_identity(argv)["config_sha256"] != base
    listed = ["monai.bundle", "run", "training", "--config_file", f"['{config}']"]
    before = command_identity(listed)["config_sha256"]
    config.write_text('{"epochs": 6}')
    assert command_identity(listed)["config_sha256"] != before  # the list form reads the file too
