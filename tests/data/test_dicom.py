from __future__ import annotations

import numpy as np
import pytest

from monai_cardiac.data import dicom_datalist, read_dicom_cine
from monai_cardiac.errors import CineDataError

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid  # noqa: E402

ROW_COS = np.array([0.0, 1.0, 0.0])
COL_COS = np.array([0.6, 0.0, -0.8])  # oblique
NORMAL = np.cross(ROW_COS, COL_COS)


def _write_series(folder, num_slices=3, num_frames=4, rows=6, cols=5, spacing=(1.4, 1.6), gap=8.0, drop=None):
    """Files named in shuffled order; pixel value = 100 * z + 10 * t + small ramp."""
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(0).permutation(num_slices * num_frames)
    origin = np.array([10.0, -20.0, 30.0])
    for n, idx in enumerate(order):
        z, t = divmod(int(idx), num_frames)
        if drop == (z, t):
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = list(spacing)
        ds.ImageOrientationPatient = [*ROW_COS, *COL_COS]
        ds.ImagePositionPatient = list(origin + NORMAL * gap * z)
        ds.TriggerTime = 35.5 * t
        ds.InstanceNumber = n + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        pixels = (100 * z + 10 * t + np.arange(rows * cols).reshape(rows, cols) % 3).astype(np.uint16)
        ds.PixelData = pixels.tobytes()
        ds.save_as(str(folder / f"im{n:03d}.dcm"), enforce_file_format=True)
    return folder


def test_order_geometry_and_datalist(tmp_path):
    folder = _write_series(tmp_path / "series1")
    cine = read_dicom_cine(folder)
    assert cine.data.shape == (4, 3, 6, 5)
    assert cine.data[2, 1, 0, 0] == 100 * 1 + 10 * 2
    np.testing.assert_allclose(cine.spacing, [8.0, 1.4, 1.6])
    # voxel (z, h, w) = (1, 2, 3) sits at IPP_z + h * 1.4 * col_cos + w * 1.6 * row_cos, in RAS (x, y negated)
    lps = np.array([10.0, -20.0, 30.0]) + NORMAL * 8.0 + 2 * 1.4 * COL_COS + 3 * 1.6 * ROW_COS
    np.testing.assert_allclose((cine.affine @ [1, 2, 3, 1])[:3], lps * [-1, -1, 1], atol=1e-6)
    datalist = dicom_datalist([folder], per="slice")
    assert len(datalist) == 3 and datalist[2]["slice"] == 2 and datalist[0]["num_frames"] == 4
    assert datalist[0]["label"] == [] and "es" not in datalist[0]


def test_missing_frame_and_corrupt_file(tmp_path):
    folder = _write_series(tmp_path / "s", drop=(1, 2))
    with pytest.raises(CineDataError, match=r"missing frames: slices at .* have \[4, 3, 4\] frames"):
        read_dicom_cine(folder)
    folder = _write_series(tmp_path / "c")
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(CineDataError, match=victim.name):
        read_dicom_cine(folder)
    with pytest.raises(CineDataError, match="DICOM series folder not found"):
        read_dicom_cine(tmp_path / "absent")


def _compress_lossless_jpeg(folder, slope=2.0, intercept=-5.0):
    """Re-encode every file's pixels as lossless JPEG (process 14, which pydicom cannot decode without extra
    packages) with SimpleITK / GDCM, keeping the header, and add a rescale slope and intercept."""
    sitk = pytest.importorskip("SimpleITK")
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(str(path))
        writer = sitk.ImageFileWriter()
        writer.SetImageIO("GDCMImageIO")
        writer.SetFileName(str(path.with_suffix(".jpeg.dcm")))
        writer.SetUseCompression(True)
        writer.SetCompressor("JPEG")
        writer.Execute(sitk.GetImageFromArray(ds.pixel_array[None]))
        compressed = pydicom.dcmread(str(path.with_suffix(".jpeg.dcm")))
        path.with_suffix(".jpeg.dcm").unlink()
        ds["PixelData"] = compressed["PixelData"]
        ds.file_meta.TransferSyntaxUID = compressed.file_meta.TransferSyntaxUID
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.save_as(str(path), enforce_file_format=True)
    return folder


def test_compressed_series_pydicom_cannot_decode_is_read_through_simpleitk(tmp_path):
    folder = _compress_lossless_jpeg(_write_series(tmp_path / "jpeg"))
    first = pydicom.dcmread(str(sorted(folder.iterdir())[0]))
    assert "Lossless" in first.file_meta.TransferSyntaxUID.name
    with pytest.raises(Exception):  # the premise: pydicom alone cannot decode these files here
        first.pixel_array
    plain = read_dicom_cine(_write_series(tmp_path / "plain"))
    cine = read_dicom_cine(folder)
    np.testing.assert_array_equal(cine.data, 2.0 * plain.data - 5.0)  # lossless, rescaled once
    np.testing.assert_allclose(cine.affine, plain.affine)
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-40])  # a truncated compressed stream
    with pytest.raises(CineDataError, match=rf"{victim.name}.*(SimpleITK|pixel data)"):
        read_dicom_cine(folder)
