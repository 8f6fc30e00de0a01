"""Separable 1-D filtering as products with banded matrices, MONAI's ``separable_filtering`` made cheap to train."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["banded_separable_filtering"]

_PADDING_MODES = ("zeros", "replicate")


def _banded_matrix(kernel: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """The ``(size, size)`` matrix ``M`` with ``M @ x`` = the 1-D correlation of ``x`` with ``kernel``.

    Row ``i`` holds ``kernel[j]`` at column ``i + j - p`` (``p`` = half the kernel): columns outside
    ``[0, size)`` are dropped (``"zeros"``) or moved to the nearest edge (``"replicate"``), as padding the
    input that way would do.
    """
    half = (kernel.numel() - 1) // 2
    rows = torch.arange(size, device=kernel.device)[:, None].expand(size, kernel.numel())
    cols = rows + torch.arange(kernel.numel(), device=kernel.device)[None] - half
    weights = kernel[None].expand(size, kernel.numel())
    if mode == "zeros":
        inside = (cols >= 0) & (cols < size)
        rows, cols, weights = rows[inside], cols[inside], weights[inside]
    else:
        cols = cols.clamp(0, size - 1)
    matrix = torch.zeros(size, size, dtype=kernel.dtype, device=kernel.device)
    return matrix.index_put_((rows.reshape(-1), cols.reshape(-1)), weights.reshape(-1), accumulate=True)


def banded_separable_filtering(
    x: torch.Tensor, kernels: torch.Tensor | Sequence[torch.Tensor], mode: str = "zeros"
) -> torch.Tensor:
    """Filter every spatial axis of ``x`` with a 1-D kernel, as a matrix product per axis.

    The result equals :func:`monai.networks.layers.separable_filtering` with the same kernels and padding (a
    correlation: kernels are not flipped; odd lengths centred on the voxel), up to floating-point summation
    order. Each axis is filtered by multiplying with a banded ``(n, n)`` matrix (``n`` = that axis's size),
    which folds the padding into the band's edge rows. On the CPU the products and their gradients go
    through BLAS, where the grouped 1-D convolutions MONAI uses have a slow backward pass for single-channel
    long kernels: for a window of 15 voxels on ``(24, 1, 96, 96)`` maps the matrix form trains several times
    faster (``benchmarks/probabilistic_training_speed.py``). The cost is ``O(n)`` per voxel instead of ``O(k)``, so it
    pays for moderate axis sizes (the crops of this project, up to a few hundred voxels), not for huge ones.

    Args:
        x: input ``(B, C, *spatial)``, any number of spatial axes.
        kernels: one 1-D kernel of odd length for every spatial axis, or one kernel for all; a kernel of
            length 1 equal to 1 leaves its axis unfiltered.
        mode: padding outside the input: ``"zeros"`` or ``"replicate"`` (the edge value).

    Returns:
        the filtered tensor, same shape and dtype as ``x``.

    Raises:
        TypeError: when ``x`` is not a tensor.
        ValueError: on an unknown ``mode``, a kernel count other than the number of spatial axes, or a kernel
            that is not 1-D of odd length.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}.")
    if mode not in _PADDING_MODES:
        raise ValueError(f"mode must be one of {_PADDING_MODES}, got {mode!r}.")
    spatial_dims = x.ndim - 2
    kernel_list = [kernels] * spatial_dims if isinstance(kernels, torch.Tensor) else list(kernels)
    if len(kernel_list) != spatial_dims:
        raise ValueError(f"expected {spatial_dims} kernels (one per spatial axis), got {len(kernel_list)}.")
    out = x
    for axis, kernel in enumerate(kernel_list):
        if kernel.ndim != 1 or kernel.numel() % 2 == 0:
            raise ValueError(f"kernel {axis} must be 1-D of odd length, got shape {tuple(kernel.shape)}.")
        if kernel.numel() == 1 and float(kernel[0]) == 1.0:
            continue
        dim = axis + 2
        matrix = _banded_matrix(kernel.to(device=x.device, dtype=x.dtype), x.shape[dim], mode)
        out = torch.matmul(out.movedim(dim, -1), matrix.T).movedim(-1, dim)
    return out
