"""The slices every method of the benchmark sees: the joint bundle's split and preprocessing, in one place.

The benchmark and the VoxelMorph trainer read an ACDC-layout folder exactly as ``bundles/joint`` does
(``bundles/joint/configs/train.json``): one entry per labelled short-axis slice, a patient-level split
``[0.75, 0.125, 0.125]`` with seed 0 and patients 074 / 076 (the same cine) kept together, and the bundle's
evaluation pipeline (load, ED first, a crop around the heart found from the images alone, as inference finds it,
then intensities to [0, 1] by the crop's 1st / 99th percentile).
Every method, peer or network, is run and scored on these same crops.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import Compose, ScaleIntensityRangePercentilesd

from monai_cardiac.data import acdc_datalist, split_by_subject
from monai_cardiac.engines.joint_evaluation import phantom_evaluation_preprocessing
from monai_cardiac.transforms import CropAroundHeartd, LoadCined, ReorderFromEDd

__all__ = ["SPLITS", "cine_preprocessing", "split_datalist"]

SPLITS = ("train", "val", "test", "all")
_FRACTIONS = (0.75, 0.125, 0.125)
_LINKED = (("patient074", "patient076"),)


def split_datalist(dataset_dir: str, split: str = "test", seed: int = 0) -> list[dict]:
    """Per-slice entries of one part of the bundle's patient-level split of an ACDC-layout folder.

    Args:
        dataset_dir: ACDC-layout folder (``patientXXX/patientXXX_4d.nii.gz``, ``Info.cfg``, labels).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        seed: split seed (the bundles use 0).

    Returns:
        entries in the reader's order (patient, then slice).

    Raises:
        ValueError: an unknown ``split``.
        CineDataError: a folder the ACDC reader cannot read.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    datalist = acdc_datalist(dataset_dir, per="slice")
    if split == "all":
        return list(datalist)
    parts = split_by_subject(datalist, list(_FRACTIONS), seed=seed, linked=[list(g) for g in _LINKED])
    return parts[("train", "val", "test").index(split)]


def cine_preprocessing(roi_size: Sequence[int] | None = (96, 96), relaying: Sequence = ()) -> Compose:
    """The evaluation pipeline of the joint bundle (its ``load_pipeline``), or the phantom's without a crop.

    Args:
        roi_size: in-plane crop around the heart; ``None`` keeps the file's grid and loads the phantom's dense
            labels and true motion where the entries have them
            (:func:`~monai_cardiac.engines.joint_evaluation.phantom_evaluation_preprocessing`).
        relaying: dictionary transforms of ``image`` and ``label`` run after the frames are put ED first and
            before the crop (e.g. a re-orientation or a padding, as another site could have stored the cine).
    """
    if roi_size is None:
        return phantom_evaluation_preprocessing()
    return Compose([
        LoadCined(dense_label_key=None, ddf_key=None),
        ReorderFromEDd(keys=["image", "label"]),
        *relaying,
        CropAroundHeartd(keys=["image", "label"], roi_size=tuple(int(s) for s in roi_size), label_key=None),
        ScaleIntensityRangePercentilesd("image", lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True),
    ])
