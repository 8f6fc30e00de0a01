"""Tests of the probabilistic motion bundle's inference: every mode through configs/inference.json, the inferer,
and the joint-inference pieces it generalised (ED labels in the data list, ED-first inversion, motion-only writing)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Compose, ScaleIntensityRangePercentiles
from PIL import Image

from monai_cardiac.data import read_nifti_cine, read_nifti_ddf
from monai_cardiac.displacement import warp_image, warp_labels
from monai_cardiac.engines.joint_inference import (
    InvertToInputGridd,
    joint_inference_datalist,
    write_joint_outputs,
)
from monai_cardiac.engines.probabilistic_inference import (
    ProbabilisticMotionInferer,
    ProbabilisticPredictionSplitd,
    ProbabilisticResultWriter,
    saver_keys,
)
from monai_cardiac.errors import CineDataError
from monai_cardiac.networks import ProbabilisticMotionModel
from monai_cardiac.transforms import CropAroundHeartd, ReorderFromEDd

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "probabilistic_motion"
CONFIG = BUNDLE / "configs" / "inference.json"
ROI = [32, 32]
LATENT = 4
NETWORK = {
    "_target_": "monai_cardiac.networks.ProbabilisticMotionModel",
    "spatial_size": "@roi_size",
    "latent_dim": LATENT,
    "encoder_channels": [4, 4, 4, 2],
    "decoder_channels": [4, 4, 4],
    "decoder_latent_channels": 4,
    "tcn_dilations": [1, 2],
    "spacing": "@nominal_spacing",
}
SHIFT = (0.8, -0.6)  # velocity of the translation model, voxels along (H, W)

torch.set_num_threads(1)


def _model(kind: str = "random") -> ProbabilisticMotionModel:
    """The small model of NETWORK: ``random`` (motion depends on the codes), ``identity`` (zero velocity) or
    ``shift`` (constant velocity SHIFT, so every u_{ED->t} is exactly that translation)."""
    torch.manual_seed(0)
    model = ProbabilisticMotionModel(
        spatial_size=ROI, latent_dim=LATENT, encoder_channels=(4, 4, 4, 2), decoder_channels=(4, 4, 4),
        decoder_latent_channels=4, tcn_dilations=(1, 2),
    )
    conv = model.decoder.velocity.conv
    with torch.no_grad():
        if kind == "random":
            conv.weight.normal_(std=1.0)
        else:
            conv.weight.zero_()
            conv.bias.copy_(torch.tensor(SHIFT if kind == "shift" else (0.0, 0.0)))
    return model.eval()


def _checkpoint(tmp_path: Path, kind: str = "random") -> Path:
    path = tmp_path / f"model_{kind}.pt"
    torch.save(_model(kind).state_dict(), str(path))
    return path


@pytest.fixture
def meta_file(tmp_path) -> Path:
    """The bundle's metadata.json, or (while the bundle is being written) the minimum check_properties reads."""
    path = BUNDLE / "configs" / "metadata.json"
    if path.is_file():
        return path
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({"version": "0.0.1", "monai_version": "1.6.1", "pytorch_version": "2.0",
                                "numpy_version": "1.24"}))
    return path


def _write_cine(path: Path, shape=(24, 26, 2, 5), seed=0) -> np.ndarray:
    """A 4D cine (X, Y, Z, T): a disc whose radius changes over time, on noise; returns the data."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    frames = [(np.hypot(x - shape[0] / 2, y - shape[1] / 2) < 4 + t) * 100.0 for t in range(shape[3])]
    data = np.stack(frames, -1)[:, :, None].repeat(shape[2], 2)
    data = (data + np.random.default_rng(seed).normal(0, 5, shape)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([-1.5, -1.25, 8.0, 1.0])), str(path))
    return data


@pytest.fixture
def acdc_patient(tmp_path, make_acdc_subject) -> Path:
    """ACDC patient001 (24 x 26, 2 slices, 5 frames) whose ED is file frame 3 (1-based; 2 0-based), labelled."""
    folder = make_acdc_subject(tmp_path / "acdc", "patient001", num_frames=5, num_slices=2, es=3)
    (folder / "Info.cfg").write_text("ED: 3\nES: 1\nGroup: NOR\nNbFrame: 5\n")
    return folder


def _run(tmp_path: Path, input_path: Path, ckpt: Path, meta_file: Path, mode: str = "track", **overrides) -> Path:
    out = tmp_path / "out"
    workflow = ConfigWorkflow(
        config_file=str(CONFIG), meta_file=str(meta_file), workflow_type="infer", bundle_root=str(BUNDLE),
        ckpt_path=str(ckpt), input=str(input_path), output_dir=str(out), roi_size=ROI, network_def=NETWORK,
        mode=mode, **overrides,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return out


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def _normalised(data: np.ndarray) -> np.ndarray:
    """The preprocessing's intensities of a cine (X, Y, Z, T): each slice's sequence, percentiles 1 / 99 to 0 / 1.

    The scaling comes after the crop to ROI, which zero-pads these small images: the percentiles count the padding
    (where the padding sits does not change them)."""
    scale = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)
    x, y = data.shape[:2]
    pad = ((0, 0), (0, max(ROI[0] - x, 0)), (0, max(ROI[1] - y, 0)))
    slices = [np.asarray(scale(torch.as_tensor(np.pad(data[:, :, z].transpose(2, 0, 1), pad))))[:, :x, :y]
              for z in range(data.shape[2])]
    return np.stack(slices, 0).transpose(2, 3, 0, 1)  # (X, Y, Z, T)


def _causes(error: BaseException) -> list[BaseException]:
    found = []
    while error is not None:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


# ---------------------------------------------------------------- the config


def test_config_has_the_required_properties(tmp_path, meta_file):
    cine_path = tmp_path / "case_4d.nii.gz"
    _write_cine(cine_path)
    workflow = ConfigWorkflow(config_file=str(CONFIG), meta_file=str(meta_file), workflow_type="infer",
                              bundle_root=str(BUNDLE), input=str(cine_path))
    workflow.initialize()
    assert workflow.check_properties() == []
    for key in ("network_def", "preprocessing", "inferer", "postprocessing"):
        assert key in workflow.parser.config


# ---------------------------------------------------------------- track


def test_track_on_an_acdc_patient_propagates_the_ed_labels(tmp_path, acdc_patient, meta_file):
    out = _run(tmp_path, acdc_patient, _checkpoint(tmp_path, "shift"), meta_file)
    folder = out / "patient001"
    cine = read_nifti_cine(acdc_patient / "patient001_4d.nii.gz")
    ddf, affine = _load(folder / "patient001_ddf_ed_to_t.nii.gz")
    assert ddf.shape == (24, 26, 2, 5, 2) and np.allclose(affine, cine.file_affine)
    # ED is file frame 2 (0-based): its field is exactly zero, the others are the model's translation
    assert not ddf[:, :, :, 2].any()
    others = ddf[:, :, :, [0, 1, 3, 4]]
    assert np.allclose(others, np.array(SHIFT, np.float32), atol=1e-4)  # 24 x 26 lies inside the 32 x 32 window

    seg, seg_affine = _load(folder / "patient001_seg.nii.gz")
    gt = np.asarray(nib.load(str(acdc_patient / "patient001_frame03_gt.nii.gz")).dataobj)
    assert seg.shape == (24, 26, 2, 5) and seg.dtype == np.uint8 and np.allclose(seg_affine, affine)
    assert np.array_equal(seg[:, :, :, 2], gt)
    # every frame holds the ED labels pulled through u_{ED->t}, here the translation: labels move
    labels = torch.as_tensor(gt.transpose(2, 0, 1)[:, None].astype(np.float32))  # (Z, 1, H, W)
    for t in (0, 1, 3, 4):
        field = torch.as_tensor(ddf[:, :, :, t].transpose(2, 3, 0, 1))  # (Z, 2, H, W)
        expected = warp_labels(labels, field)[:, 0].numpy().transpose(1, 2, 0)
        assert np.array_equal(seg[:, :, :, t], expected) and not np.array_equal(seg[:, :, :, t], gt)

    text = (folder / "patient001_volumes.csv").read_text().splitlines()
    header = dict(line[2:].split(": ", 1) for line in text if line.startswith("# "))
    table = np.loadtxt([line for line in text if not line.startswith("#")], delimiter=",", skiprows=1)
    voxel_ml = 1.5 * 1.25 * 8.0 / 1000
    assert header["ed_frame"].startswith("2 ") and table.shape == (5, 4)
    assert np.allclose(table[:, 1], (seg == 3).sum(axis=(0, 1, 2)) * voxel_ml, atol=1e-3)
    assert float(header["lv_edv_ml"]) == pytest.approx((gt == 3).sum() * voxel_ml, abs=1e-3)
    assert (folder / "patient001_volumes.png").stat().st_size > 0
    assert Image.open(folder / "patient001_overlay.gif").n_frames == 5
    assert 'src="patient001_overlay.gif"' in (folder / "patient001_report.html").read_text()
    # strain of the propagated ED myocardium: the model's motion is a rigid translation, so no strain
    strain_text = (folder / "patient001_strain.csv").read_text().splitlines()
    strain = dict(line[2:].split(": ", 1) for line in strain_text if line.startswith("# "))
    assert abs(float(strain["peak_global_circumferential_percent"])) < 0.5
    assert abs(float(strain["peak_global_radial_percent"])) < 0.5
    assert (folder / "patient001_strain_segments.csv").is_file()

    z = np.load(folder / "patient001_z.npy")
    assert z.shape == (2, LATENT, 4) and z.dtype == np.float32 and np.isfinite(z).all()


def test_track_without_ed_labels_writes_motion_only(tmp_path, meta_file):
    cine_path = tmp_path / "case_4d.nii.gz"
    _write_cine(cine_path)
    out = _run(tmp_path, cine_path, _checkpoint(tmp_path), meta_file)
    folder = out / "case_4d"
    assert sorted(p.name for p in folder.iterdir()) == ["case_4d_ddf_ed_to_t.nii.gz", "case_4d_z.npy"]
    ddf, affine = _load(folder / "case_4d_ddf_ed_to_t.nii.gz")
    assert ddf.shape == (24, 26, 2, 5, 2) and np.allclose(affine, np.diag([-1.5, -1.25, 8.0, 1.0]))
    assert not ddf[:, :, :, 0].any() and np.abs(ddf[:, :, :, 1:]).max() > 0.05
    back = read_nifti_ddf(folder / "case_4d_ddf_ed_to_t.nii.gz", read_nifti_cine(cine_path))
    assert back.shape == (5, 3, 2, 24, 26)


# ---------------------------------------------------------------- compensate


def test_compensate_with_zero_motion_returns_the_input(tmp_path, acdc_patient, meta_file):
    out = _run(tmp_path, acdc_patient, _checkpoint(tmp_path, "identity"), meta_file, mode="compensate")
    folder = out / "patient001"
    data, file_affine = _load(acdc_patient / "patient001_4d.nii.gz")
    compensated, affine = _load(folder / "patient001_compensated.nii.gz")
    assert compensated.shape == data.shape and compensated.dtype == np.float32 and np.allclose(affine, file_affine)
    assert np.allclose(compensated, _normalised(data), atol=1e-5)  # the file's frame order, every frame its own
    inverse, _ = _load(folder / "patient001_ddf_t_to_ed.nii.gz")
    assert inverse.shape == (*data.shape, 2) and not inverse.any()
    # the plausibility flags of the input reach the run's table in this mode too: 5 frames is too few for a cine
    (row,) = csv.DictReader(open(out / "summary.csv"))
    assert row["status"] == "ok" and "num_frames 5 outside [10, 100]" in row["flags"]


def test_compensate_warps_every_frame_onto_ed(tmp_path, acdc_patient, meta_file):
    out = _run(tmp_path, acdc_patient, _checkpoint(tmp_path, "shift"), meta_file, mode="compensate")
    folder = out / "patient001"
    data, _ = _load(acdc_patient / "patient001_4d.nii.gz")
    inverse, _ = _load(folder / "patient001_ddf_t_to_ed.nii.gz")
    # u_{t->ED} is the inverse of the translation, zero at ED (file frame 2)
    assert not inverse[:, :, :, 2].any()
    assert np.allclose(inverse[:, :, :, [0, 1, 3, 4]], -np.array(SHIFT, np.float32), atol=1e-4)
    compensated, _ = _load(folder / "patient001_compensated.nii.gz")
    normalised = _normalised(data)
    assert np.array_equal(compensated[:, :, :, 2], normalised[:, :, :, 2])
    # frame t pulled through -SHIFT: compensated(x) = I_t(x - SHIFT), checked away from the image border
    frame = torch.as_tensor(normalised[:, :, :, 4].transpose(2, 0, 1)[:, None])  # (Z, 1, H, W)
    field = torch.as_tensor(inverse[:, :, :, 4].transpose(2, 3, 0, 1))
    expected = warp_image(frame, field)[:, 0].numpy().transpose(1, 2, 0)
    assert np.allclose(compensated[2:-2, 2:-2, :, 4], expected[2:-2, 2:-2], atol=1e-4)
    assert not np.allclose(compensated[:, :, :, 4], normalised[:, :, :, 4], atol=1e-2)


# ---------------------------------------------------------------- simulate


def test_simulate_writes_sampled_cines_starting_at_ed(tmp_path, acdc_patient, meta_file):
    out = _run(tmp_path, acdc_patient, _checkpoint(tmp_path), meta_file, mode="simulate", num_samples=2, num_frames=7)
    folder = out / "patient001"
    (row,) = csv.DictReader(open(out / "summary.csv"))
    assert "num_frames" not in row["flags"]  # the frames are generated ones: no frame-count flag
    data, file_affine = _load(acdc_patient / "patient001_4d.nii.gz")
    normalised_ed = _normalised(data)[:, :, :, 2]
    sims, ddfs = [], []
    for k in (0, 1):
        sim, affine = _load(folder / f"patient001_simulated_{k}.nii.gz")
        ddf, ddf_affine = _load(folder / f"patient001_simulated_{k}_ddf_ed_to_t.nii.gz")
        assert sim.shape == (24, 26, 2, 7) and ddf.shape == (24, 26, 2, 7, 2)
        assert np.allclose(affine, file_affine) and np.allclose(ddf_affine, file_affine)
        # frame 0 is ED itself: no displacement, the (normalised) ED frame of the file
        assert not ddf[:, :, :, 0].any() and np.array_equal(sim[:, :, :, 0], normalised_ed)
        sims.append(sim)
        ddfs.append(ddf)
    assert np.abs(ddfs[0][:, :, :, 1:]).max() > 0.05 and not np.allclose(ddfs[0], ddfs[1], atol=1e-4)
    # the default frame count is the input's
    out = _run(tmp_path / "default", acdc_patient, _checkpoint(tmp_path), meta_file, mode="simulate")
    assert _load(out / "patient001" / "patient001_simulated_0.nii.gz")[0].shape == (24, 26, 2, 5)
    assert not (out / "patient001" / "patient001_simulated_1.nii.gz").exists()


def test_track_with_the_orientation_ensemble_is_equivariant():
    model = _model()
    inputs = torch.rand(1, 4, *ROI, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ensemble = ProbabilisticMotionInferer("track", orientation_ensemble=True)
        out, mirrored = ensemble(inputs, model), ensemble(inputs.flip(2), model)
        single = ProbabilisticMotionInferer("track")(inputs, model)
    ddf = out["ddf"]  # (1, N, 2, H, W), ED first and zero
    assert ddf.shape == single["ddf"].shape and not ddf[:, 0].any()
    assert not torch.allclose(ddf, single["ddf"], atol=1e-4)  # the single pass is not equivariant
    assert torch.equal(out["z"], single["z"])  # the code stays the cine's own
    back = mirrored["ddf"].flip(3)  # mirror of H: the H component changes sign
    assert torch.allclose(back[:, :, 0], -ddf[:, :, 0], atol=1e-4)
    assert torch.allclose(back[:, :, 1], ddf[:, :, 1], atol=1e-4)


def test_simulate_draws_are_reseeded_per_slice():
    model = _model()
    ed = torch.rand(1, 1, *ROI, generator=torch.Generator().manual_seed(1))
    inputs = torch.cat([ed, torch.rand(1, 3, *ROI)], 1).repeat(2, 1, 1, 1)  # two slices, same ED frame
    inputs[1, 1:] = torch.rand(3, *ROI)
    with torch.no_grad():
        seeded = ProbabilisticMotionInferer("simulate", num_samples=2, seed=3)
        first, again = seeded(inputs, model), seeded(inputs, model)
        unseeded = ProbabilisticMotionInferer("simulate", num_samples=2, seed=None)(inputs, model)
        other = ProbabilisticMotionInferer("simulate", num_samples=2, seed=4)(inputs, model)
    assert first["ddf"].shape == (2, 4, 2, 2, *ROI) and first["cine"].shape == (2, 4, 2, *ROI)
    assert torch.equal(first["ddf"], again["ddf"])
    # both slices share the prior codes (same ED frame -> same motion); samples differ from each other
    assert torch.equal(first["ddf"][0], first["ddf"][1])
    assert not torch.allclose(first["ddf"][0, :, 0], first["ddf"][0, :, 1])
    assert not torch.allclose(unseeded["ddf"][0], unseeded["ddf"][1])
    assert not torch.allclose(first["ddf"], other["ddf"])
    # the draws are the model's: simulate with a generator seeded alike
    with torch.no_grad():
        direct = model.simulate(ed, 3, 2, torch.Generator().manual_seed(3))["ddf"]
        assert torch.allclose(first["ddf"][0, 1:], direct[0].transpose(0, 1))


# ---------------------------------------------------------------- reconstruct


def test_reconstruct_with_every_frame_given_is_track(tmp_path, acdc_patient, meta_file):
    ckpt = _checkpoint(tmp_path)
    folder = _run(tmp_path, acdc_patient, ckpt, meta_file) / "patient001"
    track, _ = _load(folder / "patient001_ddf_ed_to_t.nii.gz")
    _run(tmp_path, acdc_patient, ckpt, meta_file, mode="reconstruct", given=[1, 2, 3, 4, 5])
    full, affine = _load(folder / "patient001_reconstructed_ddf_ed_to_t.nii.gz")
    assert full.shape == track.shape and np.allclose(full, track, atol=1e-6)
    cine, _ = _load(folder / "patient001_reconstructed.nii.gz")
    data, file_affine = _load(acdc_patient / "patient001_4d.nii.gz")
    assert cine.shape == data.shape and np.allclose(affine, file_affine)
    assert np.allclose(cine[:, :, :, 2], _normalised(data)[:, :, :, 2], atol=1e-6)  # ED: the frame itself
    # a subset fills the missing frames from the prior: another motion, still zero at ED
    _run(tmp_path, acdc_patient, ckpt, meta_file, mode="reconstruct", given=[1, 5])
    subset, _ = _load(folder / "patient001_reconstructed_ddf_ed_to_t.nii.gz")
    assert not subset[:, :, :, 2].any() and np.abs(subset - track).max() > 1e-3


def test_reconstruct_given_are_file_frame_numbers():
    """File frames (1-based) map onto the steps after ED of the ED-first sequence the model sees."""
    model = _model()
    frames = torch.rand(5, *ROI, generator=torch.Generator().manual_seed(2))
    image = MetaTensor(frames.clone(), meta={"filename_or_obj": "c.nii"})
    item = ReorderFromEDd(keys="image")({"image": image, "ed": 2})
    inputs = list_data_collate([item])["image"]  # ED-first: file frames 3, 4, 5, 1, 2
    with torch.no_grad():
        out = ProbabilisticMotionInferer("reconstruct", given=[5, 1, 3], seed=0)(inputs, model)
        # file frame 5 is the 2nd step after ED, file frame 1 the 3rd; frame 3 is ED
        expected = model.reconstruct(inputs.as_tensor()[:, :1], inputs.as_tensor()[:, 1:], [1, 2],
                                     torch.Generator().manual_seed(0))
    assert torch.allclose(out["ddf"][:, 1:], expected["ddf"]) and not out["ddf"][:, 0].any()
    with pytest.raises(CineDataError, match=r"c\.nii.*given frames \[6\] are beyond the cine's 5 frames"):
        ProbabilisticMotionInferer("reconstruct", given=[1, 6])(inputs, model)


@pytest.mark.parametrize("given", [None, [], [0, 2], [1.5], "3"])
def test_reconstruct_needs_frame_numbers(given):
    with pytest.raises(ValueError, match="given"):
        ProbabilisticMotionInferer("reconstruct", given=given)


def test_bundle_reconstruct_beyond_the_frames_names_the_file(tmp_path, meta_file):
    cine_path = tmp_path / "short_4d.nii.gz"
    _write_cine(cine_path)
    with pytest.raises(Exception) as info:
        _run(tmp_path, cine_path, _checkpoint(tmp_path), meta_file, mode="reconstruct", given=[2, 9])
    assert any(isinstance(e, CineDataError) and "short_4d.nii.gz" in str(e) and "[9]" in str(e)
               for e in _causes(info.value))


# ---------------------------------------------------------------- transport


def test_transport_of_the_subjects_own_motion_is_track(tmp_path, acdc_patient, meta_file):
    ckpt = _checkpoint(tmp_path)
    folder = _run(tmp_path, acdc_patient, ckpt, meta_file) / "patient001"
    track, _ = _load(folder / "patient001_ddf_ed_to_t.nii.gz")
    ed_first = track[:, :, :, [(2 + t) % 5 for t in range(5)]]  # transported sequences start at ED
    data, file_affine = _load(acdc_patient / "patient001_4d.nii.gz")
    for source in (folder / "patient001_z.npy", acdc_patient):  # the saved motion matrix (decode), or the cine
        _run(tmp_path, acdc_patient, ckpt, meta_file, mode="transport", motion_input=str(source))
        ddf, affine = _load(folder / "patient001_transported_ddf_ed_to_t.nii.gz")
        assert ddf.shape == track.shape and np.allclose(affine, file_affine)
        assert np.allclose(ddf, ed_first, atol=1e-5) and not ddf[:, :, :, 0].any()
        cine, _ = _load(folder / "patient001_transported.nii.gz")
        assert cine.shape == data.shape and np.allclose(cine[:, :, :, 0], _normalised(data)[:, :, :, 2], atol=1e-6)


def test_transport_matches_slices(tmp_path):
    model = _model()
    codes = torch.randn(3, LATENT, 6, generator=torch.Generator().manual_seed(0))  # 3 source slices, T_s = 6
    np.save(tmp_path / "z.npy", codes.numpy())
    meta = {"slice": torch.tensor([0, 1]), "spatial_shape": torch.tensor([[32, 32, 2], [32, 32, 2]]),
            "filename_or_obj": ["a", "a"]}
    inputs = MetaTensor(torch.rand(2, 4, *ROI), meta=meta)
    inputs.is_batch = True
    with torch.no_grad():
        by_index = ProbabilisticMotionInferer("transport", motion_input=tmp_path / "z.npy")(inputs, model)
        middle = ProbabilisticMotionInferer("transport", motion_input=tmp_path / "z.npy", motion_slice="middle")(
            inputs, model)
        ed = inputs.as_tensor()[:, :1]
        # 2 target slices on 3 source slices: the same relative position (0 -> 0, 1 -> 2); middle: slice 1
        for out, picks in ((by_index, (0, 2)), (middle, (1, 1))):
            assert out["ddf"].shape == (2, 7, 2, *ROI) and out["cine"].shape == (2, 7, *ROI)
            for b, k in enumerate(picks):
                assert torch.allclose(out["ddf"][b, 1:], model.decode(codes[k : k + 1], ed[b : b + 1])["ddf"][0])
    with pytest.raises(CineDataError, match="use motion_slice='middle'"):
        ProbabilisticMotionInferer("transport", motion_input=tmp_path / "z.npy")(torch.rand(1, 4, *ROI), model)
    np.save(tmp_path / "bad.npy", np.zeros((2, LATENT + 1, 6), np.float32))
    with pytest.raises(CineDataError, match=rf"bad\.npy.*\(Z, {LATENT}, T >= 1\)"):
        ProbabilisticMotionInferer("transport", motion_input=tmp_path / "bad.npy")(inputs, model)


def test_transport_from_a_folder_of_several_subjects_is_refused(tmp_path, make_acdc_subject):
    for name in ("patient001", "patient002"):
        make_acdc_subject(tmp_path / "acdc", name, num_frames=5)
    inferer = ProbabilisticMotionInferer("transport", motion_input=tmp_path / "acdc", preprocessing=lambda d: d)
    with pytest.raises(CineDataError, match="one subject, found 2"):
        inferer(torch.rand(1, 4, *ROI), _model())


# ---------------------------------------------------------------- bad modes and arguments


def test_bad_mode_and_arguments():
    with pytest.raises(ValueError, match="mode must be one of .*'track'.*got 'warp'"):
        ProbabilisticMotionInferer("warp")
    with pytest.raises(ValueError, match="motion_input"):
        ProbabilisticMotionInferer("transport")
    with pytest.raises(ValueError, match="preprocessing"):
        ProbabilisticMotionInferer("transport", motion_input="other_4d.nii.gz")
    with pytest.raises(ValueError, match="num_samples"):
        ProbabilisticMotionInferer("simulate", num_samples=0)
    with pytest.raises(ValueError, match="num_frames"):
        ProbabilisticMotionInferer("simulate", num_frames=1)
    with pytest.raises(ValueError, match="motion_slice"):
        ProbabilisticMotionInferer("transport", motion_input="z.npy", motion_slice="apex")
    with pytest.raises(ValueError, match="mode must be one of"):
        saver_keys("warp")
    with pytest.raises(CineDataError, match="N >= 2"):
        ProbabilisticMotionInferer()(torch.rand(1, 1, *ROI), _model())
    with pytest.raises(CineDataError, match="must be the dict"):
        ProbabilisticPredictionSplitd()({"pred": torch.zeros(2)})


def test_bundle_bad_mode_is_a_clear_error(tmp_path, meta_file):
    cine_path = tmp_path / "case_4d.nii.gz"
    _write_cine(cine_path)
    with pytest.raises(Exception) as info:
        _run(tmp_path, cine_path, _checkpoint(tmp_path), meta_file, mode="warp")
    assert any(isinstance(e, ValueError) and "mode must be one of" in str(e) for e in _causes(info.value))


# ---------------------------------------------------------------- generalised joint-inference pieces


def test_datalist_keeps_the_ed_label_on_request(tmp_path, acdc_patient):
    entries = joint_inference_datalist(acdc_patient, ed_labels=True)
    assert len(entries) == 2 and entries[0]["ed"] == 2
    assert entries[0]["ed_label"] == [str(acdc_patient / "patient001_frame03_gt.nii.gz")]
    assert entries[0]["label_frames"] == [2] and "label" not in entries[0]
    (acdc_patient / "patient001_frame03_gt.nii.gz").unlink()
    assert joint_inference_datalist(acdc_patient, ed_labels=True)[0]["ed_label"] == []
    assert "ed_label" not in joint_inference_datalist(acdc_patient)[0]


def test_invert_keeps_ed_first_and_sample_axes():
    num_frames, ed, size = 5, 2, (20, 28)
    original = torch.arange(num_frames * size[0] * size[1], dtype=torch.float32).reshape(num_frames, *size) + 1
    preprocessing = Compose([ReorderFromEDd(keys="image"), CropAroundHeartd(keys="image", roi_size=16)])
    d = preprocessing({"image": MetaTensor(original.clone()), "ed": ed})
    on_net = d["image"].as_tensor()  # ED first
    generated = torch.cat([on_net, on_net[:2]])  # 7 frames, another length than the input's
    d["samples"] = torch.stack([generated, 2 * generated], dim=1)[:, :, None].repeat(1, 1, 2, 1, 1)  # (7, 2, 2, ...)
    d["cine"] = on_net.clone()
    out = InvertToInputGridd(["samples", "cine"], transform=preprocessing, restore_frame_order=False)(d)
    inside = out["cine"][0] != 0
    assert out["cine"].shape == original.shape and out["samples"].shape == (7, 2, 2, *size)
    rolled = original[[(ed + t) % num_frames for t in range(num_frames)]]  # ED-first, uncropped
    assert torch.equal(out["cine"][:, inside], rolled[:, inside])
    assert torch.equal(out["samples"][:5, 1, 0][:, inside], 2 * rolled[:, inside])
    assert torch.equal(out["samples"][5:, 0, 1][:, inside], rolled[:2, inside])
    assert not out["samples"][:, :, :, ~inside].any()


def test_write_joint_outputs_without_labels(tmp_path):
    ddf = np.random.default_rng(0).normal(size=(4, 2, 2, 6, 5)).astype(np.float32)
    affine = np.diag([1.5, 1.25, 8.0, 1.0])
    result = write_joint_outputs(tmp_path, "subj", None, ddf, affine, ed=1)
    assert list(result["files"]) == ["ddf"] and result["summary"] == {}
    assert sorted(p.name for p in (tmp_path / "subj").iterdir()) == ["subj_ddf_ed_to_t.nii.gz"]
    written, written_affine = _load(Path(result["files"]["ddf"]))
    assert np.array_equal(written, ddf.transpose(3, 4, 2, 0, 1)) and np.allclose(written_affine, affine)
    with pytest.raises(CineDataError, match="ED frame 4 is outside"):
        write_joint_outputs(tmp_path, "subj", None, ddf, affine, ed=4)


def test_writer_lays_samples_and_slices_out(tmp_path):
    affine = np.diag([1.5, 1.25, 8.0, 1.0])
    slices = [{"cine": torch.full((3, 2, 6, 5), float(z)), "ddf": torch.full((3, 2, 2, 6, 5), float(z + 1)),
               "input_ed": 0, "meta": {"original_affine": affine, "filename_or_obj": "c.nii"}} for z in range(4)]
    for s in slices:
        s["ddf"][:, 1] *= -1  # sample 1 moves the other way
    files = ProbabilisticResultWriter(tmp_path, "simulate")("subj", slices)["files"]
    assert sorted(files) == ["cine_0", "cine_1", "ddf_0", "ddf_1"]
    cine, _ = _load(Path(files["cine_1"]))
    ddf, _ = _load(Path(files["ddf_1"]))
    assert cine.shape == (6, 5, 4, 3) and np.array_equal(cine[0, 0, :, 0], [0, 1, 2, 3])
    assert ddf.shape == (6, 5, 4, 3, 2) and np.array_equal(ddf[0, 0, :, 0, 0], [-1, -2, -3, -4])


# ---------------------------------------------------------------- track: spread over posterior draws


def _with_posterior_sigma(model: ProbabilisticMotionModel, sigma: float) -> ProbabilisticMotionModel:
    """The encoder's posterior made N(mu, sigma^2 I) for every input: log-variance layer constant 2 log(sigma)."""
    with torch.no_grad():
        model.encoder.log_var.weight.zero_()
        model.encoder.log_var.bias.fill_(2 * float(np.log(sigma)))
    return model


def _code_driven_model() -> ProbabilisticMotionModel:
    """The random model with the decoder's dense layer scaled up, so that the motion follows the code more
    than the ED frame it is conditioned on (draws of the code then move voxels by up to ~0.2 at sigma 1)."""
    model = _model()
    with torch.no_grad():
        model.decoder.dense[0].weight.mul_(30.0)
    return model


def _slices(num: int, steps: int = 4) -> MetaTensor:
    """``num`` ED-first cine slices (B, steps + 1, H, W) carrying their slice indices 0 .. num-1."""
    frames = torch.rand(num, steps + 1, *ROI, generator=torch.Generator().manual_seed(5))
    inputs = MetaTensor(frames, meta={"slice": torch.arange(num), "filename_or_obj": ["c.nii"] * num})
    inputs.is_batch = True
    return inputs


def test_track_samples_come_from_the_posterior():
    inputs = _slices(2)
    with torch.no_grad():
        model = _with_posterior_sigma(_model(), 0.3)
        single = ProbabilisticMotionInferer("track")(inputs, model)
        out = ProbabilisticMotionInferer("track", num_samples=4, seed=1)(inputs, model)
        again = ProbabilisticMotionInferer("track", num_samples=4, seed=1)(inputs, model)
        other_seed = ProbabilisticMotionInferer("track", num_samples=4, seed=2)(inputs, model)
    assert sorted(single) == ["ddf", "z"]  # num_samples 1: the posterior mean only, as before
    assert torch.equal(out["ddf"], single["ddf"]) and torch.equal(out["z"], single["z"])
    samples = out["ddf_samples"]
    assert samples.shape == (2, 5, 4, 2, *ROI) and not samples[:, 0].any()
    assert torch.equal(samples, again["ddf_samples"]) and not torch.allclose(samples, other_seed["ddf_samples"])
    assert (samples[:, 1:].std(dim=2) > 1e-4).float().mean() > 0.5  # the draws differ
    # the two slices draw independently (seeded by slice index): another slice index, other draws
    same_slice = MetaTensor(inputs.as_tensor()[1:], meta={"slice": torch.tensor([0]), "filename_or_obj": ["c"]})
    same_slice.is_batch = True
    with torch.no_grad():
        moved = ProbabilisticMotionInferer("track", num_samples=4, seed=1)(same_slice, model)["ddf_samples"]
        assert not torch.allclose(moved[0], samples[1])
        assert torch.equal(moved[0], ProbabilisticMotionInferer("track", num_samples=4, seed=1)(
            inputs[1:].as_tensor(), model)["ddf_samples"][0])  # no meta: batch index 0, the same seed
        # draws centre on the posterior mean and their spread follows sigma: the posterior, not the prior N(0, I)
        narrow = ProbabilisticMotionInferer("track", num_samples=4)(inputs, _with_posterior_sigma(model, 1e-6))
        assert torch.allclose(narrow["ddf_samples"], narrow["ddf"][:, :, None].expand_as(samples), atol=1e-4)
        spreads = [ProbabilisticMotionInferer("track", num_samples=4)(inputs, _with_posterior_sigma(model, s))[
            "ddf_samples"].std(dim=2).mean() for s in (0.03, 0.3)]
    assert 0 < spreads[0] < spreads[1]


def test_split_turns_samples_into_the_spread_and_labels_per_draw():
    steps, k = 3, 4
    a, b = torch.tensor([0.0, 1.0, 2.0, 5.0]), torch.tensor([1.0, 1.0, -1.0, -1.0])  # per-draw translations (H, W)
    samples = torch.zeros(steps, k, 2, *ROI)
    samples[1:, :, 0] = a[:, None, None]
    samples[1:, :, 1] = b[:, None, None]
    labels = torch.zeros(steps, *ROI)
    labels[0, 10:20, 12:18] = 3
    mean = samples.mean(dim=1)
    d = {"pred": {"ddf": mean, "z": torch.zeros(LATENT, steps - 1), "ddf_samples": samples},
         "ed_label": labels, "ed_label_mask": torch.tensor([True, False, False])}
    out = ProbabilisticPredictionSplitd()(d)
    assert "ddf_samples" not in out and out["ddf_std"].shape == (steps, *ROI)
    expected = float(np.sqrt(a.var() + b.var()))  # K - 1 in the denominator, components summed
    assert not out["ddf_std"][0].any() and torch.allclose(out["ddf_std"][1:], torch.tensor(expected))
    assert out["seg_samples"].shape == (steps, k, *ROI)
    for j in range(k):
        assert torch.equal(out["seg_samples"][:, j], ProbabilisticPredictionSplitd._propagate(labels[0], samples[:, j]))
    assert torch.equal(out["seg_samples"][2, 3], torch.roll(labels[0], (-5, 1), dims=(0, 1)))  # pulled by (5, -1)
    assert torch.equal(out["seg"], ProbabilisticPredictionSplitd._propagate(labels[0], mean))
    unlabelled = ProbabilisticPredictionSplitd()({"pred": d["pred"]})
    assert unlabelled["seg_samples"].shape == (steps, k, *ROI) and not unlabelled["seg_samples"].any()
    assert saver_keys("track", num_samples=4)[:6] == ["ddf", "z", "seg", "ed_labelled", "ddf_std", "seg_samples"]
    assert saver_keys("track") == saver_keys("track", num_samples=1)
    assert "ddf_std" not in saver_keys("simulate", num_samples=4)


def test_writer_adds_the_volume_spread(tmp_path):
    affine = np.diag([1.5, 1.25, 8.0, 1.0])
    steps, k, size = 3, 4, (12, 10)
    lv_pixels = np.array([[20, 20, 20, 20], [12, 16, 14, 10], [8, 9, 10, 13]])  # (T, K) per slice
    slices = []
    for z in range(2):
        samples = torch.zeros(steps, k, *size)
        for t in range(steps):
            for j in range(k):
                samples[t, j].view(-1)[: lv_pixels[t, j]] = 3
                samples[t, j, -1, : 2 + j] = 1  # some RV
        slices.append({"ddf": torch.zeros(steps, 2, *size), "z": torch.zeros(LATENT, steps - 1),
                       "seg": samples[:, 0].clone(), "ed_labelled": True, "ddf_std": torch.full((steps, *size), 0.5),
                       "seg_samples": samples.to(torch.uint8), "input_ed": 0, "spacing_known": True,
                       "meta": {"original_affine": affine, "filename_or_obj": "c.nii"}})
    result = ProbabilisticResultWriter(tmp_path, "track", plot=False)("subj", slices)
    std, std_affine = _load(Path(result["files"]["ddf_std"]))
    assert std.shape == (*size, 2, steps) and std.dtype == np.float32 and np.allclose(std_affine, affine)
    assert np.allclose(std, 0.5)
    voxel_ml = 1.5 * 1.25 * 8.0 / 1000
    expected = np.std(2 * lv_pixels * voxel_ml, axis=1, ddof=1)
    text = Path(result["files"]["volumes"]).read_text().splitlines()
    header = dict(line[2:].split(": ", 1) for line in text if line.startswith("# "))
    rows = [line for line in text if not line.startswith("#")]
    assert rows[0] == "frame,lv_ml,rv_ml,myo_ml,lv_ml_std,rv_ml_std,myo_ml_std"
    table = np.loadtxt(rows, delimiter=",", skiprows=1)
    assert table.shape == (steps, 7) and np.allclose(table[:, 4], expected, atol=1e-4)
    assert np.allclose(table[:, 5], np.std(2 * (2 + np.arange(k)) * voxel_ml, ddof=1), atol=1e-4)
    assert np.allclose(table[:, 6], 0) and np.allclose(table[:, 1], 2 * lv_pixels[:, 0] * voxel_ml, atol=1e-4)
    assert header["num_samples"].startswith("4 ") and header["lv_edv_ml"] == f"{40 * voxel_ml:.4f}"
    ef = 1 - lv_pixels.min(axis=0) / lv_pixels[0]
    assert float(header["lv_ef_std"]) == pytest.approx(np.std(ef, ddof=1), abs=1e-6)
    assert np.allclose(result["summary"]["lv_ml_std"], expected)


def test_track_with_samples_writes_the_spread_on_the_input_grid(tmp_path, acdc_patient, meta_file):
    model = _with_posterior_sigma(_code_driven_model(), 1.0)
    ckpt = tmp_path / "model_sigma.pt"
    torch.save(model.state_dict(), str(ckpt))
    mean_folder = _run(tmp_path / "one", acdc_patient, ckpt, meta_file) / "patient001"
    folder = _run(tmp_path / "four", acdc_patient, ckpt, meta_file, num_samples=4) / "patient001"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in mean_folder.iterdir()] + ["patient001_ddf_std.nii.gz"])
    for name in ("patient001_ddf_ed_to_t.nii.gz", "patient001_seg.nii.gz"):  # the posterior mean's, unchanged
        assert np.array_equal(_load(folder / name)[0], _load(mean_folder / name)[0])
    std, affine = _load(folder / "patient001_ddf_std.nii.gz")
    assert std.shape == (24, 26, 2, 5) and std.dtype == np.float32 and np.allclose(affine, _load(
        acdc_patient / "patient001_4d.nii.gz")[1])
    assert not std[:, :, :, 2].any() and (std[:, :, :, [0, 1, 3, 4]] > 0).all()  # ED is file frame 2
    mean_csv = (mean_folder / "patient001_volumes.csv").read_text().splitlines()
    text = (folder / "patient001_volumes.csv").read_text().splitlines()
    assert "lv_ml_std" not in "".join(mean_csv) and not any(line.startswith("# num_samples") for line in mean_csv)
    rows = [line for line in text if not line.startswith("#")]
    assert rows[0].split(",")[4:] == ["lv_ml_std", "rv_ml_std", "myo_ml_std"]
    table = np.loadtxt(rows, delimiter=",", skiprows=1)
    mean_table = np.loadtxt([line for line in mean_csv if not line.startswith("#")], delimiter=",", skiprows=1)
    assert np.array_equal(table[:, :4], mean_table) and table[2, 4] == 0 and table[:, 4].max() > 0
    # a decoder that ignores the code (constant velocity): every draw is the mean, no spread anywhere
    still = _run(tmp_path / "shift", acdc_patient, _checkpoint(tmp_path, "shift"), meta_file, num_samples=3)
    assert not _load(still / "patient001" / "patient001_ddf_std.nii.gz")[0].any()
    still_text = (still / "patient001" / "patient001_volumes.csv").read_text().splitlines()
    assert not np.loadtxt([line for line in still_text if not line.startswith("#")], delimiter=",",
                          skiprows=1)[:, 4:].any()
