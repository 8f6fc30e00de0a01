"""Write a small phantom datastore for the cardiac cine app, with the phantom's truth beside it.

Usage (any environment with monai_cardiac installed)::

    python apps/cardiac_label/make_phantom_datastore.py /tmp/cardiac_label_demo [--subjects 3] [--labelled 2]

writes

- ``ROOT/phantom/``: the phantom in the ACDC layout (:func:`monai_cardiac.data.write_phantom_dataset`): per patient
  the cine, ``Info.cfg`` (ED, ES), the labels of every frame (``patientNNN_4d_gt.nii.gz``) and the true motion;
- ``ROOT/datastore/``: the MONAI Label studies folder: ``patientNNN.nii.gz`` (the cines, 4D ``(X, Y, Z, T)``)
  and, for the first ``--labelled`` patients, ``labels/final/patientNNN.nii.gz``: a label sequence holding the
  true labels of the ED and ES frames only (the other frames all background), the datastore's training labels.

Start the server on ``ROOT/datastore`` (see apps/cardiac_label/README.md). Running it again with the same
arguments rewrites nothing that is already there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_cardiac.data import write_phantom_dataset
from monai_cardiac.data.nifti import nifti_image

__all__ = ["make_phantom_datastore", "main"]


def make_phantom_datastore(
    root: str | Path,
    num_subjects: int = 3,
    num_labelled: int = 2,
    num_frames: int = 16,
    num_slices: int = 2,
    spatial_size: int = 96,
    seed: int = 7,
) -> dict:
    """Write ``root/phantom`` and ``root/datastore`` (see the module docstring).

    Args:
        root: output folder.
        num_subjects: phantom patients.
        num_labelled: patients whose ED and ES labels go into the datastore's ``labels/final``.
        num_frames: frames per cine.
        num_slices: short-axis slices per cine.
        spatial_size: in-plane size (square), voxels of 1.5 mm.
        seed: phantom dataset seed.

    Returns:
        ``{"datastore": folder, "phantom": folder, "subjects": [{"id", "image", "truth", "ed", "es", "labelled"}]}``
        (also written to ``root/subjects.json``).

    Raises:
        ValueError: ``num_labelled`` outside ``[0, num_subjects]``, or bad phantom arguments.
    """
    if not 0 <= num_labelled <= num_subjects:
        raise ValueError(f"num_labelled must lie in [0, {num_subjects}], got {num_labelled}.")
    root = Path(root)
    phantom, datastore = root / "phantom", root / "datastore"
    folders = write_phantom_dataset(phantom, num_subjects, seed=seed, num_frames=num_frames, num_slices=num_slices,
                                    spatial_size=(spatial_size, spatial_size))
    manifest = {p["patient"]: p for p in json.loads((phantom / "manifest.json").read_text())["patients"]}
    (datastore / "labels" / "final").mkdir(parents=True, exist_ok=True)
    subjects = []
    for k, folder in enumerate(map(Path, folders)):
        name = folder.name
        image, truth = datastore / f"{name}.nii.gz", folder / f"{name}_4d_gt.nii.gz"
        if not image.is_file():
            shutil.copyfile(folder / f"{name}_4d.nii.gz", image)
        ed, es = int(manifest[name]["ED"]), int(manifest[name]["ES"])
        labelled = k < num_labelled
        label_path = datastore / "labels" / "final" / f"{name}.nii.gz"
        if labelled and not label_path.is_file():
            true = nib.load(str(truth))
            data = np.asarray(true.dataobj).astype(np.uint8)  # (X, Y, Z, T)
            sparse = np.zeros_like(data)
            sparse[..., [ed, es]] = data[..., [ed, es]]
            nib.save(nifti_image(sparse, true.affine), str(label_path))
        subjects.append({"id": name, "image": str(image), "truth": str(truth), "ed": ed, "es": es,
                         "labelled": labelled})
    result = {"datastore": str(datastore), "phantom": str(phantom), "subjects": subjects}
    (root / "subjects.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output folder (phantom/ and datastore/ are written in it)")
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--labelled", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    result = make_phantom_datastore(args.root, args.subjects, args.labelled, args.frames, args.slices, args.size,
                                    args.seed)
    print(f"datastore: {result['datastore']} ({len(result['subjects'])} cines, {args.labelled} labelled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
