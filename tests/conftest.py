"""Fixtures shared by the tests: small cines written to disk in the layouts the readers accept."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def disc_labels(shape_xy: tuple[int, int], num_slices: int, radius: float, centre=(12.0, 13.0)) -> np.ndarray:
    """Label volume (X, Y, Z): LV disc (3), a myocardial ring (2) and an RV blob (1) on every slice."""
    x, y = np.meshgrid(np.arange(shape_xy[0]), np.arange(shape_xy[1]), indexing="ij")
    r = np.hypot(x - centre[0], y - centre[1])
    lab = np.zeros(shape_xy, np.uint8)
    lab[r < radius + 2] = 2
    lab[r < radius] = 3
    lab[np.hypot(x - centre[0], y - centre[1] + radius + 5) < 3] = 1
    return np.repeat(lab[:, :, None], num_slices, axis=2)


@pytest.fixture
def make_acdc_subject():
    """Factory writing one ACDC-layout patient; returns its folder. Cine (X, Y, Z, T) = (24, 26, Z, T)."""

    def _make(root: Path, name: str = "patient001", num_frames: int = 6, num_slices: int = 2, es: int = 3,
              spacing=(1.5, 1.25, 8.0), dense: bool = False) -> Path:
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
        rng = np.random.default_rng(0)
        labels = [disc_labels((24, 26), num_slices, radius=6 - 3 * np.sin(np.pi * t / num_frames))
                  for t in range(num_frames)]
        cine = np.stack([lab * 100.0 + rng.normal(0, 5, lab.shape) for lab in labels], axis=-1).astype(np.float32)
        # frame t holds the value 1000 * t at voxel (0, 0, 0) so that frame order can be checked
        cine[0, 0, 0, :] = 1000.0 * np.arange(num_frames)
        nib.save(nib.Nifti1Image(cine, affine), str(folder / f"{name}_4d.nii.gz"))
        for frame in (1, es):
            nib.save(nib.Nifti1Image(labels[frame - 1], affine), str(folder / f"{name}_frame{frame:02d}_gt.nii.gz"))
        if dense:
            nib.save(nib.Nifti1Image(np.stack(labels, -1), affine), str(folder / f"{name}_4d_gt.nii.gz"))
        (folder / "Info.cfg").write_text(
            f"ED: 1\nES: {es}\nGroup: NOR\nHeight: 170.0\nNbFrame: {num_frames}\nWeight: 70.0\n"
        )
        return folder

    return _make
