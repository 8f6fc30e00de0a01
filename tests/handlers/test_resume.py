"""ResumableTrainingState: a stopped run continues where it stopped and ends where an uninterrupted run ends."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from monai_cardiac.handlers import ResumableTrainingState

DATA = [torch.linspace(-1, 1, 8).reshape(4, 2) * (i + 1) for i in range(5)]


def _trainer(network: torch.nn.Module, optimizer: torch.optim.Optimizer, seen: list) -> Engine:
    """A trainer whose updates draw from every global generator, so a lost RNG state changes the weights."""

    def step(engine: Engine, batch: torch.Tensor) -> float:
        noise = torch.randn_like(batch) * 0.1 + float(np.random.rand()) * 0.01 + random.random() * 0.01
        optimizer.zero_grad()
        loss = (network(batch + noise) ** 2).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    engine = Engine(step)
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(e.state.epoch))
    return engine


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    network = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.05)
    return network, optimizer


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    network, optimizer = _setup()
    seen_full: list = []
    _trainer(network, optimizer, seen_full).run(DATA, max_epochs=5)
    expected = {k: v.clone() for k, v in network.state_dict().items()}

    # the same run stopped after its third epoch ...
    network, optimizer = _setup()
    seen_first: list = []
    first = _trainer(network, optimizer, seen_first)
    ResumableTrainingState(tmp_path / "state.pt", {"model": network, "optimizer": optimizer}).attach(first)
    first.add_event_handler(Events.EPOCH_COMPLETED(once=3), lambda e: e.terminate())
    first.run(DATA, max_epochs=5)
    saved = ResumableTrainingState.read(tmp_path / "state.pt")
    assert (saved["epoch"], saved["iteration"], saved["max_epochs"]) == (3, 15, 5)

    # ... and started again in a fresh process-like state: new objects, other random states
    network, optimizer = _setup(seed=123)
    seen_second: list = []
    second = _trainer(network, optimizer, seen_second)
    ResumableTrainingState(tmp_path / "state.pt", {"model": network, "optimizer": optimizer}, resume=True).attach(
        second
    )
    second.run(DATA, max_epochs=5)
    assert seen_first == [1, 2, 3] and seen_second == [4, 5] and seen_full == [1, 2, 3, 4, 5]
    assert second.state.iteration == 25
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def _run_with_state(path, network, optimizer, max_epochs: int, resume: bool = False) -> list:
    """Run a trainer with a ResumableTrainingState of the network at ``path``; the epochs it started."""
    seen: list = []
    trainer = _trainer(network, optimizer, seen)
    ResumableTrainingState(path, {"model": network}, resume=resume).attach(trainer)
    trainer.run(DATA, max_epochs=max_epochs)
    return seen


def test_finished_stage_is_loaded_not_trained_again(tmp_path):
    network, optimizer = _setup()
    _run_with_state(tmp_path / "state.pt", network, optimizer, 2)
    trained = {k: v.clone() for k, v in network.state_dict().items()}

    network, optimizer = _setup(seed=7)
    seen = _run_with_state(tmp_path / "state.pt", network, optimizer, 2, resume=True)
    assert seen == []  # no epoch ran
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)


def test_without_resume_a_fresh_run_starts(tmp_path):
    network, optimizer = _setup()
    _run_with_state(tmp_path / "state.pt", network, optimizer, 2)
    assert _run_with_state(tmp_path / "state.pt", network, optimizer, 2, resume=False) == [1, 2]


def test_mismatched_state_is_refused(tmp_path):
    network, optimizer = _setup()
    _run_with_state(tmp_path / "state.pt", network, optimizer, 3)
    other = _trainer(network, optimizer, [])
    ResumableTrainingState(tmp_path / "state.pt", {"model": network, "optimizer": optimizer}, resume=True).attach(
        other
    )
    with pytest.raises(ValueError, match="no state for \\['optimizer'\\]"):
        other.run(DATA, max_epochs=3)
    with pytest.raises(ValueError, match="beyond this run's max_epochs 2"):
        _run_with_state(tmp_path / "state.pt", network, optimizer, 2, resume=True)
    torch.save({"model": network.state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a training state"):
        ResumableTrainingState.read(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not 'trainer'"):
        ResumableTrainingState(tmp_path / "x.pt", {"trainer": network})
