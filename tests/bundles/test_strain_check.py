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


def test_the_weakest_segment_of_each_level_and_the_akinetic_check_of_the_truth():
    segments = {1: ("basal", -12.0), 2: ("basal", -1.5), 7: ("mid", -9.0), 8: ("mid", 3.0), 13: ("apical", -0.5)}
    strain = {"segments": {k: {"level": lv, "peak_circumferential_percent": v} for k, (lv, v) in segments.items()}}
    assert strain_check.weakest_segments(strain) == {"basal": 2, "mid": 8, "apical": 13}  # smallest magnitude
    (row,) = strain_check.akinetic_rows({}, seeds=[2], slices=6, frames=12, no_refine=True)
    assert row["seed"] == 2 and set(row["truth"]) == {"basal", "mid", "apical"}
    assert row["truth"]["basal"] in range(1, 7) and row["truth"]["apical"] in range(13, 17)
