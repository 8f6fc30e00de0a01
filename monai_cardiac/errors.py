"""Exceptions raised on bad input, and the one-line report of them at the command line.

Every error that a user can cause with bad data names the offending file (or data-list entry) and the
problem, so that nobody has to read a stack trace from deep inside torch to find out what went wrong.
:func:`install_brief_error_report` makes the bundles' commands print just that line.
"""

from __future__ import annotations

import os
import re
import sys
from types import TracebackType

__all__ = [
    "DEBUG_VARIABLE",
    "CineDataError",
    "brief_error_message",
    "describe_error",
    "install_brief_error_report",
    "state_dict_mismatch_summary",
]

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


_STATE_DICT_ERROR = "Error(s) in loading state_dict for "
_SIZE_MISMATCH = re.compile(
    r"size mismatch for ([^:]+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from checkpoint, "
    r"the shape in current model is torch\.Size\(\[([^\]]*)\]\)"
)


def state_dict_mismatch_summary(message: str) -> str | None:
    """One line for torch's ``load_state_dict`` error (often hundreds of lines), or None for other messages.

    Args:
        message: the text of the ``RuntimeError`` torch raises when a checkpoint does not fit a network.

    Returns:
        e.g. ``"the checkpoint does not fit JointMotionSegNet: 42 tensors of another shape (first:
        encoder.blocks.0.0.weight is (16, 1, 3, 3) in the checkpoint, (32, 1, 3, 3) in the network), 0 missing,
        0 unexpected; was it trained with other network settings (width_multiplier, branches)?"``.
    """
    if not message.startswith(_STATE_DICT_ERROR):
        return None
    network = message[len(_STATE_DICT_ERROR):].split(":", 1)[0]
    sizes = _SIZE_MISMATCH.findall(message)

    def count(kind: str) -> int:
        found = re.search(kind + r" key\(s\) in state_dict: (.*)", message)
        return len(re.findall(r'"([^"]+)"', found.group(1))) if found else 0

    first = (
        f" (first: {sizes[0][0]} is ({sizes[0][1]}) in the checkpoint, ({sizes[0][2]}) in the network)" if sizes else ""
    )
    return (f"the checkpoint does not fit {network}: {len(sizes)} tensors of another shape{first}, "
            f"{count('Missing')} missing, {count('Unexpected')} unexpected; was it trained with other network "
            "settings (width_multiplier, branches, latent size)?")


def brief_error_message(error: BaseException) -> str | None:
    """The one line to show for ``error``, or None when it is not a user's input error.

    A :class:`CineDataError` or ``FileNotFoundError`` anywhere in the chain of causes (MONAI's config parser wraps
    them in ``RuntimeError: Failed to evaluate ...``) gives ``"error: <file>: <problem>"``; a checkpoint that does
    not fit the network, :func:`state_dict_mismatch_summary`.
    """
    for cause in _chain(error):
        summary = state_dict_mismatch_summary(str(cause)) if isinstance(cause, RuntimeError) else None
        if summary is not None:
            return f"error: {summary}"
        if isinstance(cause, CineDataError):
            return f"error: {cause}"
        if isinstance(cause, FileNotFoundError):
            name = f"{cause.filename}: " if cause.filename else ""
            return f"error: {name}{cause.strerror or cause}"
    return None


def describe_error(error: BaseException) -> str:
    """One line for ``error`` wherever it is recorded rather than raised (a failed subject in a summary table).

    Args:
        error: any exception.

    Returns:
        :func:`brief_error_message` without its ``"error: "`` prefix for a user's input error; otherwise
        ``Type: message`` of the exception and of those it was raised from, innermost first, joined by ``" <- "``
        (MONAI wraps a transform's error in ``RuntimeError: applying transform ...``).
    """
    brief = brief_error_message(error)
    if brief is not None:
        return brief.removeprefix("error: ")
    return " <- ".join(reversed([f"{type(cause).__name__}: {cause}" for cause in _chain(error)]))


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
