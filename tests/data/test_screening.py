from __future__ import annotations

import pytest

from monai_cardiac.data import ScreenedSubjects, screen_subjects
from monai_cardiac.errors import CineDataError


def _loader(bad: dict[str, Exception]):
    calls = []

    def load(entry):
        calls.append((entry["subject"], entry["slice"]))
        entry["image"] = "changed"  # the screening hands the transform a copy
        if entry["subject"] in bad:
            raise RuntimeError("applying transform") from bad[entry["subject"]]
        return entry

    return load, calls


def _datalist(subjects, slices=2):
    return [{"subject": s, "slice": z, "image": f"/d/{s}.nii.gz"} for s in subjects for z in range(slices)]


def test_keeps_readable_subjects_in_order_and_records_the_others():
    datalist = _datalist(["a", "b", "c"])
    load, calls = _loader({"b": CineDataError("NaN in frame 3", "/d/b.nii.gz")})
    screened = screen_subjects(datalist, load)
    assert isinstance(screened, ScreenedSubjects)
    assert calls == [("a", 0), ("b", 0), ("c", 0)]  # one preprocessing per subject, its first entry
    assert screened.entries == [e for e in datalist if e["subject"] != "b"]
    assert screened.entries[0]["image"] == "/d/a.nii.gz"
    assert screened.failures == [{"subject": "b", "file": "/d/b.nii.gz", "stage": "loading",
                                  "reason": "/d/b.nii.gz: NaN in frame 3"}]
    assert screened.subjects == ["a", "b", "c"]


def test_an_unexpected_error_is_recorded_with_its_chain():
    load, _ = _loader({"a": EOFError("Compressed file ended before the end-of-stream marker was reached")})
    screened = screen_subjects(_datalist(["a", "b"]), load)
    assert screened.failures[0]["reason"].startswith("EOFError: Compressed file ended")
    assert "RuntimeError: applying transform" in screened.failures[0]["reason"]


def test_a_single_subject_raises_its_own_error_and_all_failing_raise_one_summary():
    load, _ = _loader({"a": CineDataError("not 4D", "/d/a.nii.gz")})
    with pytest.raises(RuntimeError) as info:
        screen_subjects(_datalist(["a"]), load)
    assert isinstance(info.value.__cause__, CineDataError)
    load, _ = _loader({s: CineDataError("not 4D", f"/d/{s}.nii.gz") for s in "abcd"})
    none_read = r"none of the 4 subjects could be read \(a: /d/a.nii.gz: not 4D; .*; \.\.\.\)"
    with pytest.raises(CineDataError, match=none_read):
        screen_subjects(_datalist(list("abcd")), load)
    assert screen_subjects([], load) == ScreenedSubjects([], [], [])
