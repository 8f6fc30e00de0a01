"""Checkpoints that describe themselves, and loading that checks the description.

A checkpoint is ``{"model": state_dict}`` (what the bundles' ``CheckpointSaver`` writes for ``save_dict={"model":
network}``), optionally with a ``"run"`` entry: plain data written by
:class:`monai_cardiac.handlers.TrainingRunRecord` (``save_dict={"model": network, "run": record}``)::

    {"network": "JointMotionSegNet", "arguments": {...construction arguments...}, "run_id": "...",
     "stage": "joint", "epoch": 17, "max_epochs": 17, "finished": true, "config_sha256": "...", "commit": "...",
     "command": "python -m monai.bundle run ..."}

``finished`` is ``false`` while the run (that stage of it) has not completed; the record rewrites it when the stage
completes. Loading (:func:`load_model_weights`) compares the arguments with those of the network it fills, refuses a
checkpoint of an unfinished run unless asked, and turns an unreadable file into one message naming it. A checkpoint
without ``"run"`` (older files, other tools) loads as before.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.utils import construction_arguments

__all__ = ["RUN_KEY", "check_checkpoint", "check_finished", "load_model_weights", "read_checkpoint"]

RUN_KEY = "run"
"""Key of a checkpoint's description of the network and of the training run that saved it."""


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[dict, dict | None]:
    """The state dict and the description (``None`` if it has none) of a checkpoint file.

    Args:
        path: a ``{"model": state_dict[, "run": description]}`` file, or a bare state dict.
        device: where the tensors are mapped.

    Returns:
        ``(state_dict, description)``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        CineDataError: the file is not a PyTorch checkpoint of tensors (truncated, corrupt, another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no checkpoint file here", str(path))
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CineDataError(
            f"not a readable PyTorch checkpoint of tensors (truncated, corrupt or another format: {first[:160]})",
            path,
        ) from error
    if not isinstance(state, Mapping):
        raise CineDataError(f"expected a checkpoint dict, the file holds a {type(state).__name__}", path)
    description = state.get(RUN_KEY)
    weights = state.get("model", state)
    if not isinstance(weights, Mapping):
        raise CineDataError("its 'model' entry is not a state dict", path)
    weights = {k: v for k, v in weights.items() if k != RUN_KEY}
    return weights, dict(description) if isinstance(description, Mapping) else None


def _call(name: str, arguments: Mapping[str, Any]) -> str:
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"


def check_checkpoint(
    network: torch.nn.Module,
    description: Mapping[str, Any] | None,
    path: str | os.PathLike,
    allow_unfinished: bool = False,
) -> None:
    """Check that a checkpoint's description fits ``network`` and comes from a finished run.

    Arguments a network class lists in ``training_only_arguments`` (e.g. a training-mode dropout rate) are not
    compared: they do not change what the trained weights compute.

    Args:
        network: the network to be filled (its :func:`~monai_cardiac.networks.construction_arguments`).
        description: the checkpoint's ``"run"`` entry; ``None`` passes (nothing to check).
        path: the checkpoint file, for the messages.
        allow_unfinished: accept a checkpoint whose run had not finished.

    Raises:
        CineDataError: an argument that both record with different values (each named with both values, and the
            override that builds the checkpoint's network), or an unfinished run without ``allow_unfinished``.
    """
    if description is None:
        return
    saved = description.get("arguments") or {}
    current = construction_arguments(network) or {}
    training_only = set(getattr(getattr(network, "module", network), "training_only_arguments", ()))
    differing = {k: (saved[k], current[k]) for k in saved
                 if k in current and k not in training_only and saved[k] != current[k]}
    if differing:
        what = "; ".join(
            f"{k} is {old!r} in the checkpoint, {new!r} in the network" for k, (old, new) in differing.items()
        )
        overrides = " ".join(f"--network_def#{k} {old!r}".replace("'", "") for k, (old, _) in differing.items())
        raise CineDataError(
            f"the checkpoint was saved from {_call(str(description.get('network', '?')), saved)}, which differs from "
            f"the network it is loaded into: {what}; build the network with the checkpoint's arguments (in a bundle "
            f"command: {overrides})",
            path,
        )
    check_finished(description, path, allow_unfinished)


def check_finished(
    description: Mapping[str, Any] | None, path: str | os.PathLike, allow_unfinished: bool = False
) -> None:
    """Refuse the checkpoint of an unfinished training run (its description's ``finished`` false) unless asked.

    Args:
        description: the checkpoint's ``"run"`` entry; ``None`` passes.
        path: the checkpoint file, for the message.
        allow_unfinished: accept it anyway.

    Raises:
        CineDataError: an unfinished run without ``allow_unfinished``, naming its stage, epoch and run id.
    """
    if description is not None and not description.get("finished", True) and not allow_unfinished:
        stage = f"stage {description['stage']!r}, " if description.get("stage") else ""
        epochs = f"{description.get('epoch', '?')} of {description.get('max_epochs', '?')}"
        raise CineDataError(
            f"the checkpoint comes from an unfinished training run ({stage}saved after epoch {epochs}, run "
            f"{description.get('run_id', '?')}); "
            "continue that run with '--resume true', or load it anyway with allow_unfinished=True "
            "('--allow_unfinished true' in a bundle command)",
            path,
        )


def load_model_weights(
    network: torch.nn.Module,
    checkpoint: str | os.PathLike,
    device: torch.device | str = "cpu",
    allow_unfinished: bool = False,
) -> dict | None:
    """Fill ``network`` from a bundle checkpoint after checking its description (:func:`check_checkpoint`).

    Args:
        network: the module to fill (a DDP wrapper is unwrapped).
        checkpoint: a file holding ``{"model": state_dict[, "run": description]}`` or a bare state dict.
        device: where the tensors are mapped.
        allow_unfinished: accept the checkpoint of an unfinished training run.

    Returns:
        the checkpoint's description, ``None`` if it has none.

    Raises:
        FileNotFoundError: ``checkpoint`` is not a file.
        CineDataError: an unreadable file, or a description that does not fit (see :func:`check_checkpoint`).
        RuntimeError: torch's error for tensors that do not fit (summarised in one line by
            :func:`monai_cardiac.errors.brief_error_message`).
    """
    weights, description = read_checkpoint(checkpoint, device)
    check_checkpoint(network, description, checkpoint, allow_unfinished)
    getattr(network, "module", network).load_state_dict(weights)
    return description
