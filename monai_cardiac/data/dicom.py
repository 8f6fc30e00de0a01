"""Reading a DICOM cine series (one folder, one or more short-axis slices, every frame of each) into a cine.

Files are grouped into slices by their position along the slice normal (from ``ImagePositionPatient`` and
``ImageOrientationPatient``) and ordered in time by ``TriggerTime`` (``InstanceNumber`` where trigger
times are absent). ``pydicom`` is an optional dependency (``pip install monai_cardiac[dicom]``); compressed pixel data
that pydicom's installed handlers cannot decode (e.g. lossless JPEG) is decoded with SimpleITK's GDCM reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.utils import optional_import

from monai_cardiac.data.datalist import expand_slices
from monai_cardiac.data.nifti import Cine, check_finite, file_to_array_affine
from monai_cardiac.errors import CineDataError

pydicom, has_pydicom = optional_import("pydicom")
sitk, has_sitk = optional_import("SimpleITK")

__all__ = ["dicom_datalist", "read_dicom_cine"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _read_header(path: Path):
    """Read one file's header, turning failures into a CineDataError naming the file."""
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as err:  # pydicom raises several unrelated types for corrupt files
        raise CineDataError(f"cannot read DICOM header: {err}", path) from err


def _pixels(path: Path) -> np.ndarray:
    """Read one file's pixels as float32, rescaled by RescaleSlope / RescaleIntercept.

    pydicom decodes uncompressed pixel data and the compressions its installed handlers know (RLE; JPEG 2000 and
    8-bit JPEG through Pillow). Compressed pixel data it cannot decode, e.g. the lossless JPEG (process 14) of many
    clinical MR exports, is decoded by SimpleITK's GDCM reader, which applies the rescaling itself.
    """
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as err:  # pydicom raises several unrelated types for corrupt files
        raise CineDataError(f"cannot read DICOM pixel data (truncated or corrupt?): {err}", path) from err
    try:
        pixels = ds.pixel_array.astype(np.float32)
    except Exception as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed:
            return _gdcm_pixels(path, f"{syntax.name}: {err}")
        raise CineDataError(f"cannot read DICOM pixel data (truncated or corrupt?): {err}", path) from err
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    return pixels * slope + intercept


def _gdcm_pixels(path: Path, pydicom_problem: str) -> np.ndarray:
    """Decode one file's compressed pixel data with SimpleITK (GDCM) as float32 ``(rows, columns)``, rescaled."""
    if not has_sitk:
        raise CineDataError(f"pydicom cannot decode this compressed pixel data ({pydicom_problem}) and SimpleITK, "
                            "which can, is not installed", path)
    try:
        image = sitk.ReadImage(str(path), imageIO="GDCMImageIO")
    except RuntimeError as err:
        raise CineDataError(f"cannot decode the compressed pixel data with pydicom ({pydicom_problem}) nor with "
                            f"SimpleITK / GDCM ({str(err).strip().splitlines()[-1]})", path) from err
    pixels = sitk.GetArrayFromImage(image).astype(np.float32)
    if pixels.ndim != 3 or pixels.shape[0] != 1 or image.GetNumberOfComponentsPerPixel() != 1:
        raise CineDataError(f"expected one grey-level frame per file, SimpleITK read shape {pixels.shape} with "
                            f"{image.GetNumberOfComponentsPerPixel()} components", path)
    return pixels[0]


def read_dicom_cine(folder: str | Path, position_tolerance: float = 0.01) -> Cine:
    """Read every DICOM file of a cine series folder into a :class:`Cine` ``(T, Z, H, W)``.

    ``H`` runs along image rows, ``W`` along columns, ``Z`` along the slice normal (row cosine x column
    cosine) in increasing position, ``T`` in increasing trigger time. The affine is converted to RAS.

    Args:
        folder: folder holding the series' files (files that are not DICOM are an error; no recursion).
        position_tolerance: positions along the normal closer than this (mm) belong to one slice.

    Returns:
        the cine as float32 with its affines.

    Raises:
        CineDataError: missing pydicom, empty folder, unreadable file, missing geometry tags, files of different
            orientation or size, slices with different numbers of frames (missing frames), duplicated trigger
            times, fewer than 2 frames, NaN or inf.
    """
    folder = Path(folder)
    if not has_pydicom:
        raise CineDataError("reading DICOM needs pydicom: pip install 'monai_cardiac[dicom]'", folder)
    if not folder.is_dir():
        raise CineDataError("DICOM series folder not found", folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if not files:
        raise CineDataError("no files in the DICOM series folder", folder)

    records: list[dict] = []
    for path in files:
        ds = _read_header(path)
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
            if tag not in ds:
                raise CineDataError(f"missing DICOM tag {tag}", path)
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        time = float(ds.TriggerTime) if "TriggerTime" in ds else float(getattr(ds, "InstanceNumber", 0))
        records.append(
            {
                "path": path,
                "position": np.asarray(ds.ImagePositionPatient, dtype=np.float64),
                "orientation": orientation,
                "spacing": np.asarray(ds.PixelSpacing, dtype=np.float64),
                "size": (int(ds.Rows), int(ds.Columns)),
                "time": time,
            }
        )

    first = records[0]
    for rec in records[1:]:
        if not np.allclose(rec["orientation"], first["orientation"], atol=1e-4) or rec["size"] != first["size"]:
            raise CineDataError(
                f"orientation or image size differs from {first['path'].name}: not one cine series", rec["path"]
            )
    row_cos, col_cos = first["orientation"][:3], first["orientation"][3:]
    normal = np.cross(row_cos, col_cos)

    slices: list[list[dict]] = []
    for rec in sorted(records, key=lambda r: float(r["position"] @ normal)):
        pos = float(rec["position"] @ normal)
        if slices and abs(pos - float(slices[-1][0]["position"] @ normal)) < position_tolerance:
            slices[-1].append(rec)
        else:
            slices.append([rec])
    counts = [len(s) for s in slices]
    if len(set(counts)) != 1:
        positions = [round(float(s[0]["position"] @ normal), 2) for s in slices]
        raise CineDataError(
            f"missing frames: slices at {positions} mm along the normal have {counts} frames", folder
        )
    if counts[0] < 2:
        raise CineDataError(f"a cine needs at least 2 frames per slice, found {counts[0]}", folder)
    for s in slices:
        s.sort(key=lambda r: r["time"])
        times = [r["time"] for r in s]
        if len(set(times)) != len(times):
            raise CineDataError("two files of one slice share a trigger time", s[0]["path"])

    data = np.stack([np.stack([_pixels(r["path"]) for r in s]) for s in slices], axis=1)  # (T, Z, H, W)
    check_finite(data, folder)

    d_row, d_col = first["spacing"]  # between rows (along the column cosine), between columns
    if len(slices) > 1:
        steps = np.diff([float(s[0]["position"] @ normal) for s in slices])
        d_slice = float(np.mean(steps))
    else:
        d_slice = float(getattr(_read_header(first["path"]), "SliceThickness", 1.0) or 1.0)
    file_affine = np.eye(4)
    file_affine[:3, 0] = col_cos * d_row  # i = H = row index
    file_affine[:3, 1] = row_cos * d_col  # j = W = column index
    file_affine[:3, 2] = normal * d_slice  # k = Z
    file_affine[:3, 3] = slices[0][0]["position"]
    file_affine = _LPS_TO_RAS @ file_affine
    return Cine(
        data=np.ascontiguousarray(data, dtype=np.float32),
        affine=file_to_array_affine(file_affine),
        file_affine=file_affine,
        source=str(folder),
    )


def dicom_datalist(series_folders: Sequence[str | Path], per: str = "slice") -> list[dict]:
    """Build a MONAI data list from DICOM cine series folders (one folder per series; no labels).

    Args:
        series_folders: the series folders; the folder name is the subject id.
        per: ``"slice"`` or ``"volume"``.

    Returns:
        the data list (docs/conventions.md); ED is taken as frame 0 (cines are triggered on the R wave) and
        ``es`` is absent (unknown without labels).

    Raises:
        CineDataError: any problem :func:`read_dicom_cine` finds.
        ValueError: ``per`` not one of "slice", "volume".
    """
    if per not in ("slice", "volume"):
        raise ValueError(f"per must be 'slice' or 'volume', got {per!r}")
    datalist: list[dict] = []
    for folder in map(Path, series_folders):
        num_frames, num_slices = read_dicom_cine(folder).data.shape[:2]
        entry = {
            "image": str(folder),
            "label": [],
            "label_frames": [],
            "subject": folder.name,
            "group": "",
            "num_frames": num_frames,
            "ed": 0,
            "spacing_known": True,
        }
        datalist.extend(expand_slices(entry, num_slices) if per == "slice" else [entry])
    return datalist
