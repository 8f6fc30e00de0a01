"""DisplacementWarp and ScalingAndSquaring give MONAI's Warp and DVF2DDF values, gradients, and no state."""

from __future__ import annotations

import warnings

import pytest
import torch
from monai.networks.blocks import DVF2DDF, Warp

from monai_cardiac.networks.blocks import DisplacementWarp, ScalingAndSquaring

torch.set_num_threads(1)


def _monai(layer_type, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Warp's note that it falls back to grid_sample
        return layer_type(**kwargs)


@pytest.mark.parametrize("spatial", [(12, 10), (4, 6, 5)])
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_warp_layer_equals_monai_warp_in_values_and_gradients(spatial, padding_mode):
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, *spatial, generator=generator, dtype=torch.float64, requires_grad=True)
    ddf = (1.5 * torch.randn(2, len(spatial), *spatial, generator=generator, dtype=torch.float64)).requires_grad_()
    ours = DisplacementWarp(padding_mode=padding_mode)(image, ddf)
    theirs = _monai(Warp, mode="bilinear", padding_mode=padding_mode)(image, ddf)
    assert torch.allclose(ours, theirs, atol=1e-12)
    weights = torch.rand(ours.shape, generator=generator, dtype=torch.float64)
    ours_grads = torch.autograd.grad((ours * weights).sum(), (image, ddf))
    theirs_grads = torch.autograd.grad((theirs * weights).sum(), (image, ddf))
    for a, b in zip(ours_grads, theirs_grads):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_scaling_and_squaring_equals_monai_dvf2ddf(padding_mode):
    generator = torch.Generator().manual_seed(2)
    dvf = 3.0 * torch.randn(2, 2, 16, 14, generator=generator, dtype=torch.float64)
    ours = ScalingAndSquaring(num_steps=5, padding_mode=padding_mode)(dvf)
    theirs = _monai(DVF2DDF, num_steps=5, mode="bilinear", padding_mode=padding_mode)(dvf)
    assert torch.allclose(ours, theirs, atol=1e-10)
    assert (ours - dvf).abs().max() > 0.1  # a non-uniform velocity is not its own exponential


def test_a_constant_velocity_is_that_translation_and_the_layers_hold_no_state():
    dvf = torch.zeros(1, 2, 9, 9)
    dvf[:, 0], dvf[:, 1] = 1.25, -0.5
    assert torch.allclose(ScalingAndSquaring(num_steps=7, padding_mode="border")(dvf), dvf, atol=1e-5)
    assert ScalingAndSquaring().state_dict() == {} and DisplacementWarp().state_dict() == {}
    with pytest.raises(ValueError, match="num_steps"):
        ScalingAndSquaring(num_steps=0)
