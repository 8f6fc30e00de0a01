from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from monai_cardiac.errors import CineDataError
from monai_cardiac.handlers import SubjectSaver


def _item(subject: str, z: int, num_slices: int) -> dict:
    image = MetaTensor(torch.zeros(2, 4, 4), meta={"spatial_shape": np.array([4, 4, num_slices]), "id": subject})
    return {"subject": subject, "slice": torch.tensor(z), "image": image, "seg": torch.full((2, 4, 4), 10.0 * z)}


def _run(saver: SubjectSaver, batches: list[list[dict]]) -> Engine:
    # the process function returns the items as the output, as an evaluator with decollate=True leaves them
    engine = Engine(lambda e, batch: [{"seg": item["seg"]} for item in batch])
    saver.attach(engine)
    engine.run(batches, max_epochs=1)
    return engine


def test_gathers_slices_of_interleaved_subjects_in_order():
    calls = []

    def writer(subject, slices):
        calls.append((subject, [int(s["seg"][0, 0, 0]) for s in slices], slices))
        return subject.upper()

    saver = SubjectSaver(writer, keys=["seg", "slice"])
    order = [("a", 2, 3), ("b", 1, 2), ("a", 0, 3), ("b", 0, 2), ("a", 1, 3)]
    _run(saver, [[_item(*entry)] for entry in order])
    # "b" completes on the 4th item, "a" on the 5th; each gets its slices in z order, written once
    assert [(c[0], c[1]) for c in calls] == [("b", [0, 10]), ("a", [0, 10, 20])]
    assert saver.results == {"a": "A", "b": "B"}
    record = calls[1][2][2]
    assert set(record) == {"seg", "slice", "meta"} and record["meta"]["id"] == "a"
    assert int(record["slice"]) == 2 and record["seg"].device.type == "cpu"


def test_batches_of_several_items_and_one_slice_subjects():
    written = []
    saver = SubjectSaver(lambda s, slices: written.append((s, len(slices))), keys=["seg"])
    _run(saver, [[_item("a", 0, 2), _item("c", 0, 1)], [_item("a", 1, 2)]])
    assert written == [("c", 1), ("a", 2)]


def test_incomplete_subject_at_epoch_end_raises():
    saver = SubjectSaver(lambda s, slices: None, keys=["seg"])
    with pytest.raises(CineDataError, match=r"subj.*slices \[0, 2\]"):
        _run(saver, [[_item("subj", 1, 3)]])


@pytest.mark.parametrize(
    "items, match",
    [
        ([_item("s", 0, 2), _item("s", 0, 2)], "slice 0 was filed twice"),
        ([_item("s", 3, 2)], "slice 3 is outside the stack of 2 slices"),
        ([{"subject": "s", "slice": 0, "image": torch.zeros(1)}], "no \\['seg'\\]"),
        ([{"subject": "s", "slice": 0, "image": MetaTensor(torch.zeros(1)), "seg": 0}], "spatial_shape"),
    ],
)
def test_bad_items_raise(items, match):
    saver = SubjectSaver(lambda s, slices: None, keys=["seg"])
    with pytest.raises(CineDataError, match=match):
        for item in items:
            saver.add(item)


def test_writer_errors_are_recorded_on_request_and_the_next_subjects_written():
    def writer(subject, slices):
        if subject == "b":
            raise CineDataError("EF outside [0, 1]", subject)
        return subject

    _item_b = _item("b", 0, 1)
    _item_b["image"].meta["filename_or_obj"] = "/data/b.nii.gz"
    saver = SubjectSaver(writer, keys=["seg"], on_writer_error="record")
    _run(saver, [[_item("a", 0, 1)], [_item_b], [_item("c", 0, 1)]])
    assert saver.results == {"a": "a", "c": "c"}
    assert saver.failures == [{"subject": "b", "file": "/data/b.nii.gz", "stage": "writing",
                               "reason": "b: EF outside [0, 1]"}]
    with pytest.raises(CineDataError, match="EF outside"):  # the default stops at the failing subject
        _run(SubjectSaver(writer, keys=["seg"]), [[_item("a", 0, 1)], [_item("b", 0, 1)], [_item("c", 0, 1)]])
    with pytest.raises(ValueError, match="on_writer_error"):
        SubjectSaver(writer, keys=["seg"], on_writer_error="ignore")
