"""An ignite handler that gathers the per-slice outputs of an evaluator and writes each subject once complete."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.data import MetaTensor, decollate_batch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_cardiac.errors import CineDataError, describe_error

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["SubjectSaver"]


class SubjectSaver:
    """Collect the outputs of every short-axis slice of a subject and hand the whole subject to a writer.

    Per-slice pipelines (one data-list entry per slice, docs/conventions.md) produce one slice per item, but
    results are written per subject, on the input's ``(X, Y, Z, T)`` grid. After every iteration this handler
    files each item (the batch entry merged with the output, as the engine's postprocessing leaves them)
    under ``item[subject_key]`` and ``item[slice_key]``; the number of slices of the subject is the last entry
    of ``item[meta_key].meta["spatial_shape"]`` (the file's ``(X, Y, Z)``). When the last slice of a subject
    arrives, ``writer(subject, slices)`` is called with the records of slices ``0 .. Z-1`` in order and the
    subject's records are dropped. A record holds ``item[k]`` for every ``k`` in ``keys`` (tensors moved to
    the CPU) and, under ``"meta"``, the meta dict of ``item[meta_key]``.

    Slices may come in any order and subjects may interleave. At the end of an epoch a subject still missing
    slices is an error rather than a silently incomplete volume.

    With ``on_writer_error="record"`` an exception of the writer does not stop the run: the subject is filed in
    :attr:`failures` (``{"subject", "file", "stage": "writing", "reason"}``) and the next subjects are written
    (a data-set run, see :class:`~monai_cardiac.handlers.SubjectRunSummary`).

    Args:
        writer: called as ``writer(subject, slices)`` once per subject; its return values are kept in
            :attr:`results` under the subject id.
        keys: item keys to keep for the writer (e.g. ``["seg", "ddf"]``).
        subject_key: key of the subject id.
        slice_key: key of the 0-based slice index ``z``.
        meta_key: key of a MetaTensor whose meta holds ``spatial_shape`` (and, for the writer, the input's
            ``original_affine`` and ``filename_or_obj``).
        on_writer_error: ``"raise"`` (default) or ``"record"``.

    Raises:
        ValueError: an unknown ``on_writer_error``.
    """

    def __init__(
        self,
        writer: Callable[[str, Sequence[Mapping[str, Any]]], Any],
        keys: Sequence[str],
        subject_key: str = "subject",
        slice_key: str = "slice",
        meta_key: str = "image",
        on_writer_error: str = "raise",
    ) -> None:
        if on_writer_error not in ("raise", "record"):
            raise ValueError(f"on_writer_error must be 'raise' or 'record', got {on_writer_error!r}.")
        self.on_writer_error = on_writer_error
        self.writer = writer
        self.keys = tuple(keys)
        self.subject_key, self.slice_key, self.meta_key = subject_key, slice_key, meta_key
        self.results: dict[str, Any] = {}
        self.failures: list[dict[str, str]] = []
        self._pending: dict[str, dict[int, dict[str, Any]]] = {}
        self._num_slices: dict[str, int] = {}

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine``'s iteration and epoch events."""
        if not engine.has_event_handler(self._reset, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        if not engine.has_event_handler(self._check_complete, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._check_complete)

    def __call__(self, engine: Engine) -> None:
        """File every item of the engine's current batch and output."""
        batch: Any = engine.state.batch  # ignite annotates batch and output as int | None
        output: Any = engine.state.output
        if isinstance(batch, Mapping):
            batch = decollate_batch(batch)
        if isinstance(output, Mapping):
            output = decollate_batch(output)
        for batch_item, output_item in zip(batch, output):
            self.add({**batch_item, **output_item})

    def add(self, item: Mapping[str, Any]) -> Any:
        """File the outputs of one slice; write its subject if this was the subject's last missing slice.

        Args:
            item: one slice's entry, holding ``subject_key``, ``slice_key``, ``meta_key`` and ``keys``.

        Returns:
            the writer's return value when the subject was written, else None (also when its writer failed
            and ``on_writer_error="record"``).

        Raises:
            CineDataError: the item lacks a key or ``spatial_shape``, its slice lies outside the subject's
                stack, or the slice was filed before.
        """
        missing = [k for k in (self.subject_key, self.slice_key, self.meta_key, *self.keys) if k not in item]
        if missing:
            raise CineDataError(f"the item has no {missing} to file it by subject and slice", type(self).__name__)
        subject = str(item[self.subject_key])
        z = int(item[self.slice_key])
        meta = dict(item[self.meta_key].meta) if isinstance(item[self.meta_key], MetaTensor) else {}
        if "spatial_shape" not in meta:
            raise CineDataError(f"'{self.meta_key}' carries no meta['spatial_shape'] to count slices by", subject)
        num_slices = self._num_slices.setdefault(subject, int(meta["spatial_shape"][-1]))
        slices = self._pending.setdefault(subject, {})
        if not 0 <= z < num_slices or z in slices:
            problem = "was filed twice" if z in slices else f"is outside the stack of {num_slices} slices"
            raise CineDataError(f"slice {z} {problem}", subject)
        record = {k: item[k].detach().cpu() if isinstance(item[k], torch.Tensor) else item[k] for k in self.keys}
        record["meta"] = meta
        slices[z] = record
        if len(slices) < num_slices:
            return None
        del self._pending[subject], self._num_slices[subject]
        try:
            self.results[subject] = self.writer(subject, [slices[i] for i in range(num_slices)])
        except Exception as error:  # recorded per subject on request; the run goes on with the next subject
            if self.on_writer_error == "raise":
                raise
            self.failures.append({"subject": subject, "file": str(meta.get("filename_or_obj", "")),
                                  "stage": "writing", "reason": describe_error(error)})
            return None
        return self.results[subject]

    def _reset(self, engine: Engine) -> None:
        self._pending.clear()
        self._num_slices.clear()

    def _check_complete(self, engine: Engine) -> None:
        if self._pending:
            subject, slices = next(iter(self._pending.items()))
            absent = sorted(set(range(self._num_slices[subject])) - set(slices))
            raise CineDataError(
                f"the epoch ended before slices {absent} came through, so the subject was not written "
                f"({len(self._pending)} subject(s) incomplete); give every slice of each subject",
                subject,
            )
