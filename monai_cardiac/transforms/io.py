"""Loading cines, sparse labels and true displacements from data-list entries into MONAI tensors."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from monai_cardiac.data.dicom import read_dicom_cine
from monai_cardiac.data.nifti import (
    Cine,
    read_nifti_cine,
    read_nifti_ddf,
    read_nifti_dense_labels,
    read_nifti_labels,
)
from monai_cardiac.errors import CineDataError

__all__ = ["LoadCine", "LoadCined", "read_cine"]


def read_cine(path: str | Path) -> Cine:
    """Read a cine from a 4D NIfTI file or a DICOM series folder (dispatching on which it is)."""
    return read_dicom_cine(path) if Path(path).is_dir() else read_nifti_cine(path)


def _slice_affine(cine: Cine, z: int) -> np.ndarray:
    """In-plane affine of slice ``z`` in the slice's own frame: ``diag(sH, sW, sZ)``, offset ``z * sZ``."""
    s_z, s_h, s_w = cine.spacing
    affine = np.diag([s_h, s_w, s_z, 1.0])
    affine[2, 3] = z * s_z
    return affine


class LoadCine(Transform):
    """Load a cine into a MetaTensor: ``(T, Z, H, W)`` for the stack, or ``(T, H, W)`` for one slice.

    Geometry follows docs/conventions.md: a stack's affine maps ``(z, h, w)`` to world mm; a slice's affine
    is its in-plane frame ``diag(sH, sW, sZ)``; ``meta["original_affine"]`` is the file's ``(i, j, k)``
    affine (RAS) and ``meta["spatial_shape"]`` the file's ``(X, Y, Z)`` size.

    Args:
        dtype: dtype of the image data.
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype

    def __call__(self, path: str | Path, slice_index: int | None = None) -> MetaTensor:
        """
        Args:
            path: 4D NIfTI file or DICOM series folder.
            slice_index: short-axis slice ``z`` to keep, or None for the whole stack.

        Raises:
            CineDataError: anything wrong with the file (see :func:`read_nifti_cine`, :func:`read_dicom_cine`),
                or a slice index outside the stack.
        """
        cine = read_cine(path)
        return self.to_meta_tensor(cine, cine.data, slice_index)

    def to_meta_tensor(self, cine: Cine, data: np.ndarray, slice_index: int | None) -> MetaTensor:
        """Wrap ``data`` of shape ``(C, Z, H, W)`` laid on ``cine``'s grid into a MetaTensor (slice if given)."""
        num_slices = cine.data.shape[1]
        if slice_index is not None and not 0 <= slice_index < num_slices:
            raise CineDataError(f"slice {slice_index} is outside the stack of {num_slices} slices", cine.source)
        meta = {
            "filename_or_obj": cine.source,
            "original_affine": torch.as_tensor(cine.file_affine, dtype=torch.float64),
            "spatial_shape": np.asarray((cine.data.shape[2], cine.data.shape[3], num_slices)),
            "slice": -1 if slice_index is None else int(slice_index),
        }
        if slice_index is None:
            array, affine = data, cine.affine
        else:
            array, affine = data[:, slice_index], _slice_affine(cine, slice_index)
        meta["affine"] = torch.as_tensor(affine, dtype=torch.float64)
        return MetaTensor(torch.as_tensor(np.ascontiguousarray(array), dtype=self.dtype), meta=meta)


class LoadCined(MapTransform):
    """Dictionary loader: a data-list entry (docs/conventions.md) to image, sparse labels and their mask.

    Reads ``d[image_key]`` (cine path) and, where present in the entry, ``d[label_key]`` (list of 3D label
    files) with ``d["label_frames"]`` (their 0-based frames) and ``d["label_map"]`` (file value -> project
    id), ``d[dense_label_key]`` (4D labels of every frame) and ``d[ddf_key]`` (true displacements). Per-slice
    entries carry ``d[slice_key]``. Writes:

    - ``d[image_key]``: MetaTensor ``(T, H, W)`` / ``(T, Z, H, W)`` float32;
    - ``d[label_key]``: MetaTensor of the same shape, float32 class ids, 0 on unlabelled frames;
    - ``d[label_mask_key]``: bool tensor ``(T,)``, True on labelled frames (all False without labels);
    - ``d[dense_label_key]``: MetaTensor like the labels, every frame labelled;
    - ``d[ddf_key]``: float32 tensor ``(T, 2, H, W)`` / ``(T, 3, Z, H, W)``, ``u_{ED->t}`` in voxels. It is not a
      MetaTensor on purpose: resampling a displacement changes its values, so evaluate it on the input grid.

    Args:
        image_key, label_key, label_mask_key, dense_label_key, ddf_key, slice_key: keys of the entry;
            ``dense_label_key`` or ``ddf_key`` set to None leaves that file unread (e.g. in training pipelines,
            whose frame sub-sampling would otherwise leave full-length sequences beside the windows).

    Raises:
        CineDataError: bad files (see the readers), label files and ``label_frames`` of different lengths,
            frames outside the cine, a label that does not match the cine.
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        label_mask_key: str = "label_mask",
        dense_label_key: str | None = "dense_label",
        ddf_key: str | None = "ddf",
        slice_key: str = "slice",
    ) -> None:
        super().__init__(keys=[image_key])
        self.image_key, self.label_key, self.label_mask_key = image_key, label_key, label_mask_key
        self.dense_label_key, self.ddf_key, self.slice_key = dense_label_key, ddf_key, slice_key
        self.loader = LoadCine()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        source = d[self.image_key]
        cine = read_cine(source)
        z = d.get(self.slice_key)
        z = None if z is None else int(z)
        num_frames = cine.data.shape[0]
        d[self.image_key] = self.loader.to_meta_tensor(cine, cine.data, z)

        if self.label_key in d:
            paths, frames = list(d[self.label_key]), list(d.get("label_frames", []))
            if len(paths) != len(frames):
                raise CineDataError(
                    f"{len(paths)} label files but {len(frames)} label_frames in the data-list entry", source
                )
            labels = np.zeros(cine.data.shape, dtype=np.uint8)
            mask = torch.zeros(num_frames, dtype=torch.bool)
            for path, frame in zip(paths, frames):
                if not 0 <= int(frame) < num_frames:
                    raise CineDataError(f"label frame {frame} is outside the cine's {num_frames} frames", path)
                labels[int(frame)] = read_nifti_labels(path, cine, d.get("label_map"))
                mask[int(frame)] = True
            d[self.label_key] = self.loader.to_meta_tensor(cine, labels, z)
            d[self.label_mask_key] = mask
        if self.dense_label_key is not None and self.dense_label_key in d:
            dense = read_nifti_dense_labels(d[self.dense_label_key], cine)
            d[self.dense_label_key] = self.loader.to_meta_tensor(cine, dense, z)
        if self.ddf_key is not None and self.ddf_key in d:
            ddf = read_nifti_ddf(d[self.ddf_key], cine)  # (T, 3, Z, H, W)
            ddf = ddf if z is None else ddf[:, 1:, z]
            d[self.ddf_key] = torch.as_tensor(np.ascontiguousarray(ddf))
        return d
