"""A training run that describes itself: in each checkpoint it saves, and in a manifest beside them.

One :class:`TrainingRunRecord` per training process (the bundles' ``run_record``) owns the run's identity and the
manifest ``<ckpt_dir>/run.json``; each stage's trainer gets a :class:`StageRecord` (``run_record.stage(...)``) that
is attached to it as a handler and saved in every checkpoint as its ``"run"`` entry (``save_dict={"model":
network, "run": record}``; the format is described in :mod:`monai_cardiac.checkpoints`). Runs never mix: a fresh
run (not ``--resume``) into a folder that holds another run's checkpoints first copies them, whole, to
``<ckpt_dir>/earlier_runs/<their run id>/`` (copies, not moves: a new run may start from them, as MONAI Label's
training starts from ``models/model.pt``); each checkpoint in ``<ckpt_dir>`` says which run wrote it.
"""

from __future__ import annotations

import ast
import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from monai_cardiac.checkpoints import RUN_KEY
from monai_cardiac.networks.utils import construction_arguments

if TYPE_CHECKING:
    from ignite.engine import Engine

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["MANIFEST_NAME", "StageRecord", "TrainingRunRecord", "command_identity"]

MANIFEST_NAME = "run.json"
"""The run manifest's file name in the checkpoint folder."""

EARLIER_RUNS = "earlier_runs"
"""Sub-folder of the checkpoint folder that receives a copy of an earlier run's files when a fresh run starts there."""

logger = logging.getLogger(__name__)


def _config_files(argv: Sequence[str]) -> list[str]:
    """The files named by ``--config_file`` in a ``monai.bundle run`` command line (a path, a list, or a,b)."""
    files: list[str] = []
    for flag, value in zip(argv, argv[1:]):
        if flag != "--config_file":
            continue
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value.split(",")
        files.extend([parsed] if isinstance(parsed, str) else [str(p) for p in parsed])
    return files


def command_identity(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The command line, the sha256 of its config files' contents and overrides, and the code's commit.

    Args:
        argv: the command line (default ``sys.argv``).

    Returns:
        ``{"command", "config_sha256", "commit"}``; ``commit`` is ``git rev-parse HEAD`` of the repository the
        package runs from (with ``+dirty`` when its tracked files differ), ``None`` outside a git checkout.
    """
    argv = list(sys.argv if argv is None else argv)
    digest = hashlib.sha256()
    for name in _config_files(argv):
        digest.update(name.encode())
        path = Path(name)
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    digest.update("\0".join(argv[1:]).encode())
    return {"command": " ".join(argv), "config_sha256": digest.hexdigest(), "commit": _commit()}


def _commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _is_writer() -> bool:
    """Only one process writes the manifest and rewrites checkpoints (rank 0 under DDP)."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


class TrainingRunRecord:
    """The identity of one training run and its manifest ``<ckpt_dir>/run.json``.

    The manifest holds ``{"run_id", "started", "command", "config_sha256", "commit", "stages": {stage:
    {"finished", "epoch", "max_epochs"}}}``. When the first stage starts: with ``resume`` and a manifest present,
    the run continues under the manifest's run id; otherwise a new run begins, and the files an earlier run left
    in ``ckpt_dir`` (its manifest, ``*.pt``) are copied to ``ckpt_dir/earlier_runs/<its run id>/``
    (``unknown-<time>`` without a manifest), with a warning naming both folders; the new run then overwrites them
    as it saves.

    Args:
        ckpt_dir: the folder the run's checkpoints are saved in.
        resume: the run continues an earlier one (``--resume true``).
        argv: the command line to record (default ``sys.argv``).
    """

    def __init__(self, ckpt_dir: str | os.PathLike, resume: bool = False, argv: Sequence[str] | None = None) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.resume = bool(resume)
        self.identity = command_identity(argv)
        self.run_id = f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
        self._opened = False

    @property
    def manifest_path(self) -> Path:
        return self.ckpt_dir / MANIFEST_NAME

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest in ``ckpt_dir``, ``None`` when there is none (or it is not readable JSON)."""
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None

    def stage(self, name: str, network: nn.Module) -> StageRecord:
        """The handler and checkpoint entry of one stage (``"motion"``, ``"joint"``, ``"train"``, ...).

        Args:
            name: the stage, as recorded in the checkpoints and the manifest.
            network: the network whose construction arguments the checkpoints record.
        """
        return StageRecord(self, name, network)

    def open(self) -> None:
        """Adopt the earlier run's id (``resume``) or copy an earlier run's files aside; write the manifest."""
        if self._opened:
            return
        self._opened = True
        earlier = self.read_manifest()
        if self.resume and earlier is not None and earlier.get("run_id"):
            self.run_id = str(earlier["run_id"])
            return
        if not _is_writer():
            return
        leftovers = sorted(self.ckpt_dir.glob("*.pt")) + ([self.manifest_path] if self.manifest_path.is_file() else [])
        if leftovers and not self.resume:
            label = str(earlier.get("run_id")) if earlier and earlier.get("run_id") else (
                f"unknown-{datetime.datetime.fromtimestamp(max(p.stat().st_mtime for p in leftovers)):%Y%m%d-%H%M%S}"
            )
            archive = self.ckpt_dir / EARLIER_RUNS / label
            archive.mkdir(parents=True, exist_ok=True)
            for path in leftovers:
                shutil.copy2(str(path), str(archive / path.name))
            logger.warning(
                "%s held the checkpoints of an earlier run (%d files); they were copied to %s before this run "
                "overwrites them (continue a run with '--resume true' instead)", self.ckpt_dir, len(leftovers), archive
            )
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        manifest = earlier if (self.resume and earlier is not None) else {}
        started = manifest.get("started") or f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}"
        manifest.update(run_id=self.run_id, started=started, **self.identity)
        manifest.setdefault("stages", {})
        self._write_manifest(manifest)

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        partial = self.manifest_path.with_name(f"{MANIFEST_NAME}.{os.getpid()}.partial")
        partial.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(partial, self.manifest_path)

    def stage_done(self, stage: str, epoch: int, max_epochs: int, finished: bool) -> None:
        """Record a stage's end in the manifest and mark this run's checkpoints of it finished."""
        if not _is_writer():
            return
        manifest = self.read_manifest() or {"run_id": self.run_id, **self.identity, "stages": {}}
        manifest.setdefault("stages", {})[stage] = {"finished": finished, "epoch": epoch, "max_epochs": max_epochs}
        self._write_manifest(manifest)
        if not finished:
            return
        for path in sorted(self.ckpt_dir.glob("*.pt")):
            try:  # memory-mapped: a training state (optimiser moments) is not read just to look at its "run"
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:  # not a checkpoint of this run (e.g. a training state with pickled objects)
                continue
            run = state.get(RUN_KEY) if isinstance(state, dict) else None
            if isinstance(run, dict) and run.get("run_id") == self.run_id and run.get("stage") == stage:
                state[RUN_KEY] = {**run, "finished": True}
                partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
                torch.save(state, partial)
                os.replace(partial, path)


class StageRecord:
    """One stage of a :class:`TrainingRunRecord`: an ignite handler and the ``"run"`` entry of its checkpoints.

    Attach it to the stage's trainer *before* the handlers that save checkpoints. ``state_dict()`` (what a
    ``CheckpointSaver`` stores) is the checkpoint description of :mod:`monai_cardiac.checkpoints` at the trainer's
    current epoch, with ``finished`` false; when the trainer completes all its epochs, after every other
    ``COMPLETED`` handler (the final checkpoint saver included), the checkpoints this stage of this run saved are
    rewritten with ``finished`` true and the manifest records the stage.

    Args:
        run: the run it belongs to.
        name: the stage's name.
        network: the network whose construction arguments are recorded.
    """

    def __init__(self, run: TrainingRunRecord, name: str, network: nn.Module) -> None:
        self.run = run
        self.name = str(name)
        self.network = network
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Open the run at ``STARTED``; mark the stage at ``COMPLETED`` (registered last, at ``STARTED``)."""
        self._engine = engine
        engine.add_event_handler(Events.STARTED, self._started)

    def _started(self, engine: Engine) -> None:
        self.run.open()
        if not engine.has_event_handler(self._completed, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self._completed)

    def _completed(self, engine: Engine) -> None:
        max_epochs = engine.state.max_epochs
        assert max_epochs is not None  # set by Engine.run before STARTED
        finished = engine.state.epoch >= max_epochs and not engine.should_terminate
        self.run.stage_done(self.name, engine.state.epoch, max_epochs, finished)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint description at the trainer's current epoch (``finished`` false until completion)."""
        state = getattr(self._engine, "state", None)
        net = getattr(self.network, "module", self.network)
        return {
            "network": type(net).__name__,
            "arguments": construction_arguments(net) or {},
            "run_id": self.run.run_id,
            "stage": self.name,
            "epoch": int(getattr(state, "epoch", 0) or 0),
            "max_epochs": int(getattr(state, "max_epochs", 0) or 0),
            "finished": False,
            **self.run.identity,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the record describes the run that saves, not the one that loaded."""
