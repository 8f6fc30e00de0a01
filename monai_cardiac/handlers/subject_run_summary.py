"""Progress and a closing summary table of a multi-subject inference run."""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from monai.utils import IgniteInfo, min_version, optional_import

from monai_cardiac.data.screening import ScreenedSubjects
from monai_cardiac.errors import CineDataError
from monai_cardiac.handlers.subject_saver import SubjectSaver

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = ["SUMMARY_COLUMNS", "SubjectRunSummary"]

SUMMARY_COLUMNS = ("subject", "status", "stage", "file", "reason", "output", "flags")
"""Columns of ``summary.csv``: ``status`` is ``ok`` or ``failed``; ``stage`` where it failed (``loading`` or
``writing``); ``output`` the subject's folder when written; ``flags`` the writer's plausibility flags
(:func:`~monai_cardiac.metrics.plausibility.plausibility_flags`, ``"; "``-joined) where its result has them."""


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


class SubjectRunSummary:
    """Log ``k / N subjects`` with elapsed time and ETA as subjects are written; write ``summary.csv`` at the end.

    Attach it after the :class:`~monai_cardiac.handlers.SubjectSaver` it reads (``on_writer_error="record"``).
    At the end of the run ``<output_dir>/summary.csv`` lists every subject of the data list, in its order:
    those written, those the screening rejected (:func:`~monai_cardiac.data.screen_subjects`) and those whose
    writer failed, each with its file and reason. If any subject failed, the run then ends with a
    :class:`~monai_cardiac.errors.CineDataError` naming how many failed and the table (the bundles' one-line
    report: exit status 1), after the other subjects were written.

    Args:
        saver: the run's subject saver.
        screened: the screening of the run's data list.
        output_dir: where ``summary.csv`` goes (the run's output folder; created if missing).
    """

    def __init__(self, saver: SubjectSaver, screened: ScreenedSubjects, output_dir: str | Path) -> None:
        self.saver = saver
        self.screened = screened
        self.output_dir = Path(output_dir)
        self.rows: list[dict[str, str]] = []
        self._start = 0.0
        self._done = 0

    def attach(self, engine: Engine) -> None:
        """Register on the engine's start, iteration and completion events."""
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._progress)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _finished(self) -> int:
        return len(self.saver.results) + len(self.saver.failures)

    def _started(self, engine: Engine) -> None:
        self._start, self._done = time.perf_counter(), 0

    def _progress(self, engine: Engine) -> None:
        finished = self._finished()
        if finished == self._done:
            return
        self._done = finished
        total = len(self.screened.subjects) - len(self.screened.failures)
        elapsed = time.perf_counter() - self._start
        eta = elapsed / finished * (total - finished)
        engine.logger.info(f"subjects {finished} / {total} done (elapsed {_clock(elapsed)}, ETA {_clock(eta)})")

    def _completed(self, engine: Engine) -> None:
        written = {subject: "; ".join(result.get("flags", [])) if isinstance(result, Mapping) else ""
                   for subject, result in self.saver.results.items()}
        failed = {f["subject"]: f for f in [*self.screened.failures, *self.saver.failures]}
        order = self.screened.subjects
        self.rows = []
        for subject in order:
            if subject in failed:
                f = failed[subject]
                self.rows.append({"subject": subject, "status": "failed", "stage": f["stage"], "file": f["file"],
                                  "reason": f["reason"], "output": "", "flags": ""})
            elif subject in written:
                self.rows.append({"subject": subject, "status": "ok", "stage": "", "file": "", "reason": "",
                                  "output": str(self.output_dir / subject), "flags": written[subject]})
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "summary.csv"
        with open(path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=SUMMARY_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        engine.logger.info(f"{len(written)} of {len(order)} subjects written, {len(failed)} failed; table: {path}")
        if failed:
            first = next(iter(failed.values()))
            raise CineDataError(
                f"{len(failed)} of {len(order)} subjects failed (first: {first['subject']}, {first['stage']}: "
                f"{first['reason']}); the other {len(written)} were written; every subject and reason in this table",
                path,
            )
