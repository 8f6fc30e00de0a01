"""Ignite event handlers for the bundles' engines."""

from __future__ import annotations

from .checkpoint_loader import CheckedCheckpointLoader
from .resume import ResumableTrainingState
from .run_record import StageRecord, TrainingRunRecord
from .subject_run_summary import SUMMARY_COLUMNS, SubjectRunSummary
from .subject_saver import SubjectSaver
from .weight_averaging import ExponentialMovingAverage

__all__ = [
    "SUMMARY_COLUMNS",
    "CheckedCheckpointLoader",
    "ExponentialMovingAverage",
    "ResumableTrainingState",
    "StageRecord",
    "SubjectRunSummary",
    "SubjectSaver",
    "TrainingRunRecord",
]
