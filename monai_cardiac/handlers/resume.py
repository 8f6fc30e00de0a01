"""An ignite handler that makes a training run resumable after it was stopped, at most one epoch lost."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.utils import IgniteInfo, min_version, optional_import

if TYPE_CHECKING:
    from ignite.engine import Engine

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["ResumableTrainingState"]

_FORMAT = "monai_cardiac.training_state/1"


def _rng_state() -> dict[str, Any]:
    """The global random generators' states (Python, NumPy, torch CPU and, where present, CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableTrainingState:
    """Save a trainer's whole state after every epoch, and continue from it when the run is started again.

    After each completed epoch, one file at ``path`` is (atomically) replaced by the state dicts of the trainer it
    is attached to (its epoch and iteration counts, under ``"trainer"``) and of every object in ``save_dict``
    (network, optimizer, a learning-rate scheduler, a weight average, ...), and by the states of the global random
    generators (Python, NumPy, torch).
    When the trainer starts and ``resume`` is set and the file exists, everything is loaded back: ignite then
    continues with the epoch after the saved one, so a run stopped anywhere (even by SIGKILL) loses at most the
    epoch in progress. A stage whose file records its last epoch is loaded and not trained again (ignite runs no
    epoch when the loaded epoch count equals ``max_epochs``), which is how a multi-stage schedule skips the stages
    that had finished.

    Attach it after the handlers that load a previous stage's weights at ``STARTED``, so the resumed weights win.
    The file is a plain ``torch.save`` dictionary; :meth:`read` returns it.

    Args:
        path: the state file (one per trainer, e.g. ``models/resume_motion.pt``).
        save_dict: objects with ``state_dict`` / ``load_state_dict``, by name (``"trainer"`` is reserved for the
            engine the handler is attached to).
        resume: load the file when the trainer starts (when it exists). Without it a fresh run starts, and the
            file is overwritten after its first epoch.

    Raises:
        ValueError: ``save_dict`` is empty or names an object ``"trainer"``.
    """

    def __init__(self, path: str | os.PathLike, save_dict: Mapping[str, Any], resume: bool = False) -> None:
        if not save_dict or "trainer" in save_dict:
            raise ValueError(f"save_dict must name at least one object to save, and not 'trainer': {list(save_dict)}.")
        self.path = Path(path)
        self.save_dict = dict(save_dict)
        self.resume = bool(resume)

    def attach(self, engine: Engine) -> None:
        """Load at ``STARTED`` (with ``resume``) and save at every ``EPOCH_COMPLETED``."""
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    @staticmethod
    def read(path: str | os.PathLike) -> dict[str, Any]:
        """The saved state at ``path`` (``{"format", "epoch", "max_epochs", "iteration", "states", "rng"}``).

        Raises:
            ValueError: the file is not a training state written by this handler.
        """
        state = torch.load(Path(path), map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a training state written by ResumableTrainingState.")
        return state

    def load(self, engine: Engine) -> None:
        """Restore every object and the random generators from :attr:`path`, if ``resume`` and the file exists."""
        if not (self.resume and self.path.is_file()):
            return
        state = self.read(self.path)
        objects = {"trainer": engine, **self.save_dict}
        missing = sorted(set(objects) - set(state["states"]))
        if missing:
            raise ValueError(f"{self.path} holds no state for {missing}; it was written by another configuration.")
        max_epochs = engine.state.max_epochs
        if state["epoch"] > max_epochs:
            raise ValueError(
                f"{self.path} was saved after epoch {state['epoch']}, beyond this run's max_epochs {max_epochs}."
            )
        for name, obj in objects.items():
            obj.load_state_dict(state["states"][name])
        engine.state.max_epochs = max_epochs  # the trainer's state dict carries the saved run's value
        _set_rng_state(state["rng"])

    def save(self, engine: Engine) -> None:
        """Write the state after the epoch that just completed (to a temporary file, then renamed)."""
        state = {
            "format": _FORMAT,
            "epoch": engine.state.epoch,
            "max_epochs": engine.state.max_epochs,
            "iteration": engine.state.iteration,
            "states": {name: obj.state_dict() for name, obj in {"trainer": engine, **self.save_dict}.items()},
            "rng": _rng_state(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")  # one per process (DDP ranks)
        torch.save(state, partial)
        os.replace(partial, self.path)
