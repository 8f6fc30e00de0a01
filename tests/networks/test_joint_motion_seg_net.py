"""Tests of the joint motion estimation and segmentation network (Qin et al., MICCAI 2018)."""

from __future__ import annotations

import math

import pytest
import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks import JointMotionSegNet, StackedJointMotionSegNet, window_segmentation_logits

torch.set_num_threads(1)
W = 0.125  # slim width for speed
BRANCHES = [(True, True), (True, False), (False, True)]


def _inputs(batch=2, frames=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=g), torch.rand(batch, frames, size, size, generator=g)


def _set_constant_flow(net, bias_h, bias_w):
    """Make the RNN output tanh(bias) everywhere: zero input and recurrent weights."""
    with torch.no_grad():
        net.motion_rnn.input_conv.weight.zero_()
        net.motion_rnn.hidden_conv.weight.zero_()
        net.motion_rnn.input_conv.bias.copy_(torch.tensor([bias_h, bias_w]))


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("motion,segmentation", BRANCHES)
def test_output_shapes_and_keys(motion, segmentation, share):
    net = JointMotionSegNet(width_multiplier=W, motion=motion, segmentation=segmentation, share_norm_stats=share)
    out = net(*_inputs())
    assert tuple(out) == net.output_keys
    expected = {
        "ddf_to_target": (2, 3, 2, 32, 32),
        "warped_sources": (2, 3, 32, 32),
        "seg_logits_target": (2, 4, 32, 32),
        "seg_logits_sources": (2, 3, 4, 32, 32),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: expected[k] for k in net.output_keys}
    has_motion_params = any(n.startswith(("motion_", "warp")) for n, _ in net.named_parameters())
    has_seg_params = any(n.startswith("seg_head") for n, _ in net.named_parameters())
    assert has_motion_params == motion and has_seg_params == segmentation


def test_segmentation_only_without_sources_and_multichannel_input():
    net = JointMotionSegNet(width_multiplier=W, motion=False)
    out = net(torch.rand(2, 1, 32, 48))
    assert tuple(out) == ("seg_logits_target",) and tuple(out["seg_logits_target"].shape) == (2, 4, 32, 48)
    net = JointMotionSegNet(in_channels=2, num_classes=3, width_multiplier=W)
    out = net(torch.rand(1, 2, 32, 32), torch.rand(1, 3, 2, 32, 32))
    assert tuple(out["warped_sources"].shape) == (1, 3, 2, 32, 32)
    assert tuple(out["seg_logits_sources"].shape) == (1, 3, 3, 32, 32)


@pytest.mark.parametrize("share,expected", [(True, [8]), (False, [2, 6, 8])])
def test_target_encoded_once_per_sample(share, expected):
    net = JointMotionSegNet(width_multiplier=W, share_norm_stats=share)
    seen = []
    net.encoder.blocks[0][0].conv.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    net(*_inputs(batch=2, frames=3))
    assert seen == expected  # B + B*T frames in one pass, or target / sources / segmentation streams


def test_gradients_reach_encoder_from_each_branch_only_through_that_branch():
    torch.manual_seed(0)
    net = JointMotionSegNet(width_multiplier=W)
    with torch.no_grad():
        net.motion_rnn.input_conv.weight.normal_(std=0.1)
    target, sources = _inputs()
    first_conv = net.encoder.blocks[0][0].conv.weight

    out = net(target, sources)
    (out["warped_sources"] - target).pow(2).mean().backward()
    assert first_conv.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.seg_head.parameters())
    assert net.motion_head.scale_convs[0][0].weight.grad.abs().sum() > 0

    net.zero_grad(set_to_none=True)
    out = net(target, sources)
    torch.nn.functional.cross_entropy(out["seg_logits_target"], torch.zeros(2, 32, 32, dtype=torch.long)).backward()
    assert first_conv.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.motion_head.parameters())
    assert all(p.grad is None for p in net.motion_rnn.parameters())

    seg_only = JointMotionSegNet(width_multiplier=W, motion=False)
    seg_only(target, sources)["seg_logits_sources"].sum().backward()
    assert seg_only.encoder.blocks[0][0].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in seg_only.parameters())  # nothing left unused (DDP-safe)


def test_any_number_of_frames_with_the_same_weights():
    torch.manual_seed(0)
    net = JointMotionSegNet(width_multiplier=W).eval()
    with torch.no_grad():
        net.motion_rnn.input_conv.weight.normal_(std=0.1)
        target, sources = _inputs(batch=1, frames=5)
        five = net(target, sources)
        two = net(target, sources[:, :2])
    assert five["ddf_to_target"].shape[1] == 5 and two["ddf_to_target"].shape[1] == 2
    # causal recurrence and eval-mode batch norm: the first frames do not depend on later ones
    torch.testing.assert_close(five["ddf_to_target"][:, :2], two["ddf_to_target"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(five["seg_logits_target"], two["seg_logits_target"], atol=1e-5, rtol=1e-4)


def test_zero_flow_is_identity_warp():
    net = JointMotionSegNet(width_multiplier=W, segmentation=False)
    _set_constant_flow(net, 0.0, 0.0)
    target, sources = _inputs()
    out = net(target, sources)
    assert torch.all(out["ddf_to_target"] == 0)
    torch.testing.assert_close(out["warped_sources"], sources, atol=1e-5, rtol=0)


def test_normalised_hidden_state_to_voxels():
    """h = 1 along H is (H - 1) / 2 voxels; h = 0.5 along W is (W - 1) / 4 voxels."""
    net = JointMotionSegNet(width_multiplier=W, segmentation=False)
    _set_constant_flow(net, 20.0, math.atanh(0.5))  # tanh(20) == 1 in float32
    ddf = net(torch.rand(1, 1, 32, 48), torch.rand(1, 2, 32, 48))["ddf_to_target"]
    torch.testing.assert_close(ddf[:, :, 0], torch.full((1, 2, 32, 48), 31 / 2))
    torch.testing.assert_close(ddf[:, :, 1], torch.full((1, 2, 32, 48), 47 / 4))


def test_known_integer_shift_through_the_network_warp():
    """A constant flow of 2 rows and -3 columns pulls source(x + (2, -3))."""
    net = JointMotionSegNet(width_multiplier=W, segmentation=False)
    _set_constant_flow(net, math.atanh(2 / 15.5), math.atanh(-3 / 15.5))  # 32 px: 15.5 voxels per unit
    target, sources = _inputs(size=32)
    out = net(target, sources)
    torch.testing.assert_close(out["ddf_to_target"][:, :, 0], torch.full((2, 3, 32, 32), 2.0))
    torch.testing.assert_close(out["warped_sources"][:, :, :30, 3:], sources[:, :, 2:, :29], atol=1e-4, rtol=0)


def test_bad_inputs_raise_clear_errors():
    net = JointMotionSegNet(width_multiplier=W)
    target, sources = _inputs()
    with pytest.raises(CineDataError, match=r"spatial size \(40, 32\) is not divisible by 16"):
        net(torch.rand(2, 1, 40, 32), torch.rand(2, 3, 40, 32))
    with pytest.raises(ValueError, match="not divisible by 16"):  # CineDataError is a ValueError
        net(torch.rand(1, 1, 32, 50), torch.rand(1, 3, 32, 50))
    with pytest.raises(CineDataError, match="batch and spatial sizes"):
        net(target, sources[:1])
    with pytest.raises(CineDataError, match="batch and spatial sizes"):
        net(target, torch.rand(2, 3, 32, 48))
    with pytest.raises(CineDataError, match="a motion-only network needs source frames"):
        JointMotionSegNet(width_multiplier=W, segmentation=False)(target)
    with pytest.raises(CineDataError, match=r"target must be a tensor shaped \(B, 1, \*spatial\)"):
        net(torch.rand(2, 3, 32, 32), sources)
    with pytest.raises(CineDataError, match="floating-point"):
        net(target, sources.long())
    with pytest.raises(ValueError, match="at least one"):
        JointMotionSegNet(motion=False, segmentation=False)


def test_runs_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    net = JointMotionSegNet(width_multiplier=W).eval()
    with torch.no_grad():
        net.motion_rnn.input_conv.weight.normal_(std=0.1)
    target, sources = _inputs()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(target, sources)
    with torch.inference_mode():
        reference = net(target, sources)
    assert out["ddf_to_target"].dtype == torch.float32 and out["warped_sources"].dtype == torch.float32
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    # bf16 keeps ~3 significant digits: the flow stays close to the float32 one
    torch.testing.assert_close(out["ddf_to_target"], reference["ddf_to_target"], atol=0.05, rtol=0.05)


def test_3d_shapes():
    net = JointMotionSegNet(width_multiplier=0.0625, spatial_dims=3, num_classes=2)
    out = net(torch.rand(1, 1, 16, 16, 16), torch.rand(1, 2, 16, 16, 16))
    assert tuple(out["ddf_to_target"].shape) == (1, 2, 3, 16, 16, 16)
    assert tuple(out["seg_logits_sources"].shape) == (1, 2, 2, 16, 16, 16)


def test_stacked_layout_matches_dict_outputs():
    torch.manual_seed(0)
    net = JointMotionSegNet(width_multiplier=W).eval()
    with torch.no_grad():
        net.motion_rnn.input_conv.weight.normal_(std=0.1)
    stacked = StackedJointMotionSegNet(width_multiplier=W).eval()
    stacked.load_state_dict(net.state_dict())  # same parameters, same names
    target, sources = _inputs()
    with torch.no_grad():
        out = net(target, sources)
        y = stacked(torch.cat([target, sources], dim=1))
    assert tuple(y.shape) == (2, 3 * 2 + 3 + 4 + 3 * 4, 32, 32)
    torch.testing.assert_close(y[:, 2 * 1 + 1], out["ddf_to_target"][:, 1, 1])  # source 1, axis W
    torch.testing.assert_close(y[:, 6:9], out["warped_sources"])
    torch.testing.assert_close(y[:, 9:13], out["seg_logits_target"])
    torch.testing.assert_close(y[:, 13 + 4 * 2 + 3], out["seg_logits_sources"][:, 2, 3])  # source 2, class 3


def test_stacked_output_selection_and_errors():
    net = StackedJointMotionSegNet(outputs=("seg_logits_target", "seg_logits_sources"), width_multiplier=W)
    assert tuple(net(torch.rand(1, 4, 32, 32)).shape) == (1, 16, 32, 32)  # 4 classes per frame, target first
    seg_target = StackedJointMotionSegNet(outputs=("seg_logits_target",), width_multiplier=W, motion=False)
    assert tuple(seg_target(torch.rand(1, 1, 32, 32)).shape) == (1, 4, 32, 32)
    with pytest.raises(ValueError, match="subset"):
        StackedJointMotionSegNet(outputs=("ddf_to_target",), width_multiplier=W, motion=False)
    with pytest.raises(CineDataError, match="T >= 1"):
        StackedJointMotionSegNet(width_multiplier=W)(torch.rand(1, 1, 32, 32))


def test_target_alone_is_segmented_with_the_motion_branch_skipped():
    torch.manual_seed(0)
    net = JointMotionSegNet(width_multiplier=W).eval()
    target, sources = _inputs()
    alone = net(target)
    assert set(alone) == {"seg_logits_target"}
    with torch.no_grad():
        full = net(target, sources)
    # shared normalisation statistics in eval mode: the target's logits do not depend on the sources
    torch.testing.assert_close(alone["seg_logits_target"].detach(), full["seg_logits_target"])
    alone["seg_logits_target"].sum().backward()
    assert all(p.grad is None for p in net.motion_head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.seg_head.parameters())


def test_window_segmentation_logits_put_the_target_first():
    torch.manual_seed(0)
    net = JointMotionSegNet(width_multiplier=0.0625).eval()
    target, sources = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(target, sources)
        logits = window_segmentation_logits(out)
        assert logits.shape == (2, 4, 4, 32, 32)
        assert torch.equal(logits[:, 0], out["seg_logits_target"])
        assert torch.equal(logits[:, 1:], out["seg_logits_sources"])
        alone = window_segmentation_logits(net(target))
        assert alone.shape == (2, 1, 4, 32, 32) and torch.equal(alone[:, 0], out["seg_logits_target"])
        mixed = window_segmentation_logits({"seg_logits_target": torch.zeros(1, 4, 2, 2, dtype=torch.bfloat16),
                                            "seg_logits_sources": torch.ones(1, 2, 4, 2, 2)})
        assert mixed.dtype == torch.float32 and mixed.shape == (1, 3, 4, 2, 2)
    assert window_segmentation_logits(JointMotionSegNet(width_multiplier=0.0625, segmentation=False)(
        target, sources)) is None
