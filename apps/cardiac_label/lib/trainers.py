"""Training the joint bundle from the datastore's labelled frames, through MONAI Label's BundleTrainTask.

A datastore label of a cine is a label sequence ``(X, Y, Z, T)`` on the cine's grid (what ``/infer/propagation``
and ``/infer/joint_segmentation`` return, corrected by the annotator); the frames holding any foreground are the
labelled ones, the others are all background. A 3D label ``(X, Y, Z)`` is the label of the cine's first frame
(ED). ED is frame 0 of every datastore cine.

:class:`CineBundleTrainTask` turns those records into the data list the bundle's training pipeline reads
(``LoadCined``: one entry per short-axis slice, with one 3D label file per labelled frame, written to a temporary
folder for the run), splits it by cine (never slices of one cine on both sides) and hands it to
:class:`BundleTrainTask`, which runs ``configs/train.json`` with its own overrides (``bundle_root``,
``train#trainer#max_epochs``, ``train#dataset#data``, ``validate#dataset#data``, ``device``, ``train#handlers``
with a ``CheckpointLoader`` of ``models/model.pt``). The run id is the bundle's ``train_joint`` (the joint stage
of the three-stage schedule, which starts from ``models/stage_segmentation.pt`` and then ``models/model.pt``):
it saves its final weights as ``models/model.pt``, which the inference tasks reload. With no validation cine (a
single labelled cine, or ``val_split`` 0) the validation handler is left out.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import nibabel as nib
import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.bundle import BundleTrainTask

from monai_cardiac.data.nifti import nifti_image, read_nifti_dense_labels, read_nifti_labels
from monai_cardiac.engines.joint_inference import joint_inference_datalist
from monai_cardiac.errors import CineDataError
from monai_cardiac.transforms.io import read_cine

__all__ = ["CineBundleTrainTask", "labelled_frame_entries"]

logger = logging.getLogger(__name__)


def labelled_frame_entries(image: str, label: str, frames_dir: str | Path) -> List[Dict[str, Any]]:
    """Per-slice training entries of one datastore cine, its labelled frames written as 3D label files.

    Args:
        image: the cine (4D NIfTI).
        label: its label: a sequence ``(X, Y, Z, T)`` (frames with any foreground are the labelled ones) or one
            volume ``(X, Y, Z)`` of frame 0.
        frames_dir: folder receiving ``<cine>_frameNN_gt.nii.gz`` (1-based ``NN``, as ACDC names them).

    Returns:
        one entry per slice (:func:`joint_inference_datalist` keys, ED = frame 0) with ``label`` (the files) and
        ``label_frames`` (0-based); empty when no frame holds a label.

    Raises:
        CineDataError: a label not on the cine's grid, or with values outside 0-3.
    """
    cine = read_cine(image)
    if len(nib.load(label).shape) == 3:
        sequence = read_nifti_labels(label, cine)[None]
    else:
        sequence = read_nifti_dense_labels(label, cine)  # (T, Z, H, W)
    frames = [t for t in range(sequence.shape[0]) if sequence[t].any()]
    entries = joint_inference_datalist(image)
    if not frames:
        logger.warning(f"{label}: no labelled frame, {image} left out of training")
        return []
    subject = entries[0]["subject"]
    paths = []
    for t in frames:
        path = Path(frames_dir) / f"{subject}_frame{t + 1:02d}_gt.nii.gz"
        nib.save(nifti_image(sequence[t].transpose(1, 2, 0).astype(np.uint8), cine.file_affine), str(path))
        paths.append(str(path))
    return [{**e, "ed": 0, "label": list(paths), "label_frames": list(frames)} for e in entries]


class CineBundleTrainTask(BundleTrainTask):
    """:class:`BundleTrainTask` of a cine bundle: the datastore's label sequences as per-slice, per-frame entries.

    Request options (besides :class:`BundleTrainTask`'s ``max_epochs``, ``val_split``, ``device``, ``pretrained``,
    ``model_filename``): ``run_id`` (default ``run_id`` below).

    Args:
        path: the bundle folder.
        conf: the app's ``--conf`` options.
        run_id: the train config's run id to execute.
        kwargs: passed on to :class:`BundleTrainTask`.
    """

    def __init__(self, path: str, conf: Dict[str, str], run_id: str = "train_joint", **kwargs: Any) -> None:
        super().__init__(path, conf, **kwargs)
        self.run_id = run_id
        self._frames_dir: Optional[str] = None

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        request = dict(request)
        request.setdefault("run_id", self.run_id)
        with tempfile.TemporaryDirectory(prefix="cardiac_label_frames_") as frames_dir:
            self._frames_dir = frames_dir
            try:
                return super().__call__(request, datastore)
            finally:
                self._frames_dir = None

    def _fetch_datalist(self, request: Dict[str, Any], datastore: Datastore) -> List[Dict[str, Any]]:
        """The datastore's labelled cines, one ``{"image", "label"}`` record per cine (split before expanding)."""
        records = [{"image": d["image"], "label": d["label"]} for d in datastore.datalist() if d]
        if not records:
            raise CineDataError("the datastore holds no labelled cine to train on", "datastore")
        return records

    def _partition_datalist(
        self, datalist: List[Dict[str, Any]], request: Dict[str, Any], shuffle: bool = False
    ) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        """Split by cine (``val_split`` of them, at least one when there are two or more), then expand to slices."""
        val_split = float(request.get("val_split", 0.2))
        num_val = 0 if val_split <= 0 or len(datalist) < 2 else min(len(datalist) - 1, max(1, math.floor(
            val_split * len(datalist) + 0.5)))
        train_records, val_records = datalist[: len(datalist) - num_val], datalist[len(datalist) - num_val :]

        def expand(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
            return [e for r in records for e in labelled_frame_entries(r["image"], r["label"], self._frames_dir)]

        train, val = expand(train_records), expand(val_records)
        if not train:
            raise CineDataError("no labelled frame in the datastore's training cines", "datastore")
        logger.info(f"training on {len(train_records)} cines ({len(train)} slices), validating on "
                    f"{len(val_records)} ({len(val)} slices)")
        return train, val

    def _update_overrides(self, overrides: Dict[str, Any]) -> Dict[str, Any]:
        """Point ``dataset_dir`` away from the built-in phantom; train without validation when there is none."""
        overrides["dataset_dir"] = self._frames_dir
        if not overrides.get(self.const.key_validate_dataset_data()):
            overrides.pop(self.const.key_validate_dataset_data(), None)
            overrides[self.const.key_train_handlers()] = [
                h for h in copy.deepcopy(overrides[self.const.key_train_handlers()])
                if not str(h.get("_target_", "")).endswith("ValidationHandler")
            ]
        return overrides
