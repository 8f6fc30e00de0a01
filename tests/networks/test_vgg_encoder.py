"""Tests of the VGG-16-style Siamese encoder."""

from __future__ import annotations

import pytest
import torch

from monai_cardiac.networks.blocks import SiameseVGGEncoder

torch.set_num_threads(1)
WIDTHS = (8, 16, 32, 64, 64)


def test_shapes_and_depth():
    enc = SiameseVGGEncoder(2, 1, WIDTHS)
    feats = enc(torch.rand(3, 1, 48, 32))
    assert enc.total_stride == 16
    assert [tuple(f.shape) for f in feats] == [(3, c, 48 // 2**k, 32 // 2**k) for k, c in enumerate(WIDTHS)]
    assert [len(b) for b in enc.blocks] == [2, 2, 3, 3, 3]
    # stride 2 only in the first conv of blocks 2..5
    strides = [[layer.conv.stride[0] for layer in block] for block in enc.blocks]
    assert strides == [[1, 1], [2, 1], [2, 1, 1], [2, 1, 1], [2, 1, 1]]


def test_streams_share_convolutions_but_not_norms():
    enc = SiameseVGGEncoder(2, 1, WIDTHS, num_streams=2)
    layer = enc.blocks[0][0]
    assert len(layer.norms) == 2 and layer.norms[0] is not layer.norms[1]
    conv_params = [n for n, _ in enc.named_parameters() if ".conv." in n]
    assert len(conv_params) == 13  # one weight per conv layer, no per-stream copies
    with torch.no_grad():
        for block in enc.blocks:
            for lay in block:
                lay.norms[1].bias.fill_(0.5)
    enc.eval()
    x = torch.rand(1, 1, 32, 32)
    assert not torch.allclose(enc(x, stream=0)[-1], enc(x, stream=1)[-1])
    with pytest.raises(ValueError, match="stream"):
        enc(x, stream=2)


def test_separate_running_statistics():
    enc = SiameseVGGEncoder(2, 1, WIDTHS, num_streams=2).train()
    enc(torch.rand(2, 1, 32, 32) * 5.0, stream=1)
    first = enc.blocks[0][0]
    assert torch.all(first.norms[0].running_mean == 0)
    assert not torch.all(first.norms[1].running_mean == 0)


def test_3d_shapes():
    enc = SiameseVGGEncoder(3, 1, (2, 2, 4, 4, 4))
    feats = enc(torch.rand(1, 1, 16, 16, 32))
    assert tuple(feats[-1].shape) == (1, 4, 1, 1, 2)


def test_bad_configuration():
    with pytest.raises(ValueError, match="equal length"):
        SiameseVGGEncoder(2, 1, (8, 16), (2, 2, 3))
    with pytest.raises(ValueError, match="positive"):
        SiameseVGGEncoder(2, 1, WIDTHS, num_streams=0)
