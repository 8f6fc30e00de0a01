"""Exceptions raised on bad input.

Every error that a user can cause with bad data names the offending file (or data-list entry) and the
problem, so that nobody has to read a stack trace from deep inside torch to find out what went wrong.
"""

from __future__ import annotations

__all__ = ["CineDataError"]


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
