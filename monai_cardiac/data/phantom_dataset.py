"""Writing phantom subjects as an ACDC-layout folder, the built-in default data of the bundles.

Each subject gets what ACDC has (``patientNNN_4d.nii.gz``, ``Info.cfg``, the ED and ES frames and their
labels) plus what only a phantom can have: ``patientNNN_4d_gt.nii.gz`` (labels of every frame) and
``patientNNN_ddf.nii.gz`` (the true ``u_{ED->t}``, ``(X, Y, Z, T, 2)`` in voxels along ``H = i`` and
``W = j``). ``manifest.json`` records the generation arguments and one line per subject, so a second call
with the same arguments reuses the folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_cardiac.data.phantom import make_cine_phantom

__all__ = ["write_phantom_dataset"]


def _subject_seed(seed: int, index: int) -> int:
    """Seed of subject ``index``: depends on ``(seed, index)`` only, not on how many subjects are written."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _file_affine(phantom: dict) -> np.ndarray:
    """The NIfTI ``(i, j, k)`` affine of a phantom (a stack's array affine is ``(z, h, w)``-ordered)."""
    affine = np.asarray(phantom["affine"], dtype=np.float64)
    return affine if phantom["image"].ndim == 3 else affine[:, [1, 2, 0, 3]]


def _to_file(array: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` or ``(T, Z, H, W)`` to the NIfTI order ``(X, Y, Z, T)``."""
    if array.ndim == 3:
        array = array[:, None]
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))


def _ddf_to_file(ddf: np.ndarray) -> np.ndarray:
    """In-plane ``u_{ED->t}`` as ``(X, Y, Z, T, 2)``, from ``(T, 2, H, W)`` or ``(T, 3, Z, H, W)``."""
    inplane = ddf[:, :, None] if ddf.ndim == 4 else ddf[:, 1:]  # (T, 2, Z, H, W)
    return np.ascontiguousarray(inplane.transpose(3, 4, 2, 0, 1), dtype=np.float32)


def _write_subject(folder: Path, name: str, phantom: dict, rng: np.random.Generator) -> dict:
    """Write one subject's files and return its manifest line."""
    folder.mkdir(parents=True, exist_ok=True)
    affine = _file_affine(phantom)
    image, labels = _to_file(phantom["image"]), _to_file(phantom["label"]).astype(np.uint8)
    num_frames, ed, es = image.shape[3], int(phantom["ed"]), int(phantom["es"])
    nib.save(nib.Nifti1Image(image, affine), str(folder / f"{name}_4d.nii.gz"))
    for frame in (ed, es):
        nib.save(nib.Nifti1Image(image[..., frame], affine), str(folder / f"{name}_frame{frame + 1:02d}.nii.gz"))
        nib.save(nib.Nifti1Image(labels[..., frame], affine), str(folder / f"{name}_frame{frame + 1:02d}_gt.nii.gz"))
    nib.save(nib.Nifti1Image(labels, affine), str(folder / f"{name}_4d_gt.nii.gz"))
    nib.save(nib.Nifti1Image(_ddf_to_file(phantom["ddf"]), affine), str(folder / f"{name}_ddf.nii.gz"))
    height, weight = float(rng.uniform(150, 195)), float(rng.uniform(50, 110))
    (folder / "Info.cfg").write_text(
        f"ED: {ed + 1}\nES: {es + 1}\nGroup: {phantom['group']}\nHeight: {height:.1f}\n"
        f"NbFrame: {num_frames}\nWeight: {weight:.1f}\n"
    )
    return {
        "patient": name,
        "group": phantom["group"],
        "T": num_frames,
        "ED": ed,
        "ES": es,
        "ejection_fraction": float(phantom["ejection_fraction"]),
        "spacing_mm": [float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(0))],
        "spacing_known": True,
        "seed": int(phantom["params"]["seed"]),
    }


def write_phantom_dataset(
    root: str | Path,
    num_subjects: int,
    seed: int = 0,
    num_frames: int | Sequence[int] = (13, 50),
    spatial_size: Sequence[int] = (128, 128),
    spacing: Sequence[float] = (1.5, 1.5),
    num_slices: int | None = None,
    slice_thickness: float = 8.0,
    noise_std: float = 0.03,
    bias_strength: float = 0.2,
) -> list[str]:
    """Write ``num_subjects`` phantom subjects into ``root`` in the ACDC layout, or reuse them.

    Subject ``k`` (folder ``patient{k+1:03d}``) depends only on ``seed``, ``k`` and the image arguments, so
    asking for more subjects later adds folders without changing the existing ones.

    Args:
        root: output folder (created).
        num_subjects: number of subjects.
        seed: seed of the whole set.
        num_frames: frames per subject, or an inclusive range ``(low, high)`` drawn per subject.
        spatial_size: in-plane size ``(H, W)`` in voxels.
        spacing: in-plane spacing ``(H, W)`` in mm.
        num_slices: ``None`` for one mid-ventricular slice per subject, else a stack of that many slices.
        slice_thickness: slice distance in mm.
        noise_std: Rician noise level (see :func:`make_cine_phantom`).
        bias_strength: bias field strength (see :func:`make_cine_phantom`).

    Returns:
        the subject folders, in order.

    Raises:
        ValueError: ``num_subjects < 1``, a frame range outside 2-100, or any argument
            :func:`make_cine_phantom` rejects.
    """
    if int(num_subjects) < 1:
        raise ValueError(f"num_subjects must be at least 1, got {num_subjects}")
    frames = (int(num_frames), int(num_frames)) if np.isscalar(num_frames) else tuple(int(f) for f in num_frames)
    if len(frames) != 2 or not 2 <= frames[0] <= frames[1] <= 100:
        raise ValueError(f"num_frames must be an integer or a range (low, high) within 2..100, got {num_frames}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    generator = {
        "seed": int(seed),
        "num_frames": list(frames),
        "spatial_size": [int(s) for s in spatial_size],
        "spacing": [float(s) for s in spacing],
        "num_slices": num_slices,
        "slice_thickness": float(slice_thickness),
        "noise_std": float(noise_std),
        "bias_strength": float(bias_strength),
    }
    manifest_path = root / "manifest.json"
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    reusable = {}
    if previous.get("generator") == generator:
        reusable = {p["patient"]: p for p in previous.get("patients", [])}

    patients, folders = [], []
    for k in range(int(num_subjects)):
        name = f"patient{k + 1:03d}"
        folder = root / name
        folders.append(str(folder))
        done = name in reusable and all(
            (folder / f).is_file() for f in (f"{name}_4d.nii.gz", f"{name}_4d_gt.nii.gz", f"{name}_ddf.nii.gz", "Info.cfg")
        )
        if done:
            patients.append(reusable[name])
            continue
        rng = np.random.default_rng(_subject_seed(seed, k))
        phantom = make_cine_phantom(
            seed=_subject_seed(seed, k),
            num_frames=int(rng.integers(frames[0], frames[1] + 1)),
            spatial_size=spatial_size,
            spacing=spacing,
            num_slices=num_slices,
            slice_thickness=slice_thickness,
            noise_std=noise_std,
            bias_strength=bias_strength,
        )
        patients.append(_write_subject(folder, name, phantom, rng))
    known = {p["patient"]: p for p in reusable.values()}
    known.update({p["patient"]: p for p in patients})
    manifest = {"generator": generator, "patients": [known[n] for n in sorted(known)]}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return folders
