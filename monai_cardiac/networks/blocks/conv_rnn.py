"""Convolutional simple (Elman) recurrent unit with tanh, run over the frame axis of a sequence."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from monai_cardiac.errors import CineDataError

__all__ = ["ConvSimpleRNN"]


class ConvSimpleRNN(nn.Module):
    """``h_t = tanh(W_x * x_t + b + W_h * h_{t-1})`` over ``t = 1..T``, with ``h_0 = 0``.

    ``W_x`` and ``W_h`` are convolutions (1x1 by default, as in Qin et al.); the hidden state is also the
    output, so with ``hidden_channels`` equal to the number of spatial axes it can directly be a bounded
    displacement field in normalised coordinates. The loop runs over however many frames arrive.

    ``W_x`` starts near zero (normal, std 1e-5; zero bias) so that a freshly built motion branch predicts an
    almost-identity warp; ``W_h`` keeps PyTorch's default initialisation.

    Args:
        spatial_dims: number of spatial axes (2 or 3).
        in_channels: channels of each input frame ``x_t``.
        hidden_channels: channels of the hidden state (= output).
        kernel_size: odd kernel size of both convolutions.

    Raises:
        ValueError: if ``kernel_size`` is even or a channel count is not positive.
    """

    def __init__(self, spatial_dims: int, in_channels: int, hidden_channels: int, kernel_size: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or in_channels < 1 or hidden_channels < 1:
            raise ValueError(
                f"kernel_size ({kernel_size}) must be odd and channels ({in_channels}, {hidden_channels}) positive."
            )
        conv = Conv[Conv.CONV, spatial_dims]
        self.input_conv = conv(in_channels, hidden_channels, kernel_size, padding=kernel_size // 2, bias=True)
        self.hidden_conv = conv(hidden_channels, hidden_channels, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.normal_(self.input_conv.weight, std=1e-5)
        nn.init.zeros_(self.input_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the recurrence over the frame axis.

        Args:
            x: ``(B, T, in_channels, *spatial)`` inputs, ``T >= 1``.

        Returns:
            ``(B, T, hidden_channels, *spatial)`` hidden states ``h_1 .. h_T``, each in (-1, 1).

        Raises:
            CineDataError: if ``x`` has no frames or the wrong number of channels.
        """
        if x.ndim < 4 or x.shape[1] < 1 or x.shape[2] != self.input_conv.in_channels:
            raise CineDataError(
                f"expected (B, T >= 1, {self.input_conv.in_channels}, *spatial), got {tuple(x.shape)}.",
                type(self).__name__,
            )
        # input projections of all frames in one call; only the cheap hidden-to-hidden part is sequential
        drive = self.input_conv(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        h = torch.tanh(drive[:, 0])  # h_0 = 0, and W_h has no bias, so W_h * h_0 = 0
        states = [h]
        for t in range(1, x.shape[1]):
            h = torch.tanh(drive[:, t] + self.hidden_conv(h))
            states.append(h)
        return torch.stack(states, dim=1)
