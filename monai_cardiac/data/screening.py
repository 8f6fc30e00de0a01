"""Screening of a multi-subject data list: one unreadable subject must not stop the others."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from monai_cardiac.errors import CineDataError, describe_error

__all__ = ["ScreenedSubjects", "screen_subjects"]


class ScreenedSubjects(NamedTuple):
    """The result of :func:`screen_subjects`.

    Attributes:
        entries: the data-list entries of the subjects that passed, in their original order.
        failures: one ``{"subject", "file", "stage", "reason"}`` record per subject that did not pass
            (``stage`` is ``"loading"``).
        subjects: the ids of every subject of the data list given, passed or not, in data-list order.
    """

    entries: list[dict]
    failures: list[dict]
    subjects: list[str]


def screen_subjects(
    datalist: Sequence[Mapping[str, Any]],
    transform: Callable[[dict], Any],
    subject_key: str = "subject",
    image_key: str = "image",
) -> ScreenedSubjects:
    """Run ``transform`` on the first entry of each subject; keep the subjects it accepts, record the others.

    A data-set folder with one truncated, NaN-filled or mis-shaped cine would otherwise stop a per-slice
    inference run at that subject, and the subjects after it would never run. Each subject's first entry is
    passed through the run's own preprocessing (reading the whole file, as the readers check every frame), so
    the subjects that reach the network are those the run can read; the cost is one extra preprocessing per
    subject.

    Args:
        datalist: per-slice (or per-volume) entries, each with ``subject_key`` and ``image_key``.
        transform: the run's preprocessing, called on a copy of the entry.
        subject_key: key of the subject id.
        image_key: key of the input file or folder (named in the failure record).

    Returns:
        :class:`ScreenedSubjects`.

    Raises:
        CineDataError: no subject passed. With a single subject its own error is raised instead (the one-line
            report then names its file and problem, as without screening).
    """
    by_subject: dict[str, list[Mapping[str, Any]]] = {}
    for entry in datalist:
        by_subject.setdefault(str(entry[subject_key]), []).append(entry)
    entries: list[dict] = []
    failures: list[dict] = []
    for subject, items in by_subject.items():
        try:
            transform(dict(items[0]))
        except Exception as error:  # any reason a subject cannot be read is recorded, not fatal for the others
            if len(by_subject) == 1:
                raise
            failures.append({"subject": subject, "file": str(items[0].get(image_key, "")), "stage": "loading",
                             "reason": describe_error(error)})
            continue
        entries.extend(dict(item) for item in items)
    if by_subject and not entries:
        listed = "; ".join(f"{f['subject']}: {f['reason']}" for f in failures[:3])
        raise CineDataError(f"none of the {len(by_subject)} subjects could be read ({listed}"
                            f"{'; ...' if len(failures) > 3 else ''})", "data list")
    return ScreenedSubjects(entries, failures, list(by_subject))
