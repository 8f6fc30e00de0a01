"""Data lists for folders in the UK Biobank short-axis layout (as used by Bai et al.'s ukbb_cardiac).

Layout::

    root/<subject>/sa.nii.gz                                cine (X, Y, Z, T), ED = frame 0
    root/<subject>/label_sa_ED.nii.gz (or seg_sa_ED.nii.gz)  labels of ED: 1 LV, 2 Myo, 3 RV
    root/<subject>/label_sa_ES.nii.gz (or seg_sa_ES.nii.gz)  labels of ES
    root/<subject>/sa_ES.nii.gz                             optional: the ES frame, used to find its index

UK Biobank label ids are remapped to the project's (0 BG, 1 RV, 2 Myo, 3 LV) at load time through the
entry's ``label_map``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from monai_cardiac.data.datalist import cine_header_shape, expand_slices
from monai_cardiac.data.nifti import load_image
from monai_cardiac.errors import CineDataError

__all__ = ["UKBB_LABEL_MAP", "ukbb_datalist"]

UKBB_LABEL_MAP = (0, 3, 2, 1)
"""File value -> project id: UK Biobank 1 LV, 2 Myo, 3 RV become 3, 2, 1."""


def _find_es_frame(cine_path: Path, es_image: Path) -> int:
    """Index of the cine frame identical to ``sa_ES.nii.gz`` (UK Biobank does not store the ES index)."""
    cine = np.asanyarray(load_image(cine_path).dataobj)
    es = np.asanyarray(load_image(es_image).dataobj)
    if es.ndim == 4:
        es = es[..., 0]
    if es.shape != cine.shape[:3]:
        raise CineDataError(f"shape {es.shape} does not match the cine's {cine.shape[:3]}", es_image)
    errors = [float(np.abs(cine[..., t].astype(np.float64) - es).mean()) for t in range(cine.shape[3])]
    best = int(np.argmin(errors))
    if errors[best] > 1e-3 * (float(np.abs(es).mean()) + 1e-6):
        raise CineDataError("no frame of the cine matches the ES image", es_image)
    return best


def ukbb_datalist(
    root: str | Path, per: str = "slice", es_frames: Mapping[str, int] | None = None
) -> list[dict]:
    """Build a MONAI data list from a folder in the UK Biobank layout.

    Args:
        root: folder of subject folders.
        per: ``"slice"`` or ``"volume"``.
        es_frames: 0-based ES frame per subject, for subjects without ``sa_ES.nii.gz``.

    Returns:
        the data list (docs/conventions.md), each entry with ``label_map`` = :data:`UKBB_LABEL_MAP`.

    Raises:
        CineDataError: missing cine, an ES label without a way to find its frame, ES outside the frames.
        ValueError: ``per`` not one of "slice", "volume".
    """
    if per not in ("slice", "volume"):
        raise ValueError(f"per must be 'slice' or 'volume', got {per!r}")
    root = Path(root)
    if not root.is_dir():
        raise CineDataError("dataset folder not found", root)
    es_frames = dict(es_frames or {})
    subjects = sorted(p for p in root.iterdir() if p.is_dir())
    if not subjects:
        raise CineDataError("no subject folders", root)

    datalist: list[dict] = []
    for folder in subjects:
        cine = folder / "sa.nii.gz"
        _, _, num_slices, num_frames = cine_header_shape(cine)
        labels, frames = [], []
        es = None
        for phase in ("ED", "ES"):
            found = [folder / f"{p}_sa_{phase}.nii.gz" for p in ("label", "seg")]
            found = [p for p in found if p.is_file()]
            if not found:
                continue
            if phase == "ED":
                frame = 0
            elif folder.name in es_frames:
                frame = int(es_frames[folder.name])
            elif (folder / "sa_ES.nii.gz").is_file():
                frame = _find_es_frame(cine, folder / "sa_ES.nii.gz")
            else:
                raise CineDataError(
                    "cannot tell the ES frame: no sa_ES.nii.gz; pass es_frames={subject: index}", found[0]
                )
            if not 0 <= frame < num_frames:
                raise CineDataError(f"ES frame {frame} is outside the frames 0..{num_frames - 1}", folder)
            if phase == "ES":
                es = frame
            labels.append(str(found[0]))
            frames.append(frame)
        entry = {
            "image": str(cine),
            "label": labels,
            "label_frames": frames,
            "label_map": list(UKBB_LABEL_MAP),
            "subject": folder.name,
            "group": "",
            "num_frames": num_frames,
            "ed": 0,
            "spacing_known": True,
        }
        if es is not None:
            entry["es"] = es
        datalist.extend(expand_slices(entry, num_slices) if per == "slice" else [entry])
    return datalist
