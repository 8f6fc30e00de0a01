from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from monai_cardiac.data import ScreenedSubjects
from monai_cardiac.errors import CineDataError
from monai_cardiac.handlers import SUMMARY_COLUMNS, SubjectRunSummary, SubjectSaver


def _item(subject: str) -> dict:
    image = MetaTensor(torch.zeros(2, 4, 4), meta={"spatial_shape": np.array([4, 4, 1]), "filename_or_obj": subject})
    return {"subject": subject, "slice": torch.tensor(0), "image": image, "seg": torch.zeros(2, 4, 4)}


def _run(tmp_path, writer, subjects, screened_failures, caplog):
    saver = SubjectSaver(writer, keys=["seg"], on_writer_error="record")
    passed = [s for s in subjects if s not in {f["subject"] for f in screened_failures}]
    screened = ScreenedSubjects([{"subject": s} for s in passed], screened_failures, list(subjects))
    summary = SubjectRunSummary(saver, screened, tmp_path / "out")
    engine = Engine(lambda e, batch: [{"seg": item["seg"]} for item in batch])
    engine.logger.setLevel(logging.INFO)
    saver.attach(engine)
    summary.attach(engine)
    with caplog.at_level(logging.INFO):
        engine.run([[_item(s)] for s in passed], max_epochs=1)
    return summary


def test_all_written_gives_a_table_of_ok_rows_and_progress(tmp_path, caplog):
    summary = _run(tmp_path, lambda s, slices: {"flags": ["lv_ef is undefined"]} if s == "p2" else s,
                   ["p1", "p2", "p3"], [], caplog)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("subjects ")]
    assert [p.split(" (")[0] for p in progress] == ["subjects 1 / 3 done", "subjects 2 / 3 done", "subjects 3 / 3 done"]
    assert all("ETA" in p for p in progress)
    with open(tmp_path / "out" / "summary.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [(r["subject"], r["status"], r["output"]) for r in rows] == [
        (s, "ok", str(tmp_path / "out" / s)) for s in ("p1", "p2", "p3")]
    assert [r["flags"] for r in rows] == ["", "lv_ef is undefined", ""]
    assert summary.rows == rows


def test_loading_and_writing_failures_are_listed_in_data_list_order_and_end_the_run(tmp_path, caplog):
    def writer(subject, slices):
        if subject == "p3":
            raise OSError("disk full")
        return subject

    loading = [{"subject": "p2", "file": "/d/p2.nii.gz", "stage": "loading", "reason": "truncated"}]
    with pytest.raises(CineDataError, match=r"2 of 4 subjects failed \(first: p2, loading: truncated\); the other 2"):
        _run(tmp_path, writer, ["p1", "p2", "p3", "p4"], loading, caplog)
    with open(tmp_path / "out" / "summary.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["subject"], r["status"], r["stage"]) for r in rows] == [
        ("p1", "ok", ""), ("p2", "failed", "loading"), ("p3", "failed", "writing"), ("p4", "ok", "")]
    assert rows[2]["reason"] == "OSError: disk full" and rows[2]["file"] == "p3" and rows[2]["output"] == ""
