"""bundles/scripts/strain_check.py: the models' tracking fields of a phantom stack and their strain."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from monai_cardiac.data import make_cine_phantom
from monai_cardiac.metrics import stack_strain
from monai_cardiac.networks import JointMotionSegNet

SCRIPT = Path(__file__).resolve().parents[2] / "bundles" / "scripts" / "strain_check.py"
spec = importlib.util.spec_from_file_location("strain_check", SCRIPT)
strain_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(strain_check)

torch.set_num_threads(1)


def test_tracking_fields_of_a_still_network_and_their_refinement_towards_the_truth():
    p = make_cine_phantom(5, num_frames=8, spatial_size=(80, 80), num_slices=2, group="NOR")
    labels, spacing = p["label"], tuple(p["spacing"][1:])
    net = JointMotionSegNet(width_multiplier=0.0625).eval()
    with torch.no_grad():
        net.motion_rnn.input_conv.weight.zero_()
        net.motion_rnn.input_conv.bias.zero_()  # the recurrence's state, the flow, stays zero
    still = strain_check.tracking_fields(net, p["image"], refine=False)
    assert still.shape == (8, 2, 2, 80, 80) and not still.any()
    refined = strain_check.tracking_fields(net, p["image"], refine=True)
    assert not refined[0].any() and np.abs(refined[1:]).max() > 0.5  # ED stays the identity, the rest moves
    truth = stack_strain(labels, p["ddf"][:, 1:], spacing, es=int(p["es"]))["global"]
    found = stack_strain(labels, refined, spacing, es=int(p["es"]))["global"]
    # from no motion (0 %) the refinement recovers part of the true circumferential shortening, never more
    assert truth["peak_circumferential_percent"] < found["peak_circumferential_percent"] < -2.0
