"""Tests of the multi-scale fusion head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_cardiac.networks.blocks import MultiScaleFusionHead

torch.set_num_threads(1)
IN = (4, 6, 8, 8, 8)


def _features(batch=2, size=32, channels=IN):
    return [torch.randn(batch, c, size // 2**k, size // 2**k) for k, c in enumerate(channels)]


def test_shapes():
    feats = _features()
    assert tuple(MultiScaleFusionHead(2, IN, 8)(feats).shape) == (2, 8, 32, 32)
    assert tuple(MultiScaleFusionHead(2, IN, 8, out_channels=4)(feats).shape) == (2, 4, 32, 32)
    with pytest.raises(ValueError, match="expected 5 feature maps"):
        MultiScaleFusionHead(2, IN, 8)(feats[:4])


def test_sum_of_scales_equals_concatenation_then_1x1_conv():
    """The per-scale 1x1 convs before up-sampling are exactly concat(up-sampled) followed by one 1x1 conv."""
    torch.manual_seed(0)
    head = MultiScaleFusionHead(2, IN, 8, out_channels=3).eval()
    with torch.no_grad():
        for layer in head.fuse:
            layer.weight.normal_()
        head.fuse_bias.normal_()
    feats = _features(batch=1)
    with torch.no_grad():
        scaled = [conv(x) for conv, x in zip(head.scale_convs, feats)]
        up = [F.interpolate(s, size=(32, 32), mode="bilinear", align_corners=False) for s in scaled]
        weight = torch.cat([layer.weight for layer in head.fuse], dim=1)  # (8, 5 * 8, 1, 1)
        reference = head.out(head.mix(F.conv2d(torch.cat(up, dim=1), weight, head.fuse_bias)))
        torch.testing.assert_close(head(feats), reference, atol=1e-5, rtol=1e-5)


def test_fusion_starts_as_sum_of_scales():
    head = MultiScaleFusionHead(2, IN, 8)
    for layer in head.fuse:
        torch.testing.assert_close(layer.weight[:, :, 0, 0], torch.eye(8))
    assert torch.all(head.fuse_bias == 0)


def test_shared_features_equal_explicit_concatenation():
    """Pairing each of T frames with its sample's shared maps == the head on the explicit concatenation."""
    torch.manual_seed(0)
    own, common = (2, 3, 4, 4, 4), (2, 3, 4, 4, 4)
    head = MultiScaleFusionHead(2, [a + b for a, b in zip(own, common)], 8, out_channels=2).eval()
    frames = _features(batch=6, channels=own)  # 2 samples x 3 frames
    shared = _features(batch=2, channels=common)
    explicit = [torch.cat([f, s.repeat_interleave(3, dim=0)], dim=1) for f, s in zip(frames, shared)]
    with torch.no_grad():
        torch.testing.assert_close(head(frames, shared=shared), head(explicit), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot be split"):
        head(_features(batch=5, channels=own), shared=shared)
