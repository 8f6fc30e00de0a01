"""The slices every method of the benchmark sees: the joint bundle's split and preprocessing, read from the bundle.

The benchmark, the VoxelMorph trainer and the bundle scripts read an ACDC-layout folder exactly as ``bundles/joint``
does: one entry per labelled short-axis slice, the patient-level split of ``configs/train.json``
(``split_fractions``, ``split_seed``, ``linked_subjects``: patients 074 / 076, the same cine, kept together) and its
``load_pipeline`` (load, ED first, a crop around the heart found from the images alone, as inference finds it,
then intensities to [0, 1] by the crop's 1st / 99th percentile). The values are read from that config, so the
bundle's split and pipeline are the only copies. Every method, peer or network, is run and scored on these crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.transforms import Compose

from monai_cardiac.bundle_paths import bundle_root
from monai_cardiac.data import acdc_datalist, split_by_subject
from monai_cardiac.engines.joint_evaluation import phantom_evaluation_preprocessing
from monai_cardiac.transforms import CropAroundHeartd

__all__ = ["SPLITS", "bundle_split_settings", "cine_preprocessing", "split_datalist"]

SPLITS = ("train", "val", "test", "all")


def _joint_config() -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(Path(bundle_root("joint")) / "configs" / "train.json"))
    return parser


@lru_cache(maxsize=1)
def bundle_split_settings() -> dict[str, Any]:
    """The joint bundle's split: ``{"fractions", "seed", "linked"}`` from its ``configs/train.json``."""
    parser = _joint_config()
    return {"fractions": [float(f) for f in parser["split_fractions"]], "seed": int(parser["split_seed"]),
            "linked": [list(group) for group in parser["linked_subjects"]]}


def split_datalist(dataset_dir: str, split: str = "test", seed: int | None = None) -> list[dict]:
    """Per-slice entries of one part of the bundle's patient-level split of an ACDC-layout folder.

    Args:
        dataset_dir: ACDC-layout folder (``patientXXX/patientXXX_4d.nii.gz``, ``Info.cfg``, labels).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        seed: split seed; ``None``: the bundle's ``split_seed`` (0).

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
    settings = bundle_split_settings()
    parts = split_by_subject(datalist, settings["fractions"], seed=settings["seed"] if seed is None else seed,
                             linked=settings["linked"])
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
    parser = _joint_config()
    parser["roi_size"] = [int(s) for s in roi_size]
    transforms = list(parser.get_parsed_content("load_pipeline"))
    crop = next(i for i, t in enumerate(transforms) if isinstance(t, CropAroundHeartd))
    return Compose(transforms[:crop] + list(relaying) + transforms[crop:])
