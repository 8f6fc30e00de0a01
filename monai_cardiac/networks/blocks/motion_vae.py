"""Encoder and decoder of the conditional VAE of a probabilistic motion model (Krebs et al., STACOM 2019).

The encoder maps one (moving, fixed) image pair to the mean and log-variance of a ``d``-dimensional code;
the decoder maps one code back to a stationary velocity field, conditioned on the moving image. Both are
independent of time: a sequence of ``T`` pairs is processed as a batch of ``B * T`` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn
from torch.nn import functional as F

from monai_cardiac.errors import CineDataError

__all__ = ["MotionEncoder", "MotionDecoder"]


def _leaky(negative_slope: float) -> tuple[str, dict]:
    """MONAI activation spec of a LeakyReLU."""
    return ("leakyrelu", {"negative_slope": negative_slope})


def _check_size(spatial_size: Sequence[int], factor: int, name: str) -> tuple[int, int]:
    """Return ``spatial_size`` as ``(H, W)`` after checking it is 2D and divisible by ``factor``."""
    size = tuple(int(s) for s in spatial_size)
    if len(size) != 2 or any(s < 1 or s % factor for s in size):
        raise ValueError(f"{name}: spatial_size must be two positive multiples of {factor}, got {spatial_size}.")
    return size  # type: ignore[return-value]


def _check_image(image: torch.Tensor, spatial_size: tuple[int, int], source: str) -> None:
    """Raise a :class:`CineDataError` unless ``image`` is ``(N, 1, *spatial_size)``."""
    if image.ndim != 4 or image.shape[1] != 1 or tuple(image.shape[2:]) != spatial_size:
        raise CineDataError(
            f"expected an image batch of shape (N, 1, {spatial_size[0]}, {spatial_size[1]}) (the network was built "
            f"for spatial_size={spatial_size}; resample or crop the images first), got {tuple(image.shape)}.",
            source,
        )


class MotionEncoder(nn.Module):
    """Posterior ``q(z~_t | I_0, I_t)``: an image pair to the mean and log-variance of a Gaussian code.

    The moving and fixed images are concatenated as 2 channels and passed through ``len(channels)``
    3 x 3 convolutions, each followed by the normalisation ``norm`` and a LeakyReLU (defaults: 16, 32, 32, 4
    channels with strides 2, 2, 2, 1, as in Krebs et al.), flattened, and mapped by two dense layers to the
    mean and the log-variance of a ``latent_dim``-dimensional diagonal Gaussian. The dense layers fix the
    image size, so ``spatial_size`` is a construction argument and other sizes are refused.

    Normalisation (the paper names none): without it the code hardly depends on ``I_t`` even after long
    training (on the phantom the posterior mean varies by ~0.001 over a sequence, whatever the KL weight or
    the temporal dropout), so the decoder learns one mean motion per time step. Instance normalisation
    (default) keeps the pair's differences in the features from the first iterations, and makes the code
    invariant to a positive rescaling of the pair's intensities. ``norm=None`` gives the un-normalised
    encoder.

    Args:
        spatial_size: ``(H, W)`` of the images, each a multiple of the product of ``strides``.
        latent_dim: ``d``, the size of the code.
        channels: output channels of each convolution.
        strides: stride of each convolution.
        kernel_size: kernel size of every convolution.
        negative_slope: LeakyReLU slope for negative inputs.
        norm: MONAI normalisation spec applied after every convolution (e.g. ``"instance"``, ``"batch"``,
            ``("group", {"num_groups": 4})``), or ``None`` for none.
        initial_log_variance: starting value of the log-variance layer's bias. At ``0`` the posterior starts
            as wide as the prior (standard deviation 1), so early samples hide the mean and the decoder learns
            to ignore the code (posterior collapse: the KL falls to ~0 and the motion stops depending on
            ``I_t``); a negative value (e.g. ``-6``, standard deviation 0.05) lets the code carry the image pair
            from the first iterations. Training still learns the variance.

    Raises:
        ValueError: when ``channels`` and ``strides`` differ in length, ``spatial_size`` is not divisible
            by the total stride, or a normalisation would see a single feature per channel (an image of one
            total stride).
    """

    def __init__(
        self,
        spatial_size: Sequence[int] = (128, 128),
        latent_dim: int = 32,
        channels: Sequence[int] = (16, 32, 32, 4),
        strides: Sequence[int] = (2, 2, 2, 1),
        kernel_size: int = 3,
        negative_slope: float = 0.2,
        norm: str | tuple | None = "instance",
        initial_log_variance: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channels) != len(strides) or len(channels) == 0:
            raise ValueError(f"channels and strides must be non-empty and equally long, got {channels}, {strides}.")
        factor = math.prod(int(s) for s in strides)
        self.spatial_size = _check_size(spatial_size, factor, "MotionEncoder")
        if norm is not None and math.prod(self.spatial_size) == factor**2:
            raise ValueError(
                f"MotionEncoder: spatial_size {self.spatial_size} leaves a 1 x 1 feature map, which normalisation "
                f"{norm!r} cannot use; give a larger image or norm=None."
            )
        self.latent_dim = latent_dim
        layers = []
        in_channels = 2
        for out_channels, stride in zip(channels, strides):
            layers.append(
                Convolution(
                    2,
                    in_channels,
                    out_channels,
                    strides=stride,
                    kernel_size=kernel_size,
                    act=_leaky(negative_slope),
                    norm=norm,
                )
            )
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        flat = in_channels * (self.spatial_size[0] // factor) * (self.spatial_size[1] // factor)
        self.mean = nn.Linear(flat, latent_dim)
        self.log_var = nn.Linear(flat, latent_dim)
        nn.init.constant_(self.log_var.bias, float(initial_log_variance))

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            moving: moving images ``I_0`` of shape ``(N, 1, H, W)``.
            fixed: fixed images ``I_t`` of shape ``(N, 1, H, W)``.

        Returns:
            ``(mu, logvar)``, each of shape ``(N, latent_dim)``: mean and natural log of the variance.

        Raises:
            CineDataError: when either input is not ``(N, 1, *spatial_size)`` or the batch sizes differ.
        """
        _check_image(moving, self.spatial_size, "MotionEncoder input moving")
        _check_image(fixed, self.spatial_size, "MotionEncoder input fixed")
        if moving.shape[0] != fixed.shape[0]:
            raise CineDataError(
                f"moving and fixed must hold as many images, got {moving.shape[0]} and {fixed.shape[0]}.",
                "MotionEncoder inputs",
            )
        features = self.features(torch.cat([moving, fixed], dim=1)).flatten(1)
        return self.mean(features), self.log_var(features)


class MotionDecoder(nn.Module):
    """Generator of ``p(I_t | z_t, I_0)``: a code to a stationary velocity field, conditioned on ``I_0``.

    A dense layer (with LeakyReLU) maps the code to a ``latent_channels`` map of size
    ``spatial_size / 2**len(channels)``; ``len(channels)`` transposed 3 x 3 convolutions of stride 2 (with
    LeakyReLU) bring it back to full size. Before each of them and before the last
    convolution, the moving image average-pooled to the current scale is concatenated as one extra
    channel. No normalisation layers anywhere (the paper names none). A final 3 x 3
    convolution without activation gives the 2-channel velocity ``v_t`` in voxels per unit time, channel
    order = array axes ``(H, W)``. Its weights start from a normal of std ``1e-5`` and a zero bias, so an
    untrained decoder gives a nearly zero velocity (identity motion) yet passes gradients upstream.

    Args:
        spatial_size: ``(H, W)`` of the images, each a multiple of ``2**len(channels)``.
        latent_dim: ``d``, the size of the code.
        channels: output channels of each transposed convolution (default 3 of them: ``H / 8`` to ``H``).
        latent_channels: channels of the map produced by the dense layer.
        kernel_size: kernel size of every convolution.
        negative_slope: LeakyReLU slope for negative inputs.

    Raises:
        ValueError: when ``channels`` is empty or ``spatial_size`` is not divisible by ``2**len(channels)``.
    """

    def __init__(
        self,
        spatial_size: Sequence[int] = (128, 128),
        latent_dim: int = 32,
        channels: Sequence[int] = (32, 32, 32),
        latent_channels: int = 32,
        kernel_size: int = 3,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if len(channels) == 0:
            raise ValueError("channels must hold at least one transposed convolution.")
        self.num_scales = len(channels)
        self.spatial_size = _check_size(spatial_size, 2**self.num_scales, "MotionDecoder")
        self.latent_dim = latent_dim
        self.latent_channels = latent_channels
        self.coarse_size = tuple(s // 2**self.num_scales for s in self.spatial_size)
        self.dense = nn.Sequential(
            nn.Linear(latent_dim, latent_channels * self.coarse_size[0] * self.coarse_size[1]),
            nn.LeakyReLU(negative_slope),
        )
        layers = []
        in_channels = latent_channels
        for out_channels in channels:
            layers.append(
                Convolution(
                    2,
                    in_channels + 1,
                    out_channels,
                    strides=2,
                    kernel_size=kernel_size,
                    act=_leaky(negative_slope),
                    norm=None,
                    is_transposed=True,
                )
            )
            in_channels = out_channels
        self.upsample = nn.ModuleList(layers)
        self.velocity = Convolution(2, in_channels + 1, 2, kernel_size=kernel_size, conv_only=True)
        nn.init.normal_(self.velocity.get_parameter("conv.weight"), mean=0.0, std=1e-5)
        nn.init.zeros_(self.velocity.get_parameter("conv.bias"))

    def forward(self, z: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """
        Args:
            z: codes of shape ``(N, latent_dim)``.
            moving: moving images ``I_0`` of shape ``(N, 1, H, W)``.

        Returns:
            velocity fields of shape ``(N, 2, H, W)`` in voxels, channel order ``(H, W)``.

        Raises:
            CineDataError: when ``z`` is not ``(N, latent_dim)`` or ``moving`` is not ``(N, 1, *spatial_size)``.
        """
        _check_image(moving, self.spatial_size, "MotionDecoder input moving")
        if z.ndim != 2 or z.shape != (moving.shape[0], self.latent_dim):
            raise CineDataError(
                f"expected codes of shape ({moving.shape[0]}, {self.latent_dim}), got {tuple(z.shape)}.",
                "MotionDecoder input z",
            )
        # channels-last layout: the same values, and on the CPU the full-resolution convolutions with few
        # output channels (the final 2-channel one above all) train about 2x faster than in NCHW
        moving = moving.contiguous(memory_format=torch.channels_last)
        x = self.dense(z).reshape(-1, self.latent_channels, *self.coarse_size)
        x = x.contiguous(memory_format=torch.channels_last)
        for scale, layer in enumerate(self.upsample):
            factor = 2 ** (self.num_scales - scale)
            x = layer(torch.cat([x, F.avg_pool2d(moving, factor)], dim=1))
        return self.velocity(torch.cat([x, moving], dim=1)).contiguous()
