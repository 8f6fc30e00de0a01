"""Tests of the conversion between normalised and voxel displacements."""

from __future__ import annotations

import pytest
import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.blocks import normalized_to_voxel_ddf, voxel_to_normalized_ddf


def test_unit_flow_along_each_axis():
    flow = torch.zeros(1, 3, 2, 9, 17)
    flow[:, :, 0] = 1.0  # one normalised unit along H
    flow[:, :, 1] = -0.5  # half a unit along W
    ddf = normalized_to_voxel_ddf(flow)
    assert torch.all(ddf[:, :, 0] == (9 - 1) / 2)
    assert torch.all(ddf[:, :, 1] == -0.5 * (17 - 1) / 2)
    torch.testing.assert_close(voxel_to_normalized_ddf(ddf), flow)


def test_3d_and_bad_shapes():
    flow = torch.ones(2, 3, 5, 9, 3)
    ddf = normalized_to_voxel_ddf(flow, spatial_dims=3)
    assert ddf[0, :, 0, 0, 0].tolist() == [2.0, 4.0, 1.0]
    with pytest.raises(CineDataError, match="expected a displacement"):
        normalized_to_voxel_ddf(torch.ones(1, 3, 8, 8))
    with pytest.raises(CineDataError, match="spatial_dims"):
        voxel_to_normalized_ddf(torch.ones(1, 2, 8, 8), spatial_dims=4)
