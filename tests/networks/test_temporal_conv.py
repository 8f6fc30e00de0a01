"""Tests of the non-causal temporal convolutional network with explicit time."""

from __future__ import annotations

import pytest
import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.blocks.temporal_conv import TemporalConvNet, normalized_time

D = 8


def make_tcn(padding_mode: str = "zeros") -> TemporalConvNet:
    torch.manual_seed(0)
    return TemporalConvNet(channels=D, padding_mode=padding_mode).double()


def step_dependence(tcn: TemporalConvNet, steps: int) -> torch.Tensor:
    """(T_out, T_in) bool: True where some output channel at t_out depends on some input at t_in."""
    z = torch.randn(1, D, steps, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    jac = torch.autograd.functional.jacobian(lambda x: tcn(x), z)  # (1, D, T, 1, D, T)
    return jac[0, :, :, 0].abs().amax(dim=(0, 2)) > 0


def test_normalized_time_runs_from_one_over_t_to_one():
    assert torch.allclose(normalized_time(4), torch.tensor([0.25, 0.5, 0.75, 1.0]))
    with pytest.raises(ValueError):
        normalized_time(0)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("steps", [1, 4, 13, 35, 50])
def test_any_sequence_length(padding_mode, steps):
    tcn = make_tcn(padding_mode)
    z = torch.randn(2, D, steps, dtype=torch.float64)
    out = tcn(z)
    assert out.shape == (2, D, steps)
    assert torch.isfinite(out).all()


def test_receptive_field_is_exactly_31_steps():
    tcn = make_tcn("zeros")
    assert tcn.receptive_field == 1 + 2 * (1 + 2 + 4 + 8) == 31
    steps = 45
    dep = step_dependence(tcn, steps)
    t = torch.arange(steps)
    expected = (t[:, None] - t[None, :]).abs() <= 15
    assert torch.equal(dep, expected)


def test_gradients_reach_every_layer():
    tcn = make_tcn()
    z = torch.randn(2, D, 6, dtype=torch.float64, requires_grad=True)
    tcn(z).square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for name, param in tcn.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_neighbouring_step_changes_output_of_a_fixed_step():
    # the dropped-step property: step 5's output moves when only step 6's input moves
    tcn = make_tcn()
    z = torch.randn(1, D, 30, dtype=torch.float64)
    z2 = z.clone()
    z2[:, :, 6] += 1.0
    out, out2 = tcn(z), tcn(z2)
    assert not torch.allclose(out[:, :, 5], out2[:, :, 5])
    assert torch.equal(out[:, :, 22:], out2[:, :, 22:])  # beyond 6 + 15: untouched


def test_circular_padding_links_first_and_last_steps():
    steps = 40  # longer than the receptive field: with zeros, step 0 cannot see step 39
    assert not step_dependence(make_tcn("zeros"), steps)[0, steps - 1]
    dep = step_dependence(make_tcn("circular"), steps)
    assert dep[0, steps - 1] and dep[steps - 1, 0]
    assert dep[0, steps - 15] and not dep[0, steps - 16]  # wrap distance 15 in, 16 out


def test_time_channel_makes_identical_codes_differ():
    tcn = make_tcn("circular")  # circular: no border effect, so only time can tell the steps apart
    z = torch.randn(1, D, 1, dtype=torch.float64).expand(1, D, 10)
    out = tcn(z)
    assert (out - out[:, :, :1]).abs().amax() > 1e-3
    assert not torch.allclose(out, tcn(z, time=torch.zeros(10)))
    with torch.no_grad():  # without the time inputs the network is shift-equivariant: constant output
        tcn.convs[0].weight[:, -1] = 0
        tcn.input_projection.weight[:, -1] = 0
    out = tcn(z)
    assert torch.allclose(out, out[:, :, :1].expand_as(out), atol=1e-12)


def test_time_per_batch_element():
    tcn = make_tcn()
    z = torch.randn(2, D, 5, dtype=torch.float64)
    time = torch.stack([normalized_time(5), torch.zeros(5)]).double()
    out = tcn(z, time=time)
    assert torch.allclose(out[0], tcn(z[:1])[0])
    assert torch.allclose(out[1], tcn(z[1:], time=torch.zeros(5))[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        TemporalConvNet(D, kernel_size=4)
    with pytest.raises(ValueError, match="padding_mode"):
        TemporalConvNet(D, padding_mode="reflect")
    with pytest.raises(ValueError, match="dilations"):
        TemporalConvNet(D, dilations=())
    tcn = TemporalConvNet(D)
    with pytest.raises(CineDataError, match=r"\(B, 8, T\)"):
        tcn(torch.randn(1, D + 1, 5))
    with pytest.raises(CineDataError, match="time"):
        tcn(torch.randn(1, D, 5), time=torch.zeros(4))
