"""The benchmark command on two tiny phantom slices: files, rows, resume, failures, absent methods."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from monai_cardiac.baselines import build_voxelmorph
from monai_cardiac.baselines.benchmark import _pick, main, method_status, read_journal, refined_motion_fields
from monai_cardiac.data import write_phantom_dataset


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench_phantom")
    write_phantom_dataset(root, num_subjects=2, seed=3, num_frames=4, num_slices=None, spatial_size=(48, 48),
                          spacing=(3.0, 3.0))
    return root


def csv_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_benchmark_writes_every_report_records_failures_and_resumes(phantom_dir, tmp_path, capsys):
    torch.manual_seed(0)
    good, broken = tmp_path / "vxm.pt", tmp_path / "broken.pt"
    torch.save({"model": build_voxelmorph().state_dict()}, good)
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "bench"
    args = ["--dataset_dir", str(phantom_dir), "--output_dir", str(out), "--split", "all", "--no_crop",
            "--methods", "identity", "voxelmorph", "joint", "--voxelmorph_checkpoint", str(good),
            "--limit", "voxelmorph=1", "--repeats", "1", "identity=2"]
    result = main(args)
    printed = capsys.readouterr().out
    assert "[joint] absent: no checkpoint given" in printed and set(result["absent"]) == {"joint"}
    identity = csv_rows(out / "rows_identity.csv")
    assert len(identity) == 2 and {r["status"] for r in identity} == {"ok"}
    assert {r["subject"] for r in identity} == {"patient001", "patient002"}
    assert float(identity[0]["repeats"]) == 2.0 and float(identity[0]["peak_rss_mb"]) > 0
    # the phantom's truth is scored: identity's error is the zero-motion error
    assert float(identity[0]["epe_px"]) == pytest.approx(float(identity[0]["zero_motion_epe_px"]))
    assert identity[0]["inverted"] == "u_t_to_ed" and float(identity[0]["comp_dice_mean"]) < 1.0
    assert len(read_journal(out / "rows_voxelmorph.jsonl")) == 1  # --limit
    for name in ("summary.csv", "summary.json", "tables.md", "run.json", "curves.json", "summary.png",
                 "lv_volume_curves.png", "lv_curves_identity.png", "lv_curves_voxelmorph.png"):
        assert (out / name).is_file(), name
    summary = {r["method"]: r for r in csv_rows(out / "summary.csv")}
    assert set(summary) == {"identity", "voxelmorph"} and summary["identity"]["slices_ok"] == "2"
    tables = (out / "tables.md").read_text()
    assert "| identity |" in tables and "x ffd" in tables and "joint: no checkpoint given" in tables
    assert "The 1 slices every method ran" in tables  # voxelmorph ran on a subset
    run = json.loads((out / "run.json").read_text())
    assert run["machine"]["threads"] == 1 and run["methods"]["identity"]["repeats"] == 2

    # resume: nothing is run again; a broken method is recorded slice by slice and the run goes on
    args[args.index(str(good))] = str(broken)
    args[args.index("voxelmorph=1")] = "voxelmorph=2"
    main(args)
    printed = capsys.readouterr().out
    assert "[identity] resuming: 2 of 2 slices" in printed
    assert len(read_journal(out / "rows_identity.jsonl")) == 2
    rows = read_journal(out / "rows_voxelmorph.jsonl")
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "could not be built" in rows[1]["error"]
    assert "Failures:" in (out / "tables.md").read_text() and "could not be built" in (out / "tables.md").read_text()

    # --retry_failed runs the failed slice again (and records it again, still failing)
    main(args + ["--retry_failed"])
    rows = read_journal(out / "rows_voxelmorph.jsonl")
    assert [r["status"] for r in rows] == ["ok", "failed"]

    # a later command running one method into the same folder still reports every journalled method
    result = main(["--dataset_dir", str(phantom_dir), "--output_dir", str(out), "--split", "all", "--no_crop",
                   "--methods", "identity"])
    assert list(result["rows"]) == ["identity", "voxelmorph"] and len(result["rows"]["voxelmorph"]) == 2
    assert {r["method"] for r in csv_rows(out / "summary.csv")} == {"identity", "voxelmorph"}
    run = json.loads((out / "run.json").read_text())
    assert len(run["commands"]) == 4 and run["commands"][-1].endswith("--methods identity")
    assert run["methods"]["voxelmorph"]["command"] == run["commands"][2]  # kept from the earlier command
    assert run["methods"]["identity"]["command"] == run["commands"][3]


def test_a_bad_slice_is_recorded_and_the_others_go_on(phantom_dir, tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    for subject in ("patient001", "patient002"):
        (bad / subject).symlink_to(phantom_dir / subject, target_is_directory=True)
    # patient002's labels replaced by a file that is not NIfTI: its slice fails to load
    broken = bad / "patient002"
    broken.unlink()
    broken.mkdir()
    for f in (phantom_dir / "patient002").iterdir():
        target = broken / f.name
        if f.name.endswith("_gt.nii.gz"):
            target.write_bytes(b"broken")
        else:
            target.symlink_to(f)
    out = tmp_path / "bench"
    main(["--dataset_dir", str(bad), "--output_dir", str(out), "--split", "all", "--no_crop",
          "--methods", "identity"])
    rows = read_journal(out / "rows_identity.jsonl")
    assert {(r["subject"], r["status"]) for r in rows} == {("patient001", "ok"), ("patient002", "failed")}
    assert "patient002" in next(r["error"] for r in rows if r["status"] == "failed")


def test_method_status_and_subsets():
    assert method_status("identity", {}) is None
    assert "no checkpoint at" in method_status("joint", {"joint": "/nonexistent.pt"})
    with pytest.raises(ValueError, match="unknown method"):
        method_status("mirtk", {})
    entries = [{"subject": f"p{k}", "slice": 0} for k in range(10)]
    assert [e["subject"] for e in _pick(entries, 3)] == ["p0", "p4", "p8"]
    assert [e["subject"] for e in _pick(entries, 5)] == ["p0", "p2", "p4", "p6", "p8"]
    assert _pick(entries, None) == entries and _pick(entries, 20) == entries


def test_a_torn_journal_line_is_ignored(tmp_path):
    journal = tmp_path / "rows_x.jsonl"
    journal.write_text(json.dumps({"subject": "p", "slice": 0, "status": "ok"}) + "\n{\"subject\": \"p")
    assert read_journal(journal) == [{"subject": "p", "slice": 0, "status": "ok"}]
    assert read_journal(tmp_path / "missing.jsonl") == []


def test_refined_methods_use_the_networks_checkpoint_and_refine_its_fields():
    assert method_status("joint+refine", {"joint": "/nonexistent.pt"}) == "no checkpoint at /nonexistent.pt"
    assert "--joint_checkpoint" in method_status("joint+refine", {})
    assert "--prob_checkpoint" in method_status("probabilistic+refine", {})
    # ED: a blob; frame 1: the blob moved by (2, -1.5); the network's u_{t->ED} is zero (no motion found)
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    cine = torch.stack(
        [torch.exp(-((yy - 20 - dy) ** 2 + (xx - 20 - dx) ** 2) / 40.0) for dy, dx in ((0, 0), (2, -1.5))]
    )
    out = refined_motion_fields({"u_ed_to_t": None, "u_t_to_ed": torch.zeros(1, 2, 40, 40), "seconds": 0.5}, cine,
                                iterations=200, learning_rate=0.1)
    assert out["u_t_to_ed"] is None and out["u_ed_to_t"].shape == (1, 2, 40, 40) and out["seconds"] > 0.5
    inside = cine[0] > 0.3  # u_{ED->t} of frame 1 is the shift back: (-2, 1.5)
    error = torch.linalg.norm(out["u_ed_to_t"][0] - torch.tensor([-2.0, 1.5])[:, None, None], dim=0)[inside].mean()
    assert error < 0.25 * 2.5
