from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.data import MetaTensor
from monai.transforms import Compose
from PIL import Image

from monai_cardiac.checkpoints import RUN_KEY
from monai_cardiac.data import read_nifti_cine, read_nifti_ddf
from monai_cardiac.displacement import warp_image
from monai_cardiac.engines.joint_inference import (
    InvertToInputGridd,
    JointPredictionSplitd,
    joint_inference_datalist,
    split_joint_prediction,
    write_joint_outputs,
)
from monai_cardiac.errors import DEBUG_VARIABLE, CineDataError
from monai_cardiac.networks import JointMotionSegNet
from monai_cardiac.transforms import CropAroundHeartd, ReorderFromEDd, ResampleInPlane

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "bundles" / "joint" / "configs" / "inference.json"
WIDTH = 0.0625
ROI = [32, 32]

torch.set_num_threads(1)


def _write_cine(path: Path, shape=(24, 26, 2, 5), affine=None, seed=0) -> np.ndarray:
    """A 4D cine (X, Y, Z, T): a disc whose radius changes over time, on noise."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    frames = [(np.hypot(x - shape[0] / 2, y - shape[1] / 2) < 4 + t) * 100.0 for t in range(shape[3])]
    data = np.stack(frames, -1)[:, :, None].repeat(shape[2], 2)
    data = (data + np.random.default_rng(seed).normal(0, 5, shape)).astype(np.float32)
    affine = np.diag([-1.5, -1.25, 8.0, 1.0]) if affine is None else affine
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return affine


# ---------------------------------------------------------------- data list


def test_datalist_of_a_bare_file(tmp_path):
    _write_cine(tmp_path / "case7_4d.nii.gz", shape=(24, 26, 3, 5))
    entries = joint_inference_datalist(tmp_path / "case7_4d.nii.gz")
    assert [e["slice"] for e in entries] == [0, 1, 2]
    assert entries[0] == {"image": str(tmp_path / "case7_4d.nii.gz"), "slice": 0, "subject": "case7_4d",
                          "group": "", "num_frames": 5, "ed": 0, "spacing_known": True}


def test_datalist_of_acdc_folders_drops_labels(tmp_path, make_acdc_subject):
    make_acdc_subject(tmp_path, "patient001", num_frames=6, num_slices=2)
    make_acdc_subject(tmp_path, "patient002", num_frames=6, num_slices=3)
    (tmp_path / "patient002" / "Info.cfg").write_text("ED: 3\nES: 5\nGroup: DCM\nNbFrame: 6\n")
    (tmp_path / "manifest.json").write_text(json.dumps([{"patient": "patient002", "spacing_known": False}]))
    root = joint_inference_datalist(tmp_path)
    assert [(e["subject"], e["slice"]) for e in root] == [("patient001", 0), ("patient001", 1)] + [
        ("patient002", z) for z in range(3)
    ]
    one = joint_inference_datalist(tmp_path / "patient002")
    assert len(one) == 3 and one[0]["ed"] == 2 and one[0]["spacing_known"] is False and one[0]["group"] == "DCM"
    assert not {"label", "label_frames", "es", "dense_label", "ddf"} & set(one[0])


def test_datalist_of_ukbb_folders(tmp_path):
    for name in ("1001", "1002"):
        _write_cine(tmp_path / name / "sa.nii.gz", shape=(24, 26, 2, 5))
    root = joint_inference_datalist(tmp_path)
    assert [(e["subject"], e["slice"], e["ed"]) for e in root] == [(s, z, 0) for s in ("1001", "1002") for z in (0, 1)]
    assert "label_map" not in root[0]
    one = joint_inference_datalist(tmp_path / "1002")
    assert [(e["subject"], e["image"]) for e in one] == [("1002", str(tmp_path / "1002" / "sa.nii.gz"))] * 2


def test_datalist_bad_inputs_name_the_path(tmp_path):
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.eye(4)), str(flat))
    with pytest.raises(CineDataError, match=r"flat\.nii\.gz.*4D"):
        joint_inference_datalist(flat)
    with pytest.raises(CineDataError, match="input not found"):
        joint_inference_datalist(tmp_path / "nowhere")
    loose = tmp_path / "loose"
    _write_cine(loose / "a.nii.gz")
    with pytest.raises(CineDataError, match="neither an ACDC nor a UK Biobank folder"):
        joint_inference_datalist(loose)
    (tmp_path / "empty").mkdir()  # any other folder is read as a DICOM series
    with pytest.raises(CineDataError, match="empty"):
        joint_inference_datalist(tmp_path / "empty")


# ---------------------------------------------------------------- postprocessing


def test_split_joint_prediction_values():
    num_frames, h, w = 4, 6, 5
    shifts = torch.tensor([[1.0, 0.0], [0.5, -2.0], [0.0, 3.0]])  # u_{k->ED} of frames 1..3, constant fields
    ddf_channels = shifts.reshape(-1, 1, 1).expand(-1, h, w)
    classes = torch.tensor([0, 3, 1, 2])  # the winning class of each frame
    logits = torch.nn.functional.one_hot(classes, 4).float().reshape(-1, 1, 1).expand(-1, h, w) * 5.0
    pred = torch.cat([ddf_channels, logits]).half()  # half, as under AMP
    labels, ddf = split_joint_prediction(pred)
    assert labels.dtype == ddf.dtype == torch.float32
    assert labels.shape == (num_frames, h, w) and torch.equal(labels[:, 2, 3], classes.float())
    assert ddf.shape == (num_frames, 2, h, w)
    # the inverse of a constant shift is the opposite shift; frame 0 (ED) is exactly zero
    assert torch.equal(ddf[0], torch.zeros(2, h, w))
    assert torch.allclose(ddf[1:], -shifts[:, :, None, None].expand(-1, -1, h, w), atol=1e-5)

    d = JointPredictionSplitd()({"pred": MetaTensor(pred, meta={"filename_or_obj": "x"})})
    assert isinstance(d["seg"], MetaTensor) and d["seg"].meta["filename_or_obj"] == "x"
    assert not isinstance(d["ddf"], MetaTensor) and torch.equal(d["ddf"], ddf)
    assert "seg_prob" not in d
    probabilities = JointPredictionSplitd(prob_key="seg_prob")({"pred": pred})["seg_prob"]
    assert probabilities.shape == (num_frames, 4, h, w) and probabilities.dtype == torch.float32
    assert torch.allclose(probabilities.sum(1), torch.ones(num_frames, h, w))
    assert torch.equal(probabilities.argmax(1), labels.long())
    assert probabilities[1, 3, 0, 0] == pytest.approx(np.exp(5.0) / (np.exp(5.0) + 3))  # soft-max of logits 5, 0, 0, 0

    with pytest.raises(CineDataError, match="2 \\(T - 1\\) \\+ 4 T"):
        split_joint_prediction(torch.zeros(11, h, w))


@pytest.mark.parametrize("size", [(20, 28), (40, 12)])
def test_invert_to_input_grid_round_trip(size):
    num_frames, ed = 5, 2
    original = torch.arange(num_frames * size[0] * size[1], dtype=torch.float32).reshape(num_frames, *size) + 1
    preprocessing = Compose([ReorderFromEDd(keys="image"), CropAroundHeartd(keys="image", roi_size=16)])
    d = preprocessing({"image": MetaTensor(original.clone()), "ed": ed})
    on_net = d["image"].as_tensor()  # (T, 16, 16), frame ED first
    d["seg"] = on_net.clone()
    d["ddf"] = torch.stack([on_net, -2 * on_net], dim=1)
    out = InvertToInputGridd(["seg", "ddf"], transform=preprocessing)(d)
    # inside the window the input comes back in file frame order, outside it is zero
    inside = out["seg"] != 0
    assert out["seg"].shape == original.shape and inside.any() and not inside.all()
    assert torch.equal(out["seg"][inside], original[inside])
    assert torch.equal(out["seg"][:, inside[0]], original[:, inside[0]])  # same window for every frame
    assert out["ddf"].shape == (num_frames, 2, *size) and not isinstance(out["ddf"], MetaTensor)
    assert torch.equal(out["ddf"][:, 0], out["seg"].as_tensor()) and torch.equal(out["ddf"][:, 1], -2 * out["seg"])


def test_invert_to_input_grid_refuses_resampling():
    image = MetaTensor(torch.rand(3, 16, 16), affine=torch.diag(torch.tensor([2.0, 2.0, 8.0, 1.0])))
    resample = ResampleInPlane(spacing=1.0)
    d = {"image": resample(image), "seg": torch.zeros(3, 31, 31)}
    with pytest.raises(ValueError, match="ResampleInPlane"):
        InvertToInputGridd("seg", transform=resample)(d)


# ---------------------------------------------------------------- writing


def test_write_joint_outputs_values(tmp_path):
    num_frames, z, h, w = 4, 2, 6, 5
    affine = np.array([[0, -1.5, 0, 10], [2.0, 0, 0, -5], [0, 0, 10.0, 3], [0, 0, 0, 1]])  # voxel = 30 mm^3
    labels = np.zeros((num_frames, z, h, w), np.uint8)
    lv_counts, rv_counts = [40, 20, 10, 30], [6, 2, 4, 1]
    for t in range(num_frames):
        labels[t].reshape(-1)[: lv_counts[t]] = 3
        labels[t].reshape(-1)[lv_counts[t] : lv_counts[t] + rv_counts[t]] = 1
        labels[t].reshape(-1)[-5:] = 2
    ddf = np.random.default_rng(0).normal(size=(num_frames, 2, z, h, w)).astype(np.float32)
    ddf[1] = 0
    result = write_joint_outputs(tmp_path, "subj", labels, ddf, affine, ed=1, spacing_known=False, source="c.nii")
    files = result["files"]
    assert sorted(files) == ["ddf", "plot", "report", "seg", "strain", "strain_bullseye", "strain_segments", "volumes"]
    assert all(Path(p).is_file() for p in files.values())

    seg = nib.load(files["seg"])
    assert seg.get_data_dtype() == np.uint8 and np.allclose(seg.affine, affine)
    assert np.array_equal(np.asarray(seg.dataobj), labels.transpose(2, 3, 1, 0))
    cine_path = tmp_path / "cine.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((h, w, z, num_frames), np.float32), affine), str(cine_path))
    back = read_nifti_ddf(files["ddf"], read_nifti_cine(cine_path))
    assert np.array_equal(back[:, 1:], ddf) and not back[:, 0].any()

    text = Path(files["volumes"]).read_text().splitlines()
    header = dict(line[2:].split(": ", 1) for line in text if line.startswith("# "))
    table = np.loadtxt([line for line in text if not line.startswith("#")], delimiter=",", skiprows=1)
    assert "PLACEHOLDER" in header["note"]
    assert np.allclose(table[:, 0], range(num_frames))
    assert np.allclose(table[:, 1:], np.array([lv_counts, rv_counts, [5] * num_frames]).T * 0.03, atol=1e-4)
    # EDV = ED frame (1), ESV = the smallest volume
    assert header["ed_frame"].startswith("1 ") and int(header["lv_es_frame"]) == 2 and int(header["rv_es_frame"]) == 3
    assert float(header["lv_edv_ml"]) == pytest.approx(0.6) and float(header["lv_esv_ml"]) == pytest.approx(0.3)
    assert float(header["lv_ef"]) == pytest.approx(0.5) and float(header["rv_ef"]) == pytest.approx(0.5)
    assert result["summary"]["rv_edv_ml"] == pytest.approx(0.06)

    bad = labels.copy()
    bad[0, 0, 0, 0] = 7
    with pytest.raises(CineDataError, match="subj.*outside the classes"):
        write_joint_outputs(tmp_path, "subj", bad, ddf, affine, ed=1, plot=False)


# ---------------------------------------------------------------- the bundle config


def _checkpoint(path: Path) -> Path:
    """A random JointMotionSegNet (the training's class) whose outputs vary enough to give non-trivial results."""
    torch.manual_seed(0)
    net = JointMotionSegNet(width_multiplier=WIDTH)
    with torch.no_grad():
        net.motion_rnn.input_conv.weight.normal_(std=0.05)
        net.seg_head.out.weight.mul_(30.0)
    torch.save(net.state_dict(), str(path))
    return path


def _run_bundle(tmp_path: Path, input_path: Path, ckpt: Path, out_name: str = "out", **overrides
                ) -> tuple[ConfigWorkflow, Path]:
    out = tmp_path / out_name
    workflow = ConfigWorkflow(
        config_file=str(CONFIG),
        meta_file=str(REPO / "bundles" / "joint" / "configs" / "metadata.json"),
        workflow_type="infer",
        bundle_root=str(REPO / "bundles" / "joint"),
        ckpt_path=str(ckpt),
        input=str(input_path),
        output_dir=str(out),
        roi_size=ROI,
        width_multiplier=WIDTH,
        **overrides,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="invert_displacement did not converge")
        workflow.run()
    workflow.finalize()
    return workflow, out


def _read_table(path: Path) -> tuple[dict, np.ndarray]:
    text = path.read_text().splitlines()
    header = dict(line[2:].split(": ", 1) for line in text if line.startswith("# "))
    return header, np.loadtxt([line for line in text if not line.startswith("#")], delimiter=",", skiprows=1)


def test_bundle_on_a_file_smaller_than_the_roi(tmp_path):
    affine = np.array([[-1.5, 0, 0, 10], [0, -1.25, 0, 20], [0, 0, 8.0, 30], [0, 0, 0, 1]])
    cine_path = tmp_path / "small_4d.nii.gz"
    _write_cine(cine_path, shape=(24, 26, 2, 5), affine=affine)  # 24 x 26 < roi 32: padded, then cut back
    _, out = _run_bundle(tmp_path, cine_path, _checkpoint(tmp_path / "model.pt"))
    folder = out / "small_4d"
    seg = nib.load(str(folder / "small_4d_seg.nii.gz"))
    assert seg.shape == (24, 26, 2, 5) and np.allclose(seg.affine, affine) and seg.get_data_dtype() == np.uint8
    values = np.asarray(seg.dataobj)
    assert set(np.unique(values)) <= {0, 1, 2, 3} and len(np.unique(values)) > 1
    ddf = nib.load(str(folder / "small_4d_ddf_ed_to_t.nii.gz"))
    assert ddf.shape == (24, 26, 2, 5, 2) and ddf.get_data_dtype() == np.float32 and np.allclose(ddf.affine, affine)
    fields = np.asarray(ddf.dataobj)
    assert not fields[:, :, :, 0].any() and np.abs(fields[:, :, :, 1:]).max() > 0.01
    assert read_nifti_ddf(folder / "small_4d_ddf_ed_to_t.nii.gz", read_nifti_cine(cine_path)).shape == (5, 3, 2, 24, 26)

    header, table = _read_table(folder / "small_4d_volumes.csv")
    assert table.shape == (5, 4) and "note" not in header
    edv, esv, ef = float(header["lv_edv_ml"]), float(header["lv_esv_ml"]), float(header["lv_ef"])
    assert edv == pytest.approx(table[0, 1], abs=1e-3) and esv == pytest.approx(table[:, 1].min(), abs=1e-3)
    assert (np.isnan(ef) and edv == 0) or ef == pytest.approx((edv - esv) / edv, abs=1e-4)
    voxel_ml = 1.5 * 1.25 * 8.0 / 1000
    assert np.allclose(table[:, 1], (values == 3).sum(axis=(0, 1, 2)) * voxel_ml, atol=1e-3)
    assert (folder / "small_4d_volumes.png").stat().st_size > 0
    gif = Image.open(folder / "small_4d_overlay.gif")  # the input cine with the tracked contours, every frame
    assert gif.n_frames == 5
    report = (folder / "small_4d_report.html").read_text()
    assert 'src="small_4d_overlay.gif"' in report and 'src="small_4d_volumes.png"' in report
    linked = re.findall(r'(?:src|href)="([^"]+)"', report)
    assert len(linked) >= 8 and all((folder / name).is_file() for name in linked)  # every picture and file present
    browser = shutil.which("chromium")
    if browser:  # the page as a real browser draws it (Chromium is not part of the CI image: a documented check)
        shot = tmp_path / "report.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", f"--user-data-dir={tmp_path / 'chromium'}",
                        "--window-size=1000,1600", f"--screenshot={shot}", (folder / "small_4d_report.html").as_uri()],
                       check=True, capture_output=True, timeout=120)
        assert np.asarray(Image.open(shot).convert("L")).std() > 10  # not a blank page
    assert f"{100 * ef:.1f}" in report or np.isnan(ef)


def test_bundle_on_an_acdc_patient_keeps_the_file_frame_order(tmp_path):
    root = tmp_path / "acdc"
    patient = root / "patient003"
    _write_cine(patient / "patient003_4d.nii.gz", shape=(40, 36, 2, 5))  # cropped in-plane to 32 x 32
    (patient / "Info.cfg").write_text("ED: 3\nES: 1\nGroup: NOR\nNbFrame: 5\n")
    (root / "manifest.json").write_text(json.dumps([{"patient": "patient003", "spacing_known": False}]))
    _, out = _run_bundle(tmp_path, patient, _checkpoint(tmp_path / "model.pt"))
    folder = out / "patient003"
    assert nib.load(str(folder / "patient003_seg.nii.gz")).shape == (40, 36, 2, 5)
    fields = np.asarray(nib.load(str(folder / "patient003_ddf_ed_to_t.nii.gz")).dataobj)
    moving = [bool(np.abs(fields[:, :, :, t]).max() > 0) for t in range(5)]
    assert moving == [True, True, False, True, True]  # ED is file frame 2, and its field is exactly zero
    # the 32 x 32 window leaves at least 8 rows (X) and 4 columns (Y) without motion
    assert (~fields.any(axis=(1, 2, 3, 4))).sum() >= 8 and (~fields.any(axis=(0, 2, 3, 4))).sum() >= 4
    header, table = _read_table(folder / "patient003_volumes.csv")
    assert header["ed_frame"].startswith("2 ") and "PLACEHOLDER" in header["note"]
    assert float(header["lv_edv_ml"]) == pytest.approx(table[2, 1], abs=1e-3)


def test_bundle_network_is_channels_last_with_the_plain_networks_outputs(tmp_path):
    cine_path = tmp_path / "cine_4d.nii.gz"
    _write_cine(cine_path, shape=(32, 32, 1, 4))
    ckpt = _checkpoint(tmp_path / "model.pt")
    workflow, _ = _run_bundle(tmp_path, cine_path, ckpt)
    net = workflow.parser.get_parsed_content("network").eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    plain = JointMotionSegNet(width_multiplier=WIDTH).eval()
    plain.load_state_dict(torch.load(ckpt, weights_only=True))
    target, sources = torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.inference_mode():  # the dict interface of the bundle's (stacked) network, on the same weights
        ours, reference = JointMotionSegNet.forward(net, target, sources), plain(target, sources)
    assert reference["ddf_to_target"].abs().max() > 0.01
    for key in ("ddf_to_target", "seg_logits_target", "seg_logits_sources"):
        assert torch.allclose(ours[key], reference[key], atol=1e-4), key


def test_bundle_refinement_option_brings_the_tracked_ed_frame_closer_to_each_frame(tmp_path):
    cine_path = tmp_path / "cine_4d.nii.gz"
    _write_cine(cine_path, shape=(32, 32, 1, 5))
    frames = torch.as_tensor(read_nifti_cine(cine_path).data)[:, 0]  # (T, H, W), slice 0
    frames = (frames - frames.min()) / (frames.max() - frames.min())
    ckpt = _checkpoint(tmp_path / "model.pt")
    errors = {}
    for name, iterations in (("plain", 0), ("refined", 40)):
        _, out = _run_bundle(tmp_path, cine_path, ckpt, out_name=name,
                             refine={"iterations": iterations, "similarity": "mse", "smoothness": 0.1,
                                     "learning_rate": 0.05, "levels": [1], "window": 9})
        fields = torch.as_tensor(read_nifti_ddf(out / "cine_4d" / "cine_4d_ddf_ed_to_t.nii.gz",
                                                read_nifti_cine(cine_path)))[:, 1:, 0]  # (T, 2, H, W), slice 0
        warped = warp_image(frames[:1].expand(5, -1, -1)[:, None], fields)[:, 0]
        errors[name] = float(torch.mean((warped - frames) ** 2))
    assert errors["refined"] < 0.9 * errors["plain"]


def test_bundle_bad_input_names_the_file(tmp_path):
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.eye(4)), str(flat))
    with pytest.raises(Exception) as info:
        _run_bundle(tmp_path, flat, _checkpoint(tmp_path / "model.pt"))
    causes, error = [], info.value
    while error is not None:
        causes.append(error)
        error = error.__cause__
    assert any(isinstance(e, CineDataError) and "flat.nii.gz" in str(e) and "4D" in str(e) for e in causes)


def _command(input_path: Path, ckpt: Path, out: Path) -> list[str]:
    """The documented inference command line on the small test network."""
    return [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--meta_file",
            str(REPO / "bundles" / "joint" / "configs" / "metadata.json"), "--input", str(input_path),
            "--ckpt_path", str(ckpt), "--output_dir", str(out), "--width_multiplier", str(WIDTH),
            "--roi_size", json.dumps(ROI)]


def test_command_line_reports_bad_input_in_one_line(tmp_path):
    """The documented inference command on a 3D file: one line naming the file, exit 1, no traceback, no output."""
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.float32), np.eye(4)), str(flat))
    out = tmp_path / "out"
    args = _command(flat, _checkpoint(tmp_path / "model.pt"), out)
    env = {k: v for k, v in os.environ.items() if k != DEBUG_VARIABLE}
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("error: ") and "flat.nii.gz" in lines[-2] and "4D" in lines[-2]
    assert DEBUG_VARIABLE in lines[-1] and "Traceback" not in done.stderr
    assert not out.exists() or not any(out.rglob("*.nii.gz"))
    debug = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**env, DEBUG_VARIABLE: "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "flat.nii.gz" in debug.stderr


@pytest.mark.parametrize("run, expected", [
    ({"finished": False, "epoch": 2, "max_epochs": 9},
     "unfinished training run (stage 'joint', saved after epoch 2 of 9"),
    ({"finished": True, "arguments": {"width_multiplier": 0.5}},
     f"width_multiplier is 0.5 in the checkpoint, {WIDTH} in"),
])
def test_command_line_refuses_a_checkpoint_whose_description_does_not_fit(tmp_path, run, expected):
    """An unfinished run's checkpoint or one saved from another network: one line naming it, exit 1, no outputs;
    ``--allow_unfinished true`` accepts the unfinished one."""
    cine = tmp_path / "cine_4d.nii.gz"
    _write_cine(cine, shape=(32, 32, 1, 4))
    ckpt = _checkpoint(tmp_path / "model.pt")
    description = {"network": "JointMotionSegNet", "arguments": {}, "run_id": "r", "stage": "joint", **run}
    torch.save({"model": torch.load(ckpt, weights_only=True), RUN_KEY: description}, ckpt)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != DEBUG_VARIABLE}
    done = subprocess.run(_command(cine, ckpt, out), cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-2]
    assert line.startswith(f"error: {ckpt}: ") and expected in line and "Traceback" not in done.stderr
    assert not out.exists() or not any(out.rglob("*.nii.gz"))
    if not run["finished"]:
        allowed = subprocess.run(_command(cine, ckpt, out) + ["--allow_unfinished", "true"], cwd=REPO,
                                 capture_output=True, text=True, timeout=300, env=env)
        assert allowed.returncode == 0, allowed.stderr[-2000:]
        assert any(out.rglob("*.nii.gz"))


def test_command_line_finishes_a_dataset_with_one_truncated_subject(tmp_path):
    """A folder of three subjects, the second truncated: the others are written, summary.csv lists all three with
    the reason, progress is logged as k / N (of the readable subjects), and the command ends with one line naming
    the table, exit 1."""
    root = tmp_path / "ukbb"
    for name in ("1001", "1002", "1003"):
        _write_cine(root / name / "sa.nii.gz", shape=(32, 32, 2, 4))
    broken = root / "1002" / "sa.nii.gz"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # header readable, frames cut off
    out = tmp_path / "out"
    args = _command(root, _checkpoint(tmp_path / "model.pt"), out)
    env = {k: v for k, v in os.environ.items() if k != DEBUG_VARIABLE}
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("error: ") and "summary.csv" in lines[-2] and "1 of 3 subjects failed" in lines[-2]
    assert "1002" in lines[-2] and "Traceback" not in done.stderr
    assert "subjects 1 / 2 done" in done.stdout and "subjects 2 / 2 done" in done.stdout  # the bundle's log
    for name in ("1001", "1003"):
        assert nib.load(str(out / name / f"{name}_seg.nii.gz")).shape == (32, 32, 2, 4)
    assert not (out / "1002").exists()
    with open(out / "summary.csv") as stream:
        rows = {row["subject"]: row for row in csv.DictReader(stream)}
    assert list(rows) == ["1001", "1002", "1003"]
    assert [rows[s]["status"] for s in rows] == ["ok", "failed", "ok"]
    assert rows["1002"]["stage"] == "loading" and rows["1002"]["file"] == str(broken) and rows["1002"]["reason"]
    assert rows["1001"]["output"] == str(out / "1001")


def test_implausible_geometry_and_volumes_are_flagged_in_the_table(tmp_path, caplog):
    labels = np.zeros((4, 1, 16, 16), np.uint8)
    labels[:, 0, 6:10, 6:10] = 3  # an LV whose volume does not change: EF 0
    ddf = np.zeros((4, 2, 1, 16, 16), np.float32)
    affine = np.diag([1000.0, 1000.0, 8.0, 1.0])  # spacing in micrometres read as mm
    with caplog.at_level("WARNING"):
        out = write_joint_outputs(tmp_path, "odd", labels, ddf, affine, ed=0, plot=False, strain=False,
                                  roi_size=(96, 96))
    assert "in_plane_spacing_mm 1000 mm outside [0.4, 4] mm" in out["flags"]
    assert any(f.startswith("image (16, 16) less than half") for f in out["flags"])
    assert "num_frames 4 outside [10, 100]" in out["flags"] and "lv_ef 0 outside [0.05, 0.9]" in out["flags"]
    assert "rv_ef is undefined" in out["flags"]  # no RV: EDV 0, EF undefined
    header, _ = _read_table(Path(out["files"]["volumes"]))
    assert header["flags"] == "; ".join(out["flags"])
    assert "odd: implausible input or result" in caplog.text

