"""Tests of frame-wise warping and of the probability warp used by the warped cross-entropy."""

from __future__ import annotations

import pytest
import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.blocks import SequenceWarp, warp_probabilities


def test_integer_shift_per_frame():
    """Pull convention: out(x) = frame(x + u) -- frame t shifted by its own integer displacement."""
    frames = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 1, 8, 8)
    ddf = torch.zeros(2, 3, 2, 8, 8)
    ddf[:, 1, 0] = 2.0  # frame 1: +2 rows
    ddf[:, 2, 1] = -1.0  # frame 2: -1 column
    out = SequenceWarp()(frames, ddf)
    torch.testing.assert_close(out[:, 0], frames[:, 0])
    torch.testing.assert_close(out[:, 1, :, :6], frames[:, 1, :, 2:])
    torch.testing.assert_close(out[:, 2, :, :, 1:], frames[:, 2, :, :, :-1])
    torch.testing.assert_close(out[:, 1, :, 6:], frames[:, 1, :, 7:8].expand(2, 1, 2, 8))  # border padding


def test_probability_warp_zero_and_shift():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 8, 8)
    ddf = torch.zeros(1, 2, 2, 8, 8)
    warp = SequenceWarp()
    probs = warp_probabilities(logits, ddf, warp)
    torch.testing.assert_close(probs, torch.softmax(logits, dim=2), atol=1e-6, rtol=1e-5)
    ddf[:, :, 1] = 0.5
    probs = warp_probabilities(logits, ddf, warp)
    torch.testing.assert_close(probs.sum(dim=2), torch.ones(1, 2, 8, 8))


def test_float32_under_autocast_and_shape_errors():
    frames = torch.rand(1, 2, 1, 8, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = SequenceWarp()(frames, torch.zeros(1, 2, 2, 8, 8, dtype=torch.bfloat16))
    assert out.dtype == torch.float32
    with pytest.raises(CineDataError, match="must share"):
        SequenceWarp()(torch.rand(1, 3, 1, 8, 8), torch.zeros(1, 2, 2, 8, 8))
    with pytest.raises(CineDataError, match="ddf must be shaped"):
        SequenceWarp()(torch.rand(1, 2, 1, 8, 8), torch.zeros(1, 2, 3, 8, 8))
