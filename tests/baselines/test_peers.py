"""Each peer wrapper on a tiny phantom slice: shapes, the project's displacement convention, and the true motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_cardiac.baselines import (
    PEERS,
    AntsSyNRegistration,
    ElastixFFDRegistration,
    ElastixGroupwiseRegistration,
    IdentityRegistration,
    PeerUnavailableError,
    SequenceRegistration,
    VoxelMorphRegistration,
    absent_peers,
    build_voxelmorph,
    train_voxelmorph,
)
from monai_cardiac.displacement import warp_image
from monai_cardiac.errors import CineDataError

SPACING = (3.0, 3.0)


def needs(cls: type[SequenceRegistration]):
    return pytest.mark.skipif(
        not cls.available(),
        reason=f"peer '{cls.name}' needs {', '.join(cls.missing())}: pip install \"monai_cardiac[peers]\" "
               "(.ci/peers.sh runs these tests in such an environment)",
    )


def check_recovers_motion(ddf: np.ndarray, phantom: dict, heart_epe, ratio: float = 0.4) -> float:
    """The field has the convention's shape, zero ED field, and an end-point error well below no motion."""
    assert ddf.shape == (6, 2, 48, 48) and ddf.dtype == np.float32
    assert np.all(ddf[0] == 0.0)
    zero = heart_epe(np.zeros_like(ddf))
    error = heart_epe(ddf)
    assert zero > 1.0  # the phantom does move: about 1.4 voxels on average in the heart
    assert error < ratio * zero, (error, zero)
    return error


def test_identity_is_the_zero_motion_floor(phantom_slice, heart_epe):
    ddf = IdentityRegistration().register_sequence(phantom_slice["image"], SPACING)
    assert ddf.shape == (6, 2, 48, 48) and not ddf.any()
    assert heart_epe(ddf) == pytest.approx(heart_epe(np.zeros_like(phantom_slice["ddf"])))
    fields = IdentityRegistration().motion_fields(torch.as_tensor(phantom_slice["image"]))
    assert fields["u_ed_to_t"].shape == (5, 2, 48, 48) and fields["u_t_to_ed"] is None and fields["seconds"] >= 0


def test_bad_inputs_raise_cine_data_errors():
    peer = IdentityRegistration()
    with pytest.raises(CineDataError, match="identity.register_sequence"):
        peer.register_sequence(np.zeros((1, 32, 32)))
    with pytest.raises(CineDataError, match="NaN"):
        peer.register_sequence(np.full((3, 32, 32), np.nan))
    with pytest.raises(CineDataError, match="spacing"):
        peer.register_sequence(np.zeros((3, 32, 32)), spacing=(1.0, -1.0))


def test_a_missing_package_is_named_and_listed():
    class Needy(IdentityRegistration):
        name = "needy"
        requires = ("monai-cardiac-no-such-distribution",)

    assert not Needy.available() and Needy.missing() == ["monai-cardiac-no-such-distribution"]
    with pytest.raises(PeerUnavailableError, match=r"needy.*monai-cardiac-no-such-distribution.*\[peers\]"):
        Needy().register_sequence(np.zeros((3, 32, 32)))
    absent = absent_peers()
    assert set(absent) <= {"ffd", "groupwise", "syn"}
    for name, missing in absent.items():
        assert missing == PEERS[name].missing() and missing


def test_parameters_are_written_down():
    params = ElastixFFDRegistration(grid_spacing=8, metric="AdvancedNormalizedCorrelation").parameters()
    assert params["grid_spacing"] == 8.0 and params["metric"] == "AdvancedNormalizedCorrelation"
    assert AntsSyNRegistration(iterations=(10, 5)).parameters()["iterations"] == [10, 5]


@needs(ElastixFFDRegistration)
def test_elastix_ffd_recovers_the_phantom_motion(phantom_slice, heart_epe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ddf = ElastixFFDRegistration(grid_spacing=4).register_sequence(phantom_slice["image"], SPACING)
    check_recovers_motion(ddf, phantom_slice, heart_epe)
    assert list(tmp_path.iterdir()) == []  # transformix's field file does not land in the working directory


@needs(ElastixFFDRegistration)
def test_elastix_ffd_fields_are_in_voxels_whatever_the_spacing(phantom_slice):
    # the same pixels with another (anisotropic) spacing: the field in voxels barely changes
    frames = phantom_slice["image"][:3]
    a = ElastixFFDRegistration(grid_spacing=4).register_sequence(frames, SPACING)
    b = ElastixFFDRegistration(grid_spacing=4).register_sequence(frames, (3.0, 1.5))
    assert np.abs(a - b).mean() < 0.25 * np.abs(a).mean()


@needs(ElastixGroupwiseRegistration)
def test_elastix_groupwise_recovers_the_phantom_motion(phantom_slice, heart_epe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ddf = ElastixGroupwiseRegistration(grid_spacing=4).register_sequence(phantom_slice["image"], SPACING)
    check_recovers_motion(ddf, phantom_slice, heart_epe)
    assert list(tmp_path.iterdir()) == []


@needs(AntsSyNRegistration)
def test_ants_syn_recovers_the_phantom_motion(phantom_slice, heart_epe):
    ddf = AntsSyNRegistration().register_sequence(phantom_slice["image"], SPACING)
    check_recovers_motion(ddf, phantom_slice, heart_epe)
    # pull convention: the ED frame warped by u_{ED->ES} looks like the ES frame
    es = phantom_slice["es"]
    image = torch.as_tensor(phantom_slice["image"])
    warped = warp_image(image[None, None, 0], torch.as_tensor(ddf[es])[None])[0, 0]
    assert (warped - image[es]).abs().mean() < 0.6 * (image[0] - image[es]).abs().mean()


def test_voxelmorph_trained_on_the_phantom_recovers_its_motion(phantom_slice, heart_epe, tmp_path):
    cine = torch.as_tensor(phantom_slice["image"])
    result = train_voxelmorph([cine] * 8, tmp_path / "vxm.pt", minutes=5.0, max_epochs=150, batch_size=8,
                              learning_rate=3e-3, flip=False, log=lambda line: None)
    assert result["epochs"] == 150 and (tmp_path / "vxm.pt").is_file() and (tmp_path / "vxm_last.pt").is_file()
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    peer = VoxelMorphRegistration(tmp_path / "vxm.pt")
    check_recovers_motion(peer.register_sequence(cine), phantom_slice, heart_epe, ratio=0.5)
    assert peer.parameters()["checkpoint"] == str(tmp_path / "vxm.pt")


def test_voxelmorph_wrapper_pads_odd_sizes_and_batches_frames():
    torch.manual_seed(0)
    network = build_voxelmorph()
    cine = torch.rand(5, 37, 45)
    ddf = VoxelMorphRegistration(network, batch_size=3).register_sequence(cine)
    assert ddf.shape == (5, 2, 37, 45) and np.all(ddf[0] == 0)
    with pytest.raises(FileNotFoundError, match="no VoxelMorph checkpoint"):
        VoxelMorphRegistration("/nonexistent/vxm.pt")
