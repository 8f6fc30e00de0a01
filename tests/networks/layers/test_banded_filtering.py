"""Tests of banded_separable_filtering against MONAI's separable_filtering."""

from __future__ import annotations

import pytest
import torch
from monai.networks.layers import gaussian_1d, separable_filtering

from monai_cardiac.networks.layers import banded_separable_filtering


@pytest.mark.parametrize("mode", ["zeros", "replicate"])
@pytest.mark.parametrize("shape", [(2, 3, 17), (2, 3, 16, 21), (1, 2, 9, 12, 7)])
def test_equals_monai_separable_filtering(mode, shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    spatial = len(shape) - 2
    # asymmetric kernels catch a flipped (convolution instead of correlation) implementation;
    # a kernel longer than an axis catches wrong edge handling
    kernels = [torch.randn(2 * k + 3, dtype=torch.float64) for k in range(spatial)]
    if spatial == 3:
        kernels[2] = torch.randn(9, dtype=torch.float64)  # 9 > 7 voxels
    expected = separable_filtering(x, kernels=kernels, mode=mode)
    assert torch.allclose(banded_separable_filtering(x, kernels, mode=mode), expected, atol=1e-12)


def test_one_kernel_for_all_axes_unit_kernels_and_gradients():
    torch.manual_seed(1)
    x = torch.randn(2, 1, 12, 10, dtype=torch.float64, requires_grad=True)
    box = torch.ones(5, dtype=torch.float64)
    assert torch.allclose(banded_separable_filtering(x, box), separable_filtering(x, box), atol=1e-12)
    # a unit kernel leaves its axis alone
    gauss = gaussian_1d(torch.tensor(1.5), truncated=4.0, approx="sampled", normalize=True).double()
    one = torch.ones(1, dtype=torch.float64)
    only_w = banded_separable_filtering(x, [one, gauss], mode="replicate")
    assert torch.allclose(only_w, separable_filtering(x, [one, gauss], mode="replicate"), atol=1e-12)
    # replicate padding keeps a constant field constant
    const = torch.full((1, 2, 8, 8), 3.0, dtype=torch.float64)
    assert torch.allclose(banded_separable_filtering(const, gauss, mode="replicate"), const)
    assert torch.autograd.gradcheck(lambda t: banded_separable_filtering(t, [box, gauss], mode="replicate"), (x,))


def test_rejects_bad_arguments():
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="mode"):
        banded_separable_filtering(x, torch.ones(3), mode="reflect")
    with pytest.raises(ValueError, match="expected 2 kernels"):
        banded_separable_filtering(x, [torch.ones(3)] * 3)
    with pytest.raises(ValueError, match="odd length"):
        banded_separable_filtering(x, torch.ones(4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        banded_separable_filtering(x.numpy(), torch.ones(3))
