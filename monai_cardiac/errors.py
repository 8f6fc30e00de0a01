"""Exceptions raised on bad input, and the one-line report of them at the command line.

Every error that a user can cause with bad data names the offending file (or data-list entry) and the
problem, so that nobody has to read a stack trace from deep inside torch to find out what went wrong.
:func:`install_brief_error_report` makes the bundles' commands print just that line.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

__all__ = ["DEBUG_VARIABLE", "CineDataError", "brief_error_message", "install_brief_error_report"]

DEBUG_VARIABLE = "MONAI_CARDIAC_DEBUG"
"""Environment variable: set to 1 to get the full traceback instead of the one-line report."""


class CineDataError(ValueError):
    """Bad cine data: wrong dimensions, missing frames, non-finite voxels, mismatched geometry, bad labels.

    Args:
        problem: what is wrong, in words a user can act on.
        source: the file, folder or data-list entry the problem was found in.
    """

    def __init__(self, problem: str, source: object | None = None) -> None:
        self.problem = problem
        self.source = None if source is None else str(source)
        super().__init__(problem if source is None else f"{source}: {problem}")


def _chain(error: BaseException | None):
    """``error`` and the exceptions it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def brief_error_message(error: BaseException) -> str | None:
    """The one line to show for ``error``, or None when it is not a user's input error.

    A :class:`CineDataError` or ``FileNotFoundError`` anywhere in the chain of causes (MONAI's config parser wraps
    them in ``RuntimeError: Failed to evaluate ...``) gives ``"error: <file>: <problem>"``.
    """
    for cause in _chain(error):
        if isinstance(cause, CineDataError):
            return f"error: {cause}"
        if isinstance(cause, FileNotFoundError):
            name = f"{cause.filename}: " if cause.filename else ""
            return f"error: {name}{cause.strerror or cause}"
    return None


def install_brief_error_report() -> None:
    """Report an uncaught input error as one line on stderr and exit with status 1 (the bundles' ``initialize``).

    Other exceptions, and every exception when ``MONAI_CARDIAC_DEBUG=1``, keep Python's full traceback.
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        message = None if os.environ.get(DEBUG_VARIABLE) == "1" else brief_error_message(error)
        if message is None:
            previous(kind, error, traceback)
            return
        sys.stderr.write(f"{message}\n(set {DEBUG_VARIABLE}=1 for the full traceback)\n")
        sys.stderr.flush()
        os._exit(1)  # noqa: SLF001 - no further handlers or atexit output after the report

    sys.excepthook = hook
