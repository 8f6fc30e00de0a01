"""Multi-scale fusion head of Bai et al. (JCMR 2018), shared by the motion and segmentation branches of Qin et al."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm
from torch import nn

__all__ = ["MultiScaleFusionHead"]


class MultiScaleFusionHead(nn.Module):
    """Fuse per-scale feature maps at full resolution and (optionally) map them to output channels.

    Per scale ``s``: 3x3 conv to ``head_channels`` + BN + ReLU, bilinear (trilinear in 3D) up-sampling to the
    size of the first (finest) feature map, concatenation of all scales, a linear 1x1 conv to
    ``head_channels``, a 1x1 conv to ``head_channels`` + BN + ReLU and, if ``out_channels`` is given, an
    output 1x1 conv (with bias, no activation).

    The concatenation followed by the linear 1x1 conv is computed as the sum over scales of a per-scale
    1x1 conv applied *before* up-sampling, plus one bias. Both operations are linear and interpolation
    weights sum to one, so this is exactly the same function with the same number of parameters, but it
    never builds the ``len(scales) * head_channels`` full-resolution concatenation (less memory, fewer
    full-resolution multiply-adds). The per-scale weights start as identities, so the fusion starts as the
    sum of the scales (as in the original code).

    Args:
        spatial_dims: number of spatial axes (2 or 3).
        in_channels: channels of each input scale, finest first.
        head_channels: width of the head (64 in the paper).
        out_channels: channels of the output 1x1 conv; ``None`` returns the ``head_channels`` fused features
            (e.g. for a recurrent unit that acts as the output layer).

    Raises:
        ValueError: if ``in_channels`` is empty or any channel count is not positive.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: Sequence[int],
        head_channels: int = 64,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        bad_out = out_channels is not None and out_channels < 1
        if not in_channels or min(in_channels) < 1 or head_channels < 1 or bad_out:
            raise ValueError(
                f"in_channels {tuple(in_channels)}, head_channels {head_channels} and out_channels {out_channels} "
                "must be positive (and in_channels non-empty)."
            )
        conv = Conv[Conv.CONV, spatial_dims]
        norm = Norm[Norm.BATCH, spatial_dims]
        self.interp_mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.conv_fn = F.conv2d if spatial_dims == 2 else F.conv3d
        self.scale_convs = nn.ModuleList(
            nn.Sequential(conv(c, head_channels, 3, padding=1, bias=False), norm(head_channels), nn.ReLU(inplace=True))
            for c in in_channels
        )
        self.fuse = nn.ModuleList(conv(head_channels, head_channels, 1, bias=False) for _ in in_channels)
        self.fuse_bias = nn.Parameter(torch.zeros(head_channels))
        self.mix = nn.Sequential(
            conv(head_channels, head_channels, 1, bias=False), norm(head_channels), nn.ReLU(inplace=True)
        )
        self.out = None if out_channels is None else conv(head_channels, out_channels, 1)
        identity = torch.eye(head_channels).view(head_channels, head_channels, *([1] * spatial_dims))
        with torch.no_grad():
            for layer in self.fuse:
                layer.get_parameter("weight").copy_(identity)

    def forward(
        self, features: Sequence[torch.Tensor], shared: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Fuse the scales.

        Args:
            features: one map per scale, ``(N, c_s, *spatial_s)``, finest first; the output has the spatial
                size of ``features[0]``. Without ``shared``, ``c_s = in_channels[s]``.
            shared: optional per-sample maps ``(M, in_channels[s] - c_s, *spatial_s)`` with ``N = M * T``, that
                every one of the ``T`` consecutive frames of a sample is paired with (the Siamese target of a
                motion head). Scale ``s`` then sees ``cat([features[s], shared[s] repeated T times], dim=1)``,
                computed without building that concatenation: the shared half of the 3x3 conv (linear, before
                batch norm) runs once per sample and its result is repeated.

        Returns:
            ``(N, out_channels or head_channels, *spatial_0)``.

        Raises:
            ValueError: if the number of feature maps differs from ``len(in_channels)``, or ``N`` is not a
                multiple of ``M``.
        """
        if len(features) != len(self.scale_convs) or (shared is not None and len(shared) != len(features)):
            raise ValueError(f"expected {len(self.scale_convs)} feature maps per input, got {len(features)}.")
        size = features[0].shape[2:]
        fused = None
        for s, (x, scale_conv, fuse) in enumerate(zip(features, self.scale_convs, self.fuse)):
            y = fuse(scale_conv(x) if shared is None else self._paired_scale(scale_conv, x, shared[s]))
            if y.shape[2:] != size:
                y = F.interpolate(y, size=size, mode=self.interp_mode, align_corners=False)
            fused = y if fused is None else fused + y
        assert fused is not None  # features is not empty (as many maps as in_channels)
        bias = self.fuse_bias.view(1, -1, *([1] * len(size)))
        y = self.mix(fused + bias.to(fused.dtype))
        return y if self.out is None else self.out(y)

    def _paired_scale(self, scale_conv: nn.Module, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """``scale_conv(cat([x, shared repeated], dim=1))`` with the shared half of the conv run once per sample."""
        if x.shape[0] % shared.shape[0]:
            raise ValueError(f"{x.shape[0]} frames cannot be split into {shared.shape[0]} samples.")
        layers = cast(nn.Sequential, scale_conv)  # a scale_convs entry: conv, norm, ReLU
        conv, rest = cast("nn.Conv2d | nn.Conv3d", layers[0]), layers[1:]
        split = x.shape[1]
        own = self.conv_fn(x, conv.weight[:, :split], padding=conv.padding)
        common = self.conv_fn(shared, conv.weight[:, split:], padding=conv.padding)
        return rest(own + common.repeat_interleave(x.shape[0] // shared.shape[0], dim=0))
