"""Networks keep the arguments they were built with (what their checkpoints record)."""

from __future__ import annotations

from monai_cardiac.networks import (
    JointMotionSegNet,
    ProbabilisticMotionModel,
    StackedJointMotionSegNet,
    construction_arguments,
)


def test_joint_network_records_every_argument_with_defaults():
    net = JointMotionSegNet(width_multiplier=0.0625, motion=False)
    recorded = construction_arguments(net)
    assert recorded["width_multiplier"] == 0.0625 and recorded["motion"] is False
    assert recorded["num_classes"] == 4 and recorded["spatial_dims"] == 2  # defaults applied


def test_stacked_network_records_its_parents_arguments_and_its_own():
    net = StackedJointMotionSegNet(outputs=("ddf_to_target",), width_multiplier=0.0625)
    recorded = construction_arguments(net)
    assert recorded["outputs"] == ["ddf_to_target"]  # tuples become lists (plain data)
    assert recorded["width_multiplier"] == 0.0625 and recorded["share_norm_stats"] is True


def test_probabilistic_model_records_sequences_as_lists():
    net = ProbabilisticMotionModel(spatial_size=(32, 32), sigma_frames=0.5)
    recorded = construction_arguments(net)
    assert recorded["spatial_size"] == [32, 32] and recorded["sigma_frames"] == 0.5
    assert recorded["latent_dim"] == 32


def test_a_module_without_a_record_gives_none():
    import torch

    assert construction_arguments(torch.nn.Linear(2, 2)) is None
