"""Ignite event handlers for the bundles' engines."""

from __future__ import annotations

from .subject_saver import SubjectSaver

__all__ = ["SubjectSaver"]
