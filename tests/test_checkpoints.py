"""Loading a checkpoint checks what it says about itself: network arguments, finished run, readable file."""

from __future__ import annotations

import pytest
import torch

from monai_cardiac.checkpoints import RUN_KEY, load_model_weights, read_checkpoint
from monai_cardiac.errors import CineDataError
from monai_cardiac.networks import JointMotionSegNet, ProbabilisticMotionModel, construction_arguments


def _described(path, net, **run):
    description = {"network": type(net).__name__, "arguments": construction_arguments(net), "run_id": "r1",
                   "stage": "joint", "epoch": 3, "max_epochs": 3, "finished": True, **run}
    torch.save({"model": net.state_dict(), RUN_KEY: description}, path)
    return path


def test_a_described_checkpoint_loads_and_returns_its_description(tmp_path):
    source = JointMotionSegNet(width_multiplier=0.0625)
    path = _described(tmp_path / "model.pt", source)
    target = JointMotionSegNet(width_multiplier=0.0625)
    description = load_model_weights(target, path)
    assert description["run_id"] == "r1"
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_other_network_arguments_are_named_with_the_override_that_fits(tmp_path):
    path = _described(tmp_path / "model.pt", JointMotionSegNet(width_multiplier=0.0625))
    with pytest.raises(CineDataError) as caught:
        load_model_weights(JointMotionSegNet(width_multiplier=0.125), path)
    message = str(caught.value)
    assert str(path) in message
    assert "width_multiplier is 0.0625 in the checkpoint, 0.125 in the network" in message
    assert "--network_def#width_multiplier 0.0625" in message


def test_training_only_arguments_do_not_have_to_match(tmp_path):
    small = {"spatial_size": (32, 32), "latent_dim": 4}
    path = _described(tmp_path / "model.pt", ProbabilisticMotionModel(**small, temporal_dropout=0.0,
                                                                        initial_log_variance=-3.0))
    assert load_model_weights(ProbabilisticMotionModel(**small, temporal_dropout=0.5), path)["run_id"] == "r1"
    with pytest.raises(CineDataError, match="latent_dim is 4 in the checkpoint, 8 in the network"):
        load_model_weights(ProbabilisticMotionModel(spatial_size=(32, 32), latent_dim=8), path)


def test_an_unfinished_runs_checkpoint_is_refused_unless_asked(tmp_path):
    net = JointMotionSegNet(width_multiplier=0.0625)
    path = _described(tmp_path / "model.pt", net, finished=False, epoch=1, max_epochs=5)
    with pytest.raises(CineDataError, match=r"unfinished training run \(stage 'joint', saved after epoch 1 of 5"):
        load_model_weights(JointMotionSegNet(width_multiplier=0.0625), path)
    assert load_model_weights(JointMotionSegNet(width_multiplier=0.0625), path, allow_unfinished=True)["epoch"] == 1


def test_undescribed_checkpoints_load_as_before(tmp_path):
    net = JointMotionSegNet(width_multiplier=0.0625)
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    torch.save({"model": net.state_dict()}, tmp_path / "wrapped.pt")
    for name in ("bare.pt", "wrapped.pt"):
        weights, description = read_checkpoint(tmp_path / name)
        assert description is None and weights.keys() == net.state_dict().keys()
        assert load_model_weights(JointMotionSegNet(width_multiplier=0.0625), tmp_path / name) is None


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_an_unreadable_file_is_one_message_naming_it(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CineDataError, match="not a readable PyTorch checkpoint") as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value)


def test_a_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        read_checkpoint(tmp_path / "absent.pt")
    assert caught.value.filename == str(tmp_path / "absent.pt")
