"""Data lists for folders in the ACDC layout (the ACDC challenge, ../shared/data/acdc_dev, the phantom).

Layout::

    root/patientXXX/patientXXX_4d.nii.gz           cine (X, Y, Z, T)
    root/patientXXX/Info.cfg                       ED, ES (1-based), Group, NbFrame, ...
    root/patientXXX/patientXXX_frameNN_gt.nii.gz   labels of frame NN (1-based), 0 BG 1 RV 2 Myo 3 LV
    root/patientXXX/patientXXX_4d_gt.nii.gz        optional: labels of every frame (the phantom writes it)
    root/patientXXX/patientXXX_ddf.nii.gz          optional: true u_{ED->t} (the phantom writes it)
    root/manifest.json                             optional: per patient ``spacing_known`` (acdc_dev)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from monai_cardiac.data.datalist import cine_header_shape, expand_slices
from monai_cardiac.errors import CineDataError

__all__ = ["acdc_datalist", "read_info_cfg"]


def read_info_cfg(path: str | Path, num_frames: int | None = None) -> dict:
    """Read an ACDC ``Info.cfg`` and return its fields, with ``ed`` and ``es`` as 0-based frame indices.

    Args:
        path: the Info.cfg file.
        num_frames: frames of the cine, if known; ED, ES and NbFrame are checked against it.

    Returns:
        dict with ``ed``, ``es`` (0-based), ``num_frames``, ``group`` and the numeric ``height``/``weight``
        where present.

    Raises:
        CineDataError: missing file, missing ED/ES, non-integer values, ED/ES outside 1..NbFrame, NbFrame not
            matching the cine.
    """
    path = Path(path)
    if not path.is_file():
        raise CineDataError("Info.cfg not found", path)
    fields = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if key not in fields:
            raise CineDataError(f"missing field {key}", path)
    try:
        ed, es = int(fields["ED"]), int(fields["ES"])
        nb = int(fields["NbFrame"]) if "NbFrame" in fields else num_frames
    except ValueError as err:
        raise CineDataError(f"non-integer ED/ES/NbFrame: {err}", path) from err
    if nb is None:
        raise CineDataError("missing field NbFrame and the cine's frame count is unknown", path)
    if num_frames is not None and nb != num_frames:
        raise CineDataError(f"NbFrame {nb} does not match the cine's {num_frames} frames", path)
    for key, frame in (("ED", ed), ("ES", es)):
        if not 1 <= frame <= nb:
            raise CineDataError(f"{key} = {frame} is outside the frames 1..{nb}", path)
    info = {"ed": ed - 1, "es": es - 1, "num_frames": nb, "group": fields.get("Group", "")}
    for key in ("Height", "Weight"):
        if key in fields:
            info[key.lower()] = float(fields[key])
    return info


def _spacing_known(root: Path) -> dict[str, bool]:
    """``spacing_known`` per patient from ``root/manifest.json`` where the dataset ships one."""
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        entries = json.loads(manifest.read_text())
    except json.JSONDecodeError as err:
        raise CineDataError(f"manifest is not valid JSON: {err}", manifest) from err
    if isinstance(entries, dict):
        entries = entries.get("patients", [])
    return {e["patient"]: bool(e["spacing_known"]) for e in entries if "patient" in e and "spacing_known" in e}


def acdc_datalist(
    root: str | Path,
    per: str = "slice",
    subjects: Sequence[str] | None = None,
    require_labels: bool = True,
) -> list[dict]:
    """Build a MONAI data list from a folder in the ACDC layout.

    Each entry holds the cine path, the labelled frames (ED and ES, 0-based) and their label files, the
    subject's frame count, ED/ES, group and whether its spacing is known; per-slice lists add ``slice``.

    Args:
        root: dataset folder holding ``patientXXX`` folders.
        per: ``"slice"`` (one entry per short-axis slice) or ``"volume"`` (one per patient).
        subjects: patient ids to keep (default: every ``patient*`` folder, sorted).
        require_labels: raise if the ED or ES label file is missing (otherwise only existing ones are listed).

    Returns:
        the data list (see docs/conventions.md, "Data lists").

    Raises:
        CineDataError: missing folder or files, bad Info.cfg, cine not 4D.
        ValueError: ``per`` not one of "slice", "volume".
    """
    if per not in ("slice", "volume"):
        raise ValueError(f"per must be 'slice' or 'volume', got {per!r}")
    root = Path(root)
    if not root.is_dir():
        raise CineDataError("dataset folder not found", root)
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("patient"))
    if subjects is not None:
        missing = sorted(set(subjects) - set(names))
        if missing:
            raise CineDataError(f"subjects not found: {missing}", root)
        names = [n for n in names if n in set(subjects)]
    if not names:
        raise CineDataError("no patientXXX folders", root)
    known = _spacing_known(root)

    datalist: list[dict] = []
    for name in names:
        folder = root / name
        cine = folder / f"{name}_4d.nii.gz"
        _, _, num_slices, num_frames = cine_header_shape(cine)
        info = read_info_cfg(folder / "Info.cfg", num_frames=num_frames)
        labels, frames = [], []
        for frame in sorted({info["ed"], info["es"]}):
            path = folder / f"{name}_frame{frame + 1:02d}_gt.nii.gz"
            if path.is_file():
                labels.append(str(path))
                frames.append(frame)
            elif require_labels:
                raise CineDataError(f"missing label file of frame {frame + 1} (1-based)", path)
        entry = {
            "image": str(cine),
            "label": labels,
            "label_frames": frames,
            "subject": name,
            "group": info["group"],
            "num_frames": num_frames,
            "ed": info["ed"],
            "es": info["es"],
            "spacing_known": known.get(name, True),
        }
        for key, suffix in (("dense_label", "_4d_gt.nii.gz"), ("ddf", "_ddf.nii.gz")):
            if (folder / f"{name}{suffix}").is_file():
                entry[key] = str(folder / f"{name}{suffix}")
        datalist.extend(expand_slices(entry, num_slices) if per == "slice" else [entry])
    return datalist
