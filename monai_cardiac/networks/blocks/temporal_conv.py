"""Non-causal temporal convolutional network with explicit normalised time (Krebs et al., STACOM 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from monai_cardiac.errors import CineDataError

__all__ = ["TemporalConvNet", "normalized_time"]

_PADDING_MODES = ("zeros", "circular")


def normalized_time(num_steps: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised time ``t / T`` of the steps ``t = 1, ..., T`` of a sequence of ``T`` frames after ED.

    Frame 0 (ED, the moving image) is not a step of the sequence: the first step is ``1 / T`` and the
    last is exactly 1, as in Krebs et al. (``t`` in ``[1, T]``, ``t_bar = t / T``).

    Args:
        num_steps: ``T``, the number of frames after ED (at least 1).
        device: device of the result.

    Returns:
        float32 tensor of shape ``(T,)`` holding ``(1, 2, ..., T) / T``.

    Raises:
        ValueError: when ``num_steps`` is smaller than 1.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}.")
    return torch.arange(1, num_steps + 1, dtype=torch.float32, device=device) / num_steps


class TemporalConvNet(nn.Module):
    """Temporal convolutional network ``p(z | z~_{1:T}, t_bar)`` mapping per-pair codes to the motion matrix.

    The input codes ``z~_t`` (one column per time step) are concatenated with the normalised time
    ``t_bar = t / T`` (:func:`normalized_time`) as one extra channel, then passed through one non-causal
    1-D convolution per dilation (kernel ``kernel_size``, "same" output length, ``channels`` filters each,
    LeakyReLU). Every layer is residual: ``h_{k+1} = h_k + act(conv_k(h_k))``, the first one with a 1 x 1
    convolution projecting the ``channels + 1`` inputs onto ``channels``; the output is the last residual
    stream, so it is the projected input plus the skip sum of every layer's output (the identity
    ``z = z~`` is reachable, which temporal dropout sampling discourages during training).

    With the defaults (kernel 3, dilations 1, 2, 4, 8) the receptive field is
    ``1 + (3 - 1) * (1 + 2 + 4 + 8) = 31`` steps: output ``t`` depends on inputs ``t - 15 ... t + 15`` only.
    The weights do not depend on the sequence length, so any ``T >= 1`` is accepted.

    Args:
        channels: ``d``, size of the code per time step (input and output channels).
        dilations: dilation of each 1-D convolution layer.
        kernel_size: odd kernel size of every layer.
        padding_mode: ``"zeros"`` (default, the paper's choice: the cine need not close the cardiac cycle) or
            ``"circular"`` (step ``T`` is followed by step 1, for cyclic sequences).
        negative_slope: slope of the LeakyReLU for negative inputs.

    Raises:
        ValueError: on an even ``kernel_size``, an unknown ``padding_mode``, an empty or non-positive
            ``dilations`` or a non-positive ``channels``.
    """

    def __init__(
        self,
        channels: int = 32,
        dilations: Sequence[int] = (1, 2, 4, 8),
        kernel_size: int = 3,
        padding_mode: str = "zeros",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number for 'same' padding, got {kernel_size}.")
        if len(dilations) == 0 or any(int(k) < 1 for k in dilations):
            raise ValueError(f"dilations must be a non-empty sequence of positive integers, got {dilations}.")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}.")
        self.channels = channels
        self.dilations = tuple(int(k) for k in dilations)
        self.kernel_size = kernel_size
        self.padding_mode = padding_mode
        self.convs = nn.ModuleList(
            nn.Conv1d(channels + 1 if i == 0 else channels, channels, kernel_size, dilation=k)
            for i, k in enumerate(self.dilations)
        )
        self.input_projection = nn.Conv1d(channels + 1, channels, kernel_size=1)
        self.act = nn.LeakyReLU(negative_slope)

    @property
    def receptive_field(self) -> int:
        """Number of input steps that one output step sees: ``1 + (kernel_size - 1) * sum(dilations)``."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def _pad(self, x: torch.Tensor, dilation: int) -> torch.Tensor:
        """Pad the time axis (last) by ``dilation * (kernel_size - 1) / 2`` steps on both sides."""
        pad = dilation * (self.kernel_size - 1) // 2
        if self.padding_mode == "zeros":
            return F.pad(x, (pad, pad))
        # wrap-around by indexing, valid for any sequence length (also when pad exceeds T)
        index = torch.arange(-pad, x.shape[-1] + pad, device=x.device) % x.shape[-1]
        return x.index_select(-1, index)

    def forward(self, z_tilde: torch.Tensor, time: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            z_tilde: codes ``z~_{1:T}`` of shape ``(B, channels, T)``.
            time: normalised time of each step, shape ``(T,)`` or ``(B, T)``; defaults to
                ``(1, ..., T) / T`` (:func:`normalized_time`).

        Returns:
            the motion matrix ``z`` of shape ``(B, channels, T)``.

        Raises:
            CineDataError: when ``z_tilde`` is not ``(B, channels, T)`` or ``time`` does not match it.
        """
        if z_tilde.ndim != 3 or z_tilde.shape[1] != self.channels or z_tilde.shape[2] < 1:
            raise CineDataError(
                f"expected codes of shape (B, {self.channels}, T) with T >= 1, got {tuple(z_tilde.shape)}.",
                "TemporalConvNet input z_tilde",
            )
        batch, _, steps = z_tilde.shape
        if time is None:
            time = normalized_time(steps, device=z_tilde.device)
        if time.shape not in ((steps,), (batch, steps)):
            raise CineDataError(
                f"time must have shape ({steps},) or ({batch}, {steps}), got {tuple(time.shape)}.",
                "TemporalConvNet input time",
            )
        time = time.to(z_tilde).expand(batch, steps).unsqueeze(1)
        x = torch.cat([z_tilde, time], dim=1)
        h = self.input_projection(x)
        for conv, dilation in zip(self.convs, self.dilations):
            h = h + self.act(conv(self._pad(x, dilation)))
            x = h
        return h
