"""An ignite handler that fills a network from a checkpoint after checking the checkpoint's description."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from monai_cardiac.checkpoints import load_model_weights

if TYPE_CHECKING:
    from ignite.engine import Engine

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["CheckedCheckpointLoader"]


class CheckedCheckpointLoader:
    """Load a network's weights when the engine starts, as MONAI's ``CheckpointLoader`` with one ``"model"``.

    Loading goes through :func:`monai_cardiac.checkpoints.load_model_weights`: an unreadable file, a checkpoint
    saved from a network built with other arguments, or one of an unfinished training run (unless
    ``allow_unfinished``) stops the engine with one message naming the file and the problem.

    Args:
        load_path: the checkpoint file.
        network: the network to fill.
        map_location: where the tensors are mapped.
        allow_unfinished: accept the checkpoint of a training run that has not finished.
    """

    def __init__(
        self,
        load_path: str | os.PathLike,
        network: nn.Module,
        map_location: torch.device | str = "cpu",
        allow_unfinished: bool = False,
    ) -> None:
        self.load_path = load_path
        self.network = network
        self.map_location = map_location
        self.allow_unfinished = bool(allow_unfinished)

    def attach(self, engine: Engine) -> None:
        """Load at ``STARTED``."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        load_model_weights(self.network, self.load_path, self.map_location, self.allow_unfinished)
