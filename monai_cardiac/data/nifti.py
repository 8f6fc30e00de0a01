"""Reading cines, label maps and displacement fields from NIfTI files, with the checks bad files need.

Arrays come back in the project's axis order (docs/conventions.md): a cine ``(T, Z, H, W)`` where ``H, W, Z,
T`` are the file's voxel axes ``i, j, k`` and time. The affine returned maps the array's spatial indices
``(z, h, w)`` to world mm.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

from monai_cardiac.errors import CineDataError

__all__ = [
    "LABEL_IDS",
    "Cine",
    "NUM_CLASSES",
    "STRUCTURES",
    "check_finite",
    "check_label_values",
    "file_to_array_affine",
    "load_image",
    "nifti_image",
    "read_nifti_cine",
    "read_nifti_labels",
    "read_nifti_ddf",
    "read_nifti_dense_labels",
    "spacing_of",
]

NUM_CLASSES = 4
"""Label ids 0 BG, 1 RV, 2 Myo, 3 LV (ACDC)."""

STRUCTURES = ("RV", "Myo", "LV")
"""Names of the foreground label ids 1, 2, 3, in id order."""

LABEL_IDS = {name: i + 1 for i, name in enumerate(STRUCTURES)}
"""Label id of each foreground structure: ``{"RV": 1, "Myo": 2, "LV": 3}``."""


@dataclass
class Cine:
    """A cine held in the project's axis order.

    Attributes:
        data: float32 array ``(T, Z, H, W)``.
        affine: 4 x 4 array mapping ``(z, h, w, 1)`` to world mm.
        file_affine: 4 x 4 array of the source in the file's own ``(i, j, k)`` order (RAS mm).
        source: the path read from.
    """

    data: np.ndarray
    affine: np.ndarray
    file_affine: np.ndarray
    source: str

    @property
    def spacing(self) -> np.ndarray:
        """Spacing in mm along ``(Z, H, W)``."""
        return spacing_of(self.affine)


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel size of each spatial axis of a 4 x 4 affine (the norms of its first three columns), in mm."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def file_to_array_affine(file_affine: np.ndarray) -> np.ndarray:
    """Reorder a file affine's columns from ``(i, j, k)`` to the array order ``(z, h, w)`` = ``(k, i, j)``.

    Args:
        file_affine: 4 x 4 affine of the NIfTI or DICOM volume, voxel ``(i, j, k)`` to world.

    Returns:
        4 x 4 affine mapping the array's spatial indices ``(z, h, w)`` to the same world points.
    """
    affine = np.asarray(file_affine, dtype=np.float64)
    return affine[:, [2, 0, 1, 3]]


def nifti_image(data: np.ndarray, file_affine: np.ndarray) -> nib.Nifti1Image:
    """The project's NIfTI image of ``data`` in file order: ``(X, Y, Z)``, ``(X, Y, Z, T)`` or ``(X, Y, Z, T, 2)``.

    The affine is stored as qform and sform, the zooms are the affine's voxel sizes (1 for time and
    components), units mm, and 5D displacement files carry the "vector" intent. The readers of this module
    read back what it writes.

    Args:
        data: array in the file's axis order.
        file_affine: 4 x 4 ``(i, j, k)`` affine, mm.

    Returns:
        the image, ready for ``nibabel.save``.
    """
    img = nib.Nifti1Image(data, file_affine)
    spatial = spacing_of(file_affine)
    img.header.set_zooms(tuple(spatial) + (1.0,) * (data.ndim - 3))
    img.header.set_xyzt_units("mm")
    img.set_qform(file_affine, code=1)
    img.set_sform(file_affine, code=1)
    if data.ndim == 5:
        img.header.set_intent("vector")
    return img


def load_image(path: str | Path) -> SpatialImage:
    """``nib.load``, typed as the image with voxels, affine and shape that the NIfTI files read here give.

    Args:
        path: the image file.

    Returns:
        the (lazily loaded) image.
    """
    return cast(SpatialImage, nib.load(str(path)))


def _load(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file's voxels and affine, turning every reading failure into a CineDataError."""
    path = Path(path)
    if not path.is_file():
        raise CineDataError("file not found", path)
    try:
        img = load_image(path)
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as err:
        raise CineDataError(f"cannot read NIfTI (truncated or corrupt?): {err}", path) from err
    return data, np.asarray(img.affine, dtype=np.float64)


def check_finite(data: np.ndarray, source: object) -> None:
    """Raise a CineDataError naming ``source`` if ``data`` holds NaN or infinite voxels."""
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            n_nan = int(np.isnan(data).sum())
            n_inf = int(data.size - finite.sum() - n_nan)
            raise CineDataError(f"image holds non-finite voxels ({n_nan} NaN, {n_inf} inf)", source)


def check_label_values(labels: np.ndarray, source: object, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Check that a label array holds only integer class ids in ``[0, num_classes)``.

    Args:
        labels: label array of any shape.
        source: file or entry named in the error.
        num_classes: number of classes (4: BG, RV, Myo, LV).

    Returns:
        the labels as uint8.

    Raises:
        CineDataError: non-integer values, or values outside the classes.
    """
    check_finite(labels, source)
    rounded = np.rint(labels)
    if not np.array_equal(rounded, labels):
        raise CineDataError("label map holds non-integer values", source)
    bad = np.setdiff1d(np.unique(rounded), np.arange(num_classes)).astype(np.int64)
    if bad.size:
        raise CineDataError(
            f"label values outside the classes {list(range(num_classes))}: found {bad.tolist()}", source
        )
    return rounded.astype(np.uint8)


def read_nifti_cine(path: str | Path) -> Cine:
    """Read a 4D cine NIfTI ``(X, Y, Z, T)`` into a :class:`Cine` of shape ``(T, Z, H, W)``.

    Args:
        path: the ``*_4d.nii.gz`` (ACDC) or ``sa.nii.gz`` (UK Biobank) file.

    Returns:
        the cine as float32 with its affines.

    Raises:
        CineDataError: missing, truncated or corrupt file; not 4D; fewer than 2 frames; NaN or inf voxels.
    """
    data, affine = _load(path)
    if data.ndim == 5 and data.shape[4] == 1:
        data = data[..., 0]
    if data.ndim != 4:
        raise CineDataError(
            f"expected a 4D cine (X, Y, Z, T) but the image is {data.ndim}D with shape {tuple(data.shape)}", path
        )
    if data.shape[3] < 2:
        raise CineDataError(f"a cine needs at least 2 frames, found {data.shape[3]}", path)
    data = np.asarray(data, dtype=np.float32)
    check_finite(data, path)
    return Cine(
        data=np.ascontiguousarray(data.transpose(3, 2, 0, 1)),
        affine=file_to_array_affine(affine),
        file_affine=affine,
        source=str(path),
    )


def _check_geometry(affine: np.ndarray, shape: tuple[int, ...], cine: Cine, source: object) -> None:
    """Raise if a file's spatial shape or affine does not match the cine's."""
    expected = cine.data.shape[1:]
    if tuple(shape) != tuple(expected):
        raise CineDataError(
            f"shape (Z, H, W) {tuple(shape)} does not match the cine's {tuple(expected)} ({cine.source})", source
        )
    got, want = spacing_of(affine), spacing_of(cine.file_affine)
    if not np.allclose(got, want, rtol=1e-3, atol=1e-4):
        raise CineDataError(
            f"spacing {np.round(got, 4).tolist()} mm does not match the cine's "
            f"{np.round(want, 4).tolist()} mm ({cine.source})",
            source,
        )
    if not np.allclose(affine, cine.file_affine, rtol=1e-3, atol=1e-2):
        raise CineDataError(f"affine does not match the cine's ({cine.source})", source)


def read_nifti_labels(path: str | Path, cine: Cine, label_map: np.ndarray | None = None) -> np.ndarray:
    """Read a 3D label map ``(X, Y, Z)`` of one frame of ``cine``, checked against it.

    Args:
        path: label file (e.g. ``patient001_frame01_gt.nii.gz``).
        cine: the cine the labels belong to; shape and geometry must match it.
        label_map: optional lookup ``file value -> project id`` (e.g. UK Biobank to ACDC ids), applied
            after the values are checked to be ids of the file's own scheme.

    Returns:
        uint8 array ``(Z, H, W)`` with ids 0 BG, 1 RV, 2 Myo, 3 LV.

    Raises:
        CineDataError: unreadable file, wrong dimensions, shape or spacing not matching the cine, non-integer
            values or values outside the classes.
    """
    data, affine = _load(path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise CineDataError(f"expected a 3D label map (X, Y, Z), got shape {tuple(data.shape)}", path)
    labels = check_label_values(np.asarray(data), path)
    labels = labels.transpose(2, 0, 1)
    _check_geometry(affine, labels.shape, cine, path)
    if label_map is not None:
        labels = np.asarray(label_map, dtype=np.uint8)[labels]
    return np.ascontiguousarray(labels)


def read_nifti_dense_labels(path: str | Path, cine: Cine) -> np.ndarray:
    """Read a 4D label file ``(X, Y, Z, T)`` holding the labels of every frame (the phantom writes these).

    Args:
        path: e.g. ``patient001_4d_gt.nii.gz``.
        cine: the cine the labels belong to.

    Returns:
        uint8 array ``(T, Z, H, W)``.

    Raises:
        CineDataError: unreadable file, wrong dimensions or frame count, geometry mismatch, bad values.
    """
    data, affine = _load(path)
    if data.ndim != 4 or data.shape[3] != cine.data.shape[0]:
        raise CineDataError(
            f"expected labels (X, Y, Z, T={cine.data.shape[0]}) for every frame, got shape {tuple(data.shape)}", path
        )
    labels = check_label_values(np.asarray(data), path).transpose(3, 2, 0, 1)
    _check_geometry(affine, labels.shape[1:], cine, path)
    return np.ascontiguousarray(labels)


def read_nifti_ddf(path: str | Path, cine: Cine) -> np.ndarray:
    """Read an in-plane displacement sequence stored as ``(X, Y, Z, T, 2)`` (components along ``H`` and ``W``).

    Args:
        path: e.g. the phantom's ``patient001_ddf.nii.gz`` (true ``u_{ED->t}`` in voxels).
        cine: the cine the displacements belong to.

    Returns:
        float32 array ``(T, 3, Z, H, W)``: components along ``(Z, H, W)`` in voxels, the ``Z`` one zero.

    Raises:
        CineDataError: unreadable file, wrong shape, geometry mismatch, non-finite values.
    """
    data, affine = _load(path)
    t = cine.data.shape[0]
    if data.ndim != 5 or data.shape[3] != t or data.shape[4] != 2:
        raise CineDataError(f"expected an in-plane ddf (X, Y, Z, T={t}, 2), got shape {tuple(data.shape)}", path)
    data = np.asarray(data, dtype=np.float32)
    check_finite(data, path)
    inplane = data.transpose(3, 4, 2, 0, 1)  # (T, 2, Z, H, W)
    _check_geometry(affine, inplane.shape[2:], cine, path)
    zeros = np.zeros_like(inplane[:, :1])
    return np.ascontiguousarray(np.concatenate([zeros, inplane], axis=1))
