"""Inference tasks of the cardiac cine app: the two bundles through MONAI Label's BundleInferTask, and propagation.

A cine is a 4D NIfTI ``(X, Y, Z, T)``; both bundles' networks see one short-axis slice ``(T, H, W)`` at a time. The
bundle tasks here (:class:`CineBundleInferTask`) therefore run, for each slice, exactly what the bundle's
``configs/inference.json`` defines (``preprocessing``, ``inferer``, ``postprocessing``, read by MONAI Label's
:class:`BundleInferTask`), then stack the slices and write one file on the input's grid with the input's affine
(frames in the file's order):

- ``segment``: labels of every frame, uint8 ``(X, Y, Z, T)``, 0 BG 1 RV 2 Myo 3 LV (joint bundle);
- ``track``: ``u_{ED->t}``, float32 ``(X, Y, Z, T, 2)`` in voxels, components along ``(X, Y)``, zero at frame ``ed``
  (either bundle; the layout :func:`monai_cardiac.data.read_nifti_ddf` reads).

:class:`PropagationTask` takes a cine and the label of one frame (or of two, e.g. ED and ES), tracks the cine
with one of the tracking tasks and carries the label to every frame with
:func:`monai_cardiac.engines.label_propagation.propagate_labels`.

Bad input raises :class:`monai_cardiac.errors.CineDataError` (the data) or :class:`RequestError` (the request's
parameters); the app answers both with HTTP 400.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import nibabel as nib
import numpy as np
import torch
from monai.utils import convert_to_numpy
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.tasks.infer.bundle import BundleConstants, BundleInferTask
from monailabel.utils.others.generic import name_to_device

from monai_cardiac.data.nifti import LABEL_IDS, Cine, read_nifti_dense_labels, read_nifti_labels
from monai_cardiac.engines.joint_inference import joint_inference_datalist, write_ddf_nifti, write_sequence_nifti
from monai_cardiac.engines.label_propagation import PROPAGATION_MODES, propagate_labels
from monai_cardiac.engines.tracking_refinement import label_probabilities, refine_tracking
from monai_cardiac.errors import CineDataError
from monai_cardiac.transforms.io import read_cine

__all__ = [
    "LABELS",
    "OUTPUTS",
    "CineBundleInferTask",
    "PropagationTask",
    "RequestError",
    "SHIPPED_WEIGHTS",
    "ServedWeights",
    "bundle_infers",
    "cine_entries",
]

logger = logging.getLogger(__name__)

OUTPUTS = ("segment", "track")
"""What a :class:`CineBundleInferTask` returns: labels of every frame, or the tracking fields ``u_{ED->t}``."""

LABELS = dict(LABEL_IDS)
"""Label names and ids of the segmentation outputs (ACDC's: 1 RV, 2 Myo, 3 LV)."""

REFINE_ITERATIONS = 100
"""Default refinement of the tracking fields before propagation (Adam iterations per level of
:func:`~monai_cardiac.engines.tracking_refinement.refine_tracking`, whose other defaults were chosen on acdc_dev's
validation split; with the joint tracker its segmentation of every frame enters the segmentation term); figures
with and without it: docs/monailabel.md."""


class RequestError(ValueError):
    """A request whose parameters cannot be served (unknown option, frame outside the cine, missing label)."""


def _option(request: Dict[str, Any], key: str, default: Any) -> Any:
    """``request[key]``, the first entry where a client sends the option list of ``info()`` back as it is."""
    value = request.get(key, default)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else default
    return default if value is None or value == "" else value


def _iterations(value: Any) -> int:
    """``refine`` as a number of iterations: an integer >= 0, or as a form client sends it (``"0"``, ``"200"``,
    ``false`` / ``"false"`` = 0, ``true`` / ``"true"`` = :data:`REFINE_ITERATIONS`)."""
    if isinstance(value, bool) or str(value).strip().lower() in ("true", "false"):
        return REFINE_ITERATIONS if str(value).strip().lower() == "true" else 0
    try:
        iterations = int(str(value).strip()) if not isinstance(value, float) else -1
    except ValueError:
        iterations = -1
    if iterations < 0:
        raise RequestError(f"'refine' must be a number of iterations >= 0 (or true / false), got {value!r}")
    return iterations


def _frame(value: Any, name: str, num_frames: int) -> int:
    try:
        frame = int(value)
    except (TypeError, ValueError) as err:
        raise RequestError(f"'{name}' must be a 0-based frame number, got {value!r}") from err
    if not 0 <= frame < num_frames:
        raise RequestError(f"'{name}' = {frame} is outside the cine's {num_frames} frames (0-based)")
    return frame


def cine_entries(image: str, ed: Any = 0) -> List[Dict[str, Any]]:
    """Per-slice data-list entries of a 4D NIfTI cine (or any input :func:`joint_inference_datalist` reads).

    Args:
        image: the cine's path.
        ed: 0-based ED frame of the file (the frame the bundles' tracking starts from).

    Returns:
        one entry per slice, ordered by slice, each with ``ed`` set.

    Raises:
        CineDataError: the file is not a cine (e.g. a 3D image).
        RequestError: ``ed`` is not a frame of the cine.
    """
    entries = sorted(joint_inference_datalist(image), key=lambda e: int(e["slice"]))
    if not entries:
        raise CineDataError("no short-axis slice found", image)
    ed = _frame(ed, "ed", int(entries[0]["num_frames"]))
    return [{**e, "ed": ed} for e in entries]


SHIPPED_WEIGHTS = os.path.join("acdc", "model.pt")
"""The weights a bundle ships, trained on ACDC, relative to its ``models/``."""


class ServedWeights(BundleConstants):
    """MONAI Label's bundle constants, with the checkpoint the app serves for a bundle folder.

    ``models/model.pt`` when it exists (weights trained here, e.g. by ``/train/joint`` or the bundle's own training
    command), otherwise the weights the bundle ships, ``models/acdc/model.pt``; a fresh checkout so serves the shipped
    weights. Delete (or move) ``models/model.pt`` to go back to the shipped ones.

    Args:
        path: the bundle folder.
    """

    def __init__(self, path: str) -> None:
        models = os.path.join(path, "models")
        trained = os.path.isfile(os.path.join(models, "model.pt"))
        shipped = os.path.isfile(os.path.join(models, SHIPPED_WEIGHTS))
        self.checkpoint = SHIPPED_WEIGHTS if shipped and not trained else "model.pt"

    def model_pytorch(self) -> str:
        return self.checkpoint


class CineBundleInferTask(BundleInferTask):
    """A bundle's inference run slice by slice on a cine, written as one 4D (or 5D) NIfTI file.

    The bundle's ``preprocessing``, ``inferer`` and ``postprocessing`` come from its ``configs/inference.json``
    through :class:`BundleInferTask` (no copy of the configuration here); the weights from its
    ``models/model.pt``, or the shipped ``models/acdc/model.pt`` where there is none (:class:`ServedWeights`). The
    postprocessing must leave, per slice, ``seg`` (labels ``(T, H, W)``) for ``segment``
    or ``ddf`` (``u_{ED->t}`` ``(T, 2, H, W)``) for ``track``, on the input slice's grid in the file's frame
    order: both bundles' ``InvertToInputGridd`` do.

    Request options: ``ed`` (0-based ED frame of the file, default 0), ``device``, ``model_filename`` (a
    checkpoint in the bundle's ``models/``, default ``model.pt``).

    Args:
        path: the bundle folder (holding ``configs/`` and ``models/``).
        conf: the app's ``--conf`` options.
        output: one of :data:`OUTPUTS`.
        description: shown by ``/info``.
        kwargs: passed on to :class:`BundleInferTask`.
    """

    def __init__(self, path: str, conf: Dict[str, str], output: str, description: str = "", **kwargs: Any) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}.")
        self.output = output
        super().__init__(
            path,
            conf,
            const=ServedWeights(path),
            type=InferType.SEGMENTATION if output == "segment" else InferType.OTHERS,
            add_post_restore=False,
            **kwargs,
        )
        if not self.valid:  # no configs/inference.json or no models/model.pt: BundleInferTask logged why
            return
        # metadata's channel_def describes the stacked network output, not classes: set what the task returns
        self.labels = dict(LABELS) if output == "segment" else {}
        self.dimension = 3
        if description:
            self.description = description
        self._config.update({"ed": 0})

    def slice_outputs(self, request: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], Dict[str, float]]:
        """Run the bundle on every slice of ``request["image"]``.

        Returns:
            the per-slice results (the postprocessed dicts, ``seg`` / ``ddf`` on the input grid) and the
            latencies in seconds (``pre``, ``infer``, ``post``).

        Raises:
            CineDataError, RequestError: see :func:`cine_entries`.
        """
        req = copy.deepcopy(self._config)
        req.update(request)
        device = name_to_device(req.get("device"))
        req["device"] = device
        model_filename = _option(req, "model_filename", self.const.model_pytorch())
        entries = cine_entries(req["image"], _option(req, "ed", 0))
        latency = {"pre": 0.0, "infer": 0.0, "post": 0.0}
        pre, post = self.pre_transforms(req), self.post_transforms(req)
        results = []
        for entry in entries:
            start = time.time()
            data = self.run_pre_transforms({**entry, "model_filename": model_filename, "device": device}, pre)
            latency["pre"] += time.time() - start
            start = time.time()
            data = self.run_inferer(data, device=device)
            latency["infer"] += time.time() - start
            start = time.time()
            results.append(self.run_post_transforms(data, post))
            latency["post"] += time.time() - start
        return results, latency

    def __call__(self, request: Dict[str, Any], callbacks: Optional[Dict] = None) -> Tuple[str, Dict[str, Any]]:
        """Serve one request: returns the written file and the result JSON (shape, ED, latencies)."""
        begin = time.time()
        slices, latency = self.slice_outputs(request)
        affine = slices[0]["image"].meta["original_affine"]
        ed = int(slices[0]["input_ed"])
        start = time.time()
        path = tempfile.NamedTemporaryFile(suffix=".nii.gz", delete=False).name
        if self.output == "segment":
            labels = np.stack([convert_to_numpy(s["seg"]) for s in slices], axis=1)  # (T, Z, H, W)
            write_sequence_nifti(path, labels, affine, dtype=np.uint8)
        else:
            ddf = np.stack([convert_to_numpy(s["ddf"]) for s in slices], axis=2)  # (T, 2, Z, H, W)
            write_ddf_nifti(path, ddf, affine)
        latency["write"] = time.time() - start
        latency["total"] = time.time() - begin
        result = {
            "output": self.output,
            "ed": ed,
            "shape": list(nib.load(path).shape),
            "label_names": self.labels,
            "latencies": {k: round(v, 3) for k, v in latency.items()},
        }
        logger.info(f"{self.output}: {result['shape']} in {latency['total']:.2f} s")
        return path, result


class PropagationTask(InferTask):
    """Labels of every frame of a cine from an annotator's label of one frame (or two), carried by a motion model.

    Request (``/infer/propagation``): the cine as ``image`` (datastore id or uploaded file) and the label as the
    uploaded ``label`` file, on the cine's grid (the same voxel shape and affine), either

    - 3D ``(X, Y, Z)``: the label of frame ``frame`` (default: ``ed``), or
    - 4D ``(X, Y, Z, T)``: a label sequence in which the frames listed in ``frames`` carry the labels (default:
      the frames holding any foreground; one or two, e.g. ED and ES, typically).

    Options: ``motion`` (a key of ``trackers``: ``"joint"`` or ``"probabilistic"``; ``/info`` offers those with
    weights, the first of them the default),
    ``ed`` (0-based ED frame of the file, where the models' tracking starts, default 0), ``frame`` / ``frames``
    as above, ``mode`` (:data:`~monai_cardiac.engines.label_propagation.PROPAGATION_MODES`, default
    ``"onehot"``), ``refine`` (Adam iterations of
    :func:`~monai_cardiac.engines.tracking_refinement.refine_tracking` on the cine's own frames, default
    :data:`REFINE_ITERATIONS`; 0: the network's fields as they are), ``device``. The motion model tracks the cine
    (``u_{ED->t}`` per slice, on the input grid), the fields are refined on the slice's frames, and
    :func:`~monai_cardiac.engines.label_propagation.propagate_labels` carries the labels; with two labelled frames
    each frame blends the two propagations by temporal distance. Returns uint8 labels ``(X, Y, Z, T)`` with the
    cine's affine; the labelled frames keep their labels exactly.

    Args:
        trackers: motion name -> a :class:`CineBundleInferTask` with ``output="track"``.
    """

    def __init__(self, trackers: Dict[str, CineBundleInferTask]) -> None:
        if not trackers or any(t.output != "track" for t in trackers.values()):
            raise ValueError("trackers must map motion names to CineBundleInferTask(output='track') tasks.")
        self.trackers = dict(trackers)
        offered = self._offered()
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=dict(LABELS),
            dimension=3,
            description="Propagate the label of one frame (or of ED and ES) to every frame of a cine with a motion "
            "model (" + ", ".join(offered) + ")",
            config={"motion": offered, "mode": list(PROPAGATION_MODES), "ed": 0, "refine": REFINE_ITERATIONS},
        )

    def _offered(self) -> List[str]:
        """The motion models with weights, in the order given (all of them when none has weights yet)."""
        return [name for name, t in self.trackers.items() if t.is_valid()] or list(self.trackers)

    def is_valid(self) -> bool:
        return any(t.is_valid() for t in self.trackers.values())

    def _tracker(self, request: Dict[str, Any]) -> CineBundleInferTask:
        name = str(_option(request, "motion", self._offered()[0]))
        tracker = self.trackers.get(name)
        if tracker is None:
            raise RequestError(f"unknown motion model {name!r}; choose one of {list(self.trackers)}")
        if not tracker.is_valid():
            raise RequestError(f"motion model {name!r} is not available (its bundle has no models/model.pt)")
        return tracker

    @staticmethod
    def read_labels(request: Dict[str, Any], ed: int, cine: Cine) -> Tuple[np.ndarray, List[int]]:
        """The labelled frames' labels ``(K, Z, H, W)`` and their frames, from the request's label file.

        ``cine`` is the request's image as :func:`~monai_cardiac.transforms.io.read_cine` reads it (the label is
        checked against its grid and frames).

        Raises:
            RequestError: no label file, or ``frame`` / ``frames`` that do not fit the label.
            CineDataError: a label that is not on the cine's grid, or holds values outside 0-3.
        """
        path = request.get("label")
        if not path or not isinstance(path, str):
            raise RequestError("propagation needs the label of one frame: upload it as the 'label' file")
        num_frames = cine.data.shape[0]
        try:
            shape = tuple(nib.load(path).shape)
        except Exception as err:  # nibabel raises several types for files it cannot read
            raise CineDataError(f"cannot read the label as NIfTI: {err}", path) from err
        ndim = 3 if len(shape) == 4 and shape[3] == 1 else len(shape)
        if ndim == 3:
            frame = _frame(_option(request, "frame", ed), "frame", num_frames)
            return read_nifti_labels(path, cine)[None], [frame]
        if ndim != 4:
            raise CineDataError(f"expected a label (X, Y, Z) of one frame or (X, Y, Z, T) of the cine, got a "
                                f"{ndim}D image", path)
        sequence = read_nifti_dense_labels(path, cine)  # (T, Z, H, W), checked against the cine
        frames = request.get("frames")
        if frames is None or frames == "":
            frames = [t for t in range(num_frames) if sequence[t].any()]
            if not frames:
                raise RequestError("the label sequence is empty: label at least one frame")
        frames = [_frame(f, "frames", num_frames) for f in ([frames] if isinstance(frames, (int, str)) else frames)]
        if len(set(frames)) != len(frames):
            raise RequestError(f"'frames' must be distinct, got {frames}")
        return sequence[frames], frames

    def __call__(self, request: Dict[str, Any], callbacks: Optional[Dict] = None) -> Tuple[str, Dict[str, Any]]:
        begin = time.time()
        tracker = self._tracker(request)
        entries = cine_entries(request["image"], _option(request, "ed", 0))
        ed = int(entries[0]["ed"])
        cine = read_cine(request["image"])
        labels, frames = self.read_labels(request, ed, cine)
        mode = str(_option(request, "mode", "onehot"))
        if mode not in PROPAGATION_MODES:
            raise RequestError(f"unknown mode {mode!r}; choose one of {list(PROPAGATION_MODES)}")
        refine = _iterations(_option(request, "refine", REFINE_ITERATIONS))
        slices, latency = tracker.slice_outputs({**request, "ed": ed})
        device = name_to_device(request.get("device"))
        latency["refine"], latency["propagate"] = 0.0, 0.0
        out = []
        for z, s in enumerate(slices):
            ddf = torch.as_tensor(convert_to_numpy(s["ddf"], dtype=np.float32), device=device)
            start = time.time()
            if refine:
                segmentation = label_probabilities(s["seg"]) if s.get("seg") is not None else None
                ddf = refine_tracking(cine.data[:, z], ddf, reference=ed, iterations=refine, segmentation=segmentation)
            latency["refine"] += time.time() - start
            start = time.time()
            out.append(propagate_labels(labels[:, z], frames, ddf, reference=ed, mode=mode).cpu().numpy())
            latency["propagate"] += time.time() - start
        start = time.time()
        path = tempfile.NamedTemporaryFile(suffix=".nii.gz", delete=False).name
        write_sequence_nifti(path, np.stack(out, axis=1), slices[0]["image"].meta["original_affine"], dtype=np.uint8)
        latency["write"] = time.time() - start
        latency["total"] = time.time() - begin
        motion = next(k for k, v in self.trackers.items() if v is tracker)
        result = {
            "output": "propagate",
            "motion": motion,
            "frames": frames,
            "ed": ed,
            "mode": mode,
            "refine": refine,
            "shape": list(nib.load(path).shape),
            "label_names": self.labels,
            "latencies": {k: round(v, 3) for k, v in latency.items()},
        }
        logger.info(f"propagation ({motion}, frames {frames}): {result['shape']} in {latency['total']:.2f} s")
        return path, result


def bundle_infers(bundles: Dict[str, str], conf: Dict[str, str]) -> Dict[str, InferTask]:
    """The app's inference tasks for the joint and probabilistic bundle folders.

    Args:
        bundles: ``{"joint": folder, "probabilistic": folder}``.
        conf: the app's ``--conf`` options.

    Returns:
        ``joint_segmentation``, ``joint_tracking``, ``probabilistic_tracking`` and ``propagation``.
    """
    joint, probabilistic = bundles["joint"], bundles["probabilistic"]
    trackers = {
        "joint": CineBundleInferTask(joint, conf, "track", "Joint model (Qin et al. 2018): u_{ED->t} of every frame"),
        "probabilistic": CineBundleInferTask(
            probabilistic, conf, "track", "Probabilistic motion model (Krebs et al. 2019): u_{ED->t} of every frame"
        ),
    }
    return {
        "joint_segmentation": CineBundleInferTask(
            joint, conf, "segment", "Joint model (Qin et al. 2018): labels (RV, Myo, LV) of every frame of a cine"
        ),
        "joint_tracking": trackers["joint"],
        "probabilistic_tracking": trackers["probabilistic"],
        "propagation": PropagationTask(trackers),
    }

