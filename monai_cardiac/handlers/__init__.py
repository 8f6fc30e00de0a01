"""Ignite event handlers for the bundles' engines."""

from __future__ import annotations

from .resume import ResumableTrainingState
from .subject_run_summary import SUMMARY_COLUMNS, SubjectRunSummary
from .subject_saver import SubjectSaver
from .weight_averaging import ExponentialMovingAverage

__all__ = ["SUMMARY_COLUMNS", "ExponentialMovingAverage", "ResumableTrainingState", "SubjectRunSummary", "SubjectSaver"]
