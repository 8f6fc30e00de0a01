"""VGG-16-style multi-scale encoder with convolution weights shared between Siamese streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from monai.networks.layers.factories import Conv, Norm
from torch import nn

__all__ = ["StreamConvBlock", "SiameseVGGEncoder"]


class StreamConvBlock(nn.Module):
    """Convolution + batch norm + ReLU, with one convolution shared by all streams and one batch norm per stream.

    With ``num_streams=1`` this is a plain conv-BN-ReLU. With more streams the convolution weights are shared
    (Siamese) while each stream keeps its own batch-norm statistics and affine parameters.

    Args:
        spatial_dims: number of spatial axes (2 or 3).
        in_channels: input channels.
        out_channels: output channels.
        stride: convolution stride (the same along every axis).
        num_streams: number of streams that keep separate batch-norm modules.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1, num_streams: int = 1
    ) -> None:
        super().__init__()
        self.conv = Conv[Conv.CONV, spatial_dims](
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False
        )
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        self.norms = nn.ModuleList(Norm[Norm.BATCH, spatial_dims](out_channels) for _ in range(num_streams))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, stream: int = 0) -> torch.Tensor:
        """Apply conv, the batch norm of ``stream``, and ReLU to ``x`` of shape ``(N, in_channels, *spatial)``."""
        return self.act(self.norms[stream](self.conv(x)))


class SiameseVGGEncoder(nn.Module):
    """VGG-16-style encoder returning the last feature map of each of its blocks (one per scale).

    The encoder of Qin et al. (MICCAI 2018) and Bai et al. (JCMR 2018): blocks of ``layers_per_block`` 3x3
    conv-BN-ReLU layers with ``channels`` output channels; the first convolution of every block after the
    first has stride 2 (no max-pooling), so block ``k`` (0-based) works at ``1 / 2**k`` of the input size and
    the input size must be divisible by :attr:`total_stride` for the scales to line up exactly.

    Streams: all streams share the convolution weights; ``num_streams > 1`` gives each stream its own
    batch-norm modules (statistics and affine parameters), as in the authors' original Theano code.

    Args:
        spatial_dims: number of spatial axes (2 or 3).
        in_channels: channels of the input image.
        channels: output channels of each block; default: VGG-16's ``(64, 128, 256, 512, 512)``.
        layers_per_block: convolutions per block; default: VGG-16's ``(2, 2, 3, 3, 3)``.
        num_streams: number of streams with separate batch-norm modules (1 = everything shared).

    Raises:
        ValueError: if ``channels`` and ``layers_per_block`` differ in length or hold non-positive values,
            or ``num_streams < 1``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        layers_per_block: Sequence[int] = (2, 2, 3, 3, 3),
        num_streams: int = 1,
    ) -> None:
        super().__init__()
        if len(channels) != len(layers_per_block) or not channels:
            raise ValueError(
                f"channels {tuple(channels)} and layers_per_block {tuple(layers_per_block)} must be non-empty "
                "and of equal length."
            )
        if min(channels) < 1 or min(layers_per_block) < 1 or num_streams < 1:
            raise ValueError(
                f"channels {tuple(channels)}, layers_per_block {tuple(layers_per_block)} and num_streams "
                f"{num_streams} must all be positive."
            )
        self.out_channels = tuple(int(c) for c in channels)
        self.num_streams = num_streams
        self.blocks = nn.ModuleList()
        previous = in_channels
        for k, (width, depth) in enumerate(zip(self.out_channels, layers_per_block)):
            layers = nn.ModuleList()
            for j in range(depth):
                stride = 2 if (k > 0 and j == 0) else 1
                layers.append(StreamConvBlock(spatial_dims, previous, width, stride, num_streams))
                previous = width
            self.blocks.append(layers)

    @property
    def total_stride(self) -> int:
        """Down-sampling factor of the coarsest scale (16 for five blocks)."""
        return 2 ** (len(self.blocks) - 1)

    def forward(self, x: torch.Tensor, stream: int = 0) -> list[torch.Tensor]:
        """Encode ``x`` with the batch norms of ``stream``.

        Args:
            x: ``(N, in_channels, *spatial)`` images, spatial sizes divisible by :attr:`total_stride`.
            stream: which stream's batch-norm modules to use, ``0 <= stream < num_streams``.

        Returns:
            One feature map per block, ``(N, channels[k], *[s // 2**k for s in spatial])``.

        Raises:
            ValueError: if ``stream`` is out of range.
        """
        if not 0 <= stream < self.num_streams:
            raise ValueError(f"stream must be in [0, {self.num_streams}), got {stream}.")
        features = []
        for layers in self.blocks:
            for layer in cast(nn.ModuleList, layers):  # each block is a ModuleList of StreamConvBlock
                x = layer(x, stream)
            features.append(x)
        return features
