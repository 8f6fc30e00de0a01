"""Tests of the convolutional simple RNN."""

from __future__ import annotations

import pytest
import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.blocks import ConvSimpleRNN

torch.set_num_threads(1)


def test_recurrence_by_hand():
    rnn = ConvSimpleRNN(2, in_channels=1, hidden_channels=1)
    with torch.no_grad():
        rnn.input_conv.weight.fill_(0.5)
        rnn.input_conv.bias.fill_(0.1)
        rnn.hidden_conv.weight.fill_(2.0)
    x = torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1, 1).expand(1, 3, 1, 2, 2)
    h, expected = 0.0, []
    for value in (1.0, -1.0, 0.5):
        h = torch.tanh(torch.tensor(0.5 * value + 0.1 + 2.0 * h)).item()
        expected.append(h)
    out = rnn(x)
    assert tuple(out.shape) == (1, 3, 1, 2, 2)
    torch.testing.assert_close(out[0, :, 0, 0, 0], torch.tensor(expected))


def test_any_number_of_frames_and_bounded():
    rnn = ConvSimpleRNN(2, 4, 2)
    with torch.no_grad():
        rnn.input_conv.weight.normal_(std=3.0)
    for frames in (1, 2, 5):
        out = rnn(torch.randn(2, frames, 4, 8, 8))
        assert tuple(out.shape) == (2, frames, 2, 8, 8)
        assert out.abs().max() <= 1.0 and out.abs().max() > 0.5


def test_prefix_property():
    """Frame t's state depends only on frames up to t."""
    rnn = ConvSimpleRNN(2, 3, 2)
    with torch.no_grad():
        rnn.input_conv.weight.normal_()
    x = torch.randn(1, 5, 3, 4, 4)
    torch.testing.assert_close(rnn(x)[:, :3], rnn(x[:, :3]))


def test_zero_input_weights_give_zero_state_and_bad_input():
    rnn = ConvSimpleRNN(2, 4, 2)
    with torch.no_grad():
        rnn.input_conv.weight.zero_()
    assert torch.all(rnn(torch.randn(1, 3, 4, 8, 8)) == 0)
    with pytest.raises(CineDataError, match="expected"):
        rnn(torch.randn(1, 3, 5, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        ConvSimpleRNN(2, 4, 2, kernel_size=2)
