"""DihedralEnsembleInferer: exact orientation equivariance of the averaged joint outputs."""

from __future__ import annotations

import pytest
import torch

from monai_cardiac.displacement import warp_image
from monai_cardiac.errors import CineDataError
from monai_cardiac.inferers import DihedralEnsembleInferer, dihedral_transforms, orientation_averaged_joint_outputs
from monai_cardiac.inferers.dihedral import _apply, _vector_matrix
from monai_cardiac.networks import StackedJointMotionSegNet


def _net(**kwargs) -> StackedJointMotionSegNet:
    torch.manual_seed(0)
    net = StackedJointMotionSegNet(
        outputs=["ddf_to_target", "seg_logits_target", "seg_logits_sources"], width_multiplier=0.0625, **kwargs
    )
    return net.eval()


def test_eight_orientations_are_distinct_and_the_identity_comes_first():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    images = {tuple(_apply(x, k, m).flatten().tolist()) for k, m in dihedral_transforms()}
    assert len(images) == 8 and dihedral_transforms()[0] == (0, False)
    assert dihedral_transforms(square=False) == [(0, False), (2, False), (0, True), (2, True)]


@pytest.mark.parametrize("k, mirrored", dihedral_transforms())
def test_vector_matrix_turns_a_pull_field_with_its_images(k, mirrored):
    """Re-oriented source warped by the re-oriented field (components turned by A^-1) = re-oriented target."""
    torch.manual_seed(1)
    source = torch.rand(1, 1, 16, 16)
    field = torch.nn.functional.avg_pool2d(torch.randn(1, 2, 16, 16) * 3, 5, 1, 2)
    target = warp_image(source, field)
    matrix = _vector_matrix(k, mirrored, source.device)
    turned = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(matrix), _apply(field, k, mirrored))
    torch.testing.assert_close(warp_image(_apply(source, k, mirrored), turned), _apply(target, k, mirrored),
                               atol=1e-5, rtol=0)
    assert torch.equal(matrix.abs().sum(0), torch.ones(2))  # a signed permutation


@torch.no_grad()
@pytest.mark.parametrize("k, mirrored", dihedral_transforms()[1:])
def test_averaged_outputs_are_exactly_equivariant(k, mirrored):
    net = _net()
    torch.manual_seed(2)
    x = torch.rand(1, 4, 32, 32)  # ED + 3 sources
    inferer = DihedralEnsembleInferer(num_classes=4)
    out, out_turned = inferer(x, net), inferer(_apply(x, k, mirrored), net)
    num_fields = 2 * 3
    matrix = _vector_matrix(k, mirrored, x.device)
    fields = out[:, :num_fields].unflatten(1, (3, 2))
    expected = torch.einsum("ij,btjhw->btihw", torch.linalg.inv(matrix), _apply(fields, k, mirrored))
    torch.testing.assert_close(out_turned[:, :num_fields].unflatten(1, (3, 2)), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out_turned[:, num_fields:], _apply(out[:, num_fields:], k, mirrored), atol=1e-4,
                               rtol=0)
    # the single network is not equivariant: the averaging is what makes it so
    single = DihedralEnsembleInferer(num_classes=4, orientations=[(0, False)])
    raw, raw_turned = single(x, net), single(_apply(x, k, mirrored), net)
    assert (raw_turned[:, num_fields:] - _apply(raw[:, num_fields:], k, mirrored)).abs().max() > 1e-3


@torch.no_grad()
def test_identity_only_returns_the_network_fields_and_log_softmax():
    net = _net()
    x = torch.rand(2, 3, 32, 32)
    raw = net(x)
    out = DihedralEnsembleInferer(num_classes=4, orientations=[(0, False)])(x, net)
    torch.testing.assert_close(out[:, :4], raw[:, :4])
    logits = raw[:, 4:].unflatten(1, (3, 4))
    torch.testing.assert_close(out[:, 4:], torch.log_softmax(logits, 2).flatten(1, 2), atol=1e-5, rtol=0)
    probabilities = DihedralEnsembleInferer(num_classes=4)(x, net)[:, 4:].unflatten(1, (3, 4)).exp().sum(2)
    torch.testing.assert_close(probabilities, torch.ones_like(probabilities))


@torch.no_grad()
def test_segmentation_only_and_non_square_inputs():
    net = StackedJointMotionSegNet(outputs=["seg_logits_target"], width_multiplier=0.0625, motion=False).eval()
    out = DihedralEnsembleInferer(num_classes=4, displacements=False)(torch.rand(1, 1, 32, 48), net)
    assert out.shape == (1, 4, 32, 48)
    with pytest.raises(CineDataError, match="non-square"):
        DihedralEnsembleInferer(orientations=[(1, False)])(torch.rand(1, 2, 32, 48), _net())


def test_bad_arguments_and_outputs_are_refused():
    with pytest.raises(ValueError, match="num_classes"):
        DihedralEnsembleInferer(num_classes=0)
    with pytest.raises(ValueError, match="orientations"):
        DihedralEnsembleInferer(orientations=[(4, False)])
    with pytest.raises(CineDataError, match="expected inputs|expected images"):
        DihedralEnsembleInferer()(torch.rand(2, 32, 32), _net())
    with pytest.raises(CineDataError, match="network output"):
        DihedralEnsembleInferer(num_classes=3)(torch.rand(1, 2, 32, 32), _net())


@torch.no_grad()
def test_dict_interface_average_equals_the_stacked_inferer():
    net = _net()
    x = torch.rand(1, 4, 32, 32)
    stacked = DihedralEnsembleInferer(num_classes=4)(x, net)
    out = orientation_averaged_joint_outputs(super(StackedJointMotionSegNet, net).forward, x[:, :1], x[:, 1:])
    assert set(out) == {"ddf_to_target", "seg_logits_target", "seg_logits_sources"}
    torch.testing.assert_close(out["ddf_to_target"].flatten(1, 2), stacked[:, :6], atol=1e-5, rtol=0)
    logits = torch.cat([out["seg_logits_target"][:, None], out["seg_logits_sources"]], 1).flatten(1, 2)
    torch.testing.assert_close(logits, stacked[:, 6:], atol=1e-5, rtol=0)
