"""ExponentialMovingAverage: the closed-form average, copies, buffers, unwrapping and the ignite wiring."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monai_cardiac.handlers import ExponentialMovingAverage


def _set_weights(network: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.fill_(value)


def _averaged_values(ema: ExponentialMovingAverage) -> set[float]:
    return {round(float(v), 6) for p in ema.module.parameters() for v in p.detach().flatten()}


def test_average_follows_the_closed_form():
    network = torch.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(network, decay=0.9)
    expected = None
    for value in (1.0, 3.0, -2.0):
        _set_weights(network, value)
        ema()
        expected = value if expected is None else 0.9 * expected + 0.1 * value
    assert ema.num_updates == 3
    assert _averaged_values(ema) == {round(expected, 6)}  # 1 -> 1.2 -> 0.88
    assert expected == pytest.approx(0.88)


def test_zero_decay_keeps_the_latest_weights_and_the_copy_is_independent():
    network = torch.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(network, decay=0.0)
    _set_weights(network, 5.0)
    ema()
    _set_weights(network, 7.0)
    assert _averaged_values(ema) == {5.0}  # not updated yet: a copy, not the network itself
    ema()
    assert _averaged_values(ema) == {7.0}
    assert type(ema.module) is torch.nn.Linear
    assert ema.module.state_dict().keys() == network.state_dict().keys()


def test_buffers_are_copied_not_averaged():
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = ExponentialMovingAverage(network, decay=0.99)
    for _ in range(2):
        network(torch.randn(4, 1, 8, 8) * 3 + 1)
        ema()
    averaged_bn, bn = ema.module[1], network[1]
    assert torch.equal(averaged_bn.running_mean, bn.running_mean)
    assert torch.equal(averaged_bn.running_var, bn.running_var)
    assert int(averaged_bn.num_batches_tracked) == int(bn.num_batches_tracked) == 2


def test_data_parallel_network_is_averaged_unwrapped():
    inner = torch.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(torch.nn.DataParallel(inner), decay=0.5)
    assert ema.network is inner
    assert not any(key.startswith("module.") for key in ema.module.state_dict())
    _set_weights(inner, 2.0)
    ema()
    _set_weights(inner, 4.0)
    ema()
    assert _averaged_values(ema) == {3.0}


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_decay_outside_the_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(torch.nn.Linear(2, 2), decay=decay)


def test_attached_handler_updates_once_per_iteration():
    network = torch.nn.Linear(2, 1)

    def step(engine, batch):
        _set_weights(network, float(engine.state.iteration))

    engine = Engine(step)
    ema = ExponentialMovingAverage(network, decay=0.5)
    ema.attach(engine)
    ema.attach(engine)  # attaching twice must not update twice
    engine.run(range(4), max_epochs=1)
    assert ema.num_updates == 4
    # iterations 1..4: 1 -> 1.5 -> 2.25 -> 3.125
    assert _averaged_values(ema) == {3.125}


def test_warmup_lowers_the_early_decays_as_tensorflow_does():
    network = torch.nn.Linear(2, 2)
    ema = ExponentialMovingAverage(network, decay=0.99, warmup=True)
    assert [round(ema.current_decay(n), 4) for n in (1, 10, 100, 1000)] == [0.1818, 0.55, 0.9182, 0.99]
    expected = None
    for update, value in enumerate((4.0, 0.0, 2.0)):
        _set_weights(network, value)
        ema()
        decay = min(0.99, (1 + update) / (10 + update))
        expected = value if expected is None else decay * expected + (1 - decay) * value
    assert _averaged_values(ema) == {round(expected, 6)}
    assert ExponentialMovingAverage(network, decay=0.99).current_decay(1) == 0.99
