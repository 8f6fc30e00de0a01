"""Inference with the joint motion / segmentation network (Qin et al., MICCAI 2018), written on the input's grid.

The bundle's ``configs/inference.json`` runs, for each short-axis slice of each input cine::

    LoadCined -> CopyItemsd(ed -> input_ed) -> ReorderFromEDd -> CropAroundHeartd -> ScaleIntensityRangePercentilesd
    -> StackedJointMotionSegNet (SimpleInferer, the whole sequence, ED first)
    -> JointPredictionSplitd (labels of every frame, u_{ED->t}) -> InvertToInputGridd (back onto the input slice)
    -> SubjectSaver + JointResultWriter (one subject written once all its slices are done)

Outputs are in the input's geometry and in the frame order of the input file; ``ed`` (0-based, file order) is
recorded in the volume table. The preprocessing only crops, pads and rolls frames, it never resamples, so a
displacement in voxels of the network's grid is the same displacement in voxels of the input grid and the
crop's inverse only has to move values; :class:`InvertToInputGridd` refuses any record holding another
operation.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import Invertd, InvertibleTransform, MapTransform
from monai.utils import TraceKeys, convert_to_numpy, convert_to_tensor, optional_import

from monai_cardiac.data.acdc import acdc_datalist
from monai_cardiac.data.datalist import cine_header_shape, expand_slices
from monai_cardiac.data.dicom import dicom_datalist
from monai_cardiac.data.nifti import LABEL_IDS, NUM_CLASSES, check_label_values, nifti_image, spacing_of
from monai_cardiac.data.ukbb import ukbb_datalist
from monai_cardiac.displacement import inversion_warnings_logged, invert_displacement, propagate_labels
from monai_cardiac.engines.strain_outputs import write_strain_outputs
from monai_cardiac.engines.subject_report import write_subject_report, write_tracking_gif
from monai_cardiac.errors import CineDataError
from monai_cardiac.metrics.plausibility import report_plausibility
from monai_cardiac.metrics.stack_strain import stack_strain
from monai_cardiac.metrics.volume import ejection_fraction, structure_volume_curve

Figure, _ = optional_import("matplotlib.figure", name="Figure")

__all__ = [
    "GRID_PRESERVING_OPERATIONS",
    "InvertToInputGridd",
    "JointPredictionSplitd",
    "JointResultWriter",
    "joint_inference_datalist",
    "joint_prediction_probabilities",
    "split_joint_prediction",
    "volume_summary",
    "write_ddf_nifti",
    "write_joint_outputs",
    "write_sequence_nifti",
]

logger = logging.getLogger(__name__)

_ENTRY_KEYS = ("image", "slice", "subject", "group", "num_frames", "ed", "spacing_known")
"""Data-list keys inference keeps; labels and true motion are dropped, so nothing is centred on a label."""

GRID_PRESERVING_OPERATIONS = (
    "CropAroundHeart",
    "ReorderFromED",
    "Crop",
    "Pad",
    "SpatialCrop",
    "CenterSpatialCrop",
    "SpatialPad",
    "BorderPad",
    "DivisiblePad",
)
"""Recorded operations whose inverse moves voxel values without resampling them (crops, pads, frame rolls)."""

_VOLUME_LABELS = (("lv", LABEL_IDS["LV"]), ("rv", LABEL_IDS["RV"]), ("myo", LABEL_IDS["Myo"]))
_PLACEHOLDER_NOTE = "volumes in mL use a PLACEHOLDER voxel spacing from the file header (dataset marks it unknown)"


def _strip_nifti_suffix(name: str) -> str:
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _bare_cine_entries(path: Path, subject: str) -> list[dict]:
    """Per-slice entries of a 4D NIfTI with no side information: ED = frame 0, spacing from the header."""
    _, _, num_slices, num_frames = cine_header_shape(path)
    entry = {"image": str(path), "subject": subject, "group": "", "num_frames": num_frames, "ed": 0,
             "spacing_known": True}
    return expand_slices(entry, num_slices)


def _is_acdc_patient(folder: Path) -> bool:
    return (folder / "Info.cfg").is_file() and (folder / f"{folder.name}_4d.nii.gz").is_file()


def joint_inference_datalist(input_path: str | Path, ed_labels: bool = False) -> list[dict]:
    """Per-slice data list of the cine(s) to run inference on, whatever form the input takes.

    ``input_path`` may be:

    - a 4D NIfTI file ``(X, Y, Z, T)``: subject id = the file name without ``.nii``/``.nii.gz``, ED = frame 0;
    - an ACDC patient folder (``patientXXX/`` with ``patientXXX_4d.nii.gz`` and ``Info.cfg``) or an ACDC-layout
      dataset folder (``patient*`` sub-folders, e.g. the bundle's phantom): ED from ``Info.cfg``,
      ``spacing_known`` from the dataset's ``manifest.json`` where it has one (see :func:`acdc_datalist`);
    - a UK Biobank subject folder (holding ``sa.nii.gz``; subject id = folder name) or a folder of them
      (see :func:`ukbb_datalist`): ED = frame 0;
    - any other folder: a DICOM cine series (see :func:`dicom_datalist`): ED = frame 0.

    Label files and true motion listed by the readers are left out: inference never sees labels, so the crop
    is centred by :func:`monai_cardiac.transforms.heart_center`'s label-free fallback (the temporal standard
    deviation), as it would be on new data. With ``ed_labels``, the label file of the ED frame is kept, under
    its own key ``ed_label`` so that no transform mistakes it for the ``label`` it centres on (e.g. to propagate
    the ED labels through the cycle): ``ed_label`` is a list holding that file where the reader lists one
    (ACDC ``patientXXX_frameNN_gt.nii.gz`` of the ED frame; ``label_sa_ED.nii.gz`` in a folder of UK Biobank
    subjects, not in a single subject's folder, which is read as a bare cine) and is empty otherwise,
    ``label_frames`` holds its 0-based frame (or is empty), and ``label_map`` is kept where the
    reader gives one. :class:`monai_cardiac.transforms.LoadCined` reads them with ``label_key="ed_label"``.

    Args:
        input_path: the file or folder.
        ed_labels: keep the ED label file as described above.

    Returns:
        one entry per short-axis slice with ``image``, ``slice``, ``subject``, ``group``, ``num_frames``,
        ``ed`` (0-based frame of the file) and ``spacing_known`` (and, with ``ed_labels``, ``ed_label``,
        ``label_frames`` and where given ``label_map``).

    Raises:
        CineDataError: a missing path, a file that is not a 4D NIfTI cine, a folder of NIfTI files in neither
            the ACDC nor the UK Biobank layout, or any problem the readers find.
    """
    path = Path(input_path)
    if path.is_file():
        entries = _bare_cine_entries(path, _strip_nifti_suffix(path.name))
    elif not path.is_dir():
        raise CineDataError("input not found: expected a 4D NIfTI file, a DICOM series folder or an ACDC or "
                            "UK Biobank folder", path)
    elif _is_acdc_patient(path):
        entries = acdc_datalist(path.parent, subjects=[path.name], require_labels=False)
    elif any(_is_acdc_patient(p) for p in path.glob("patient*")):
        entries = acdc_datalist(path, require_labels=False)
    elif (path / "sa.nii.gz").is_file():
        entries = _bare_cine_entries(path / "sa.nii.gz", path.name)
    elif any((p / "sa.nii.gz").is_file() for p in path.iterdir() if p.is_dir()):
        entries = ukbb_datalist(path)
    elif any(p.name.endswith((".nii", ".nii.gz")) for p in path.iterdir()):
        raise CineDataError("the folder holds NIfTI files but is neither an ACDC nor a UK Biobank folder; pass "
                            "the 4D NIfTI file itself", path)
    else:
        entries = dicom_datalist([path])
    if not ed_labels:
        return [{k: e[k] for k in _ENTRY_KEYS if k in e} for e in entries]
    datalist = []
    for e in entries:
        item = {k: e[k] for k in (*_ENTRY_KEYS, "label_map") if k in e}
        at_ed = [(path, int(f)) for path, f in zip(e.get("label", []), e.get("label_frames", [])) if int(f) == e["ed"]]
        item["ed_label"], item["label_frames"] = [p for p, _ in at_ed], [f for _, f in at_ed]
        datalist.append(item)
    return datalist


def _prediction_parts(pred: NdarrayOrTensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``u_{t->ED}`` ``(T - 1, 2, H, W)`` and the logits ``(T, C, H, W)`` of a stacked prediction, float32.

    Raises:
        CineDataError: ``pred`` is not ``(2 (T - 1) + num_classes T, H, W)`` for a ``T >= 2``.
    """
    pred_t = convert_to_tensor(pred, track_meta=False)
    channels = pred_t.shape[0] if pred_t.ndim == 3 else 0
    num_frames, remainder = divmod(channels + 2, 2 + num_classes)
    if pred_t.ndim != 3 or remainder or num_frames < 2:
        raise CineDataError(
            f"expected a prediction (2 (T - 1) + {num_classes} T, H, W) for T >= 2 frames (outputs ddf_to_target, "
            f"seg_logits_target, seg_logits_sources), got shape {tuple(pred_t.shape)}",
            "split_joint_prediction(pred)",
        )
    pred_t = pred_t.detach().float()
    num_ddf = 2 * (num_frames - 1)
    return pred_t[:num_ddf].unflatten(0, (num_frames - 1, 2)), pred_t[num_ddf:].unflatten(0, (num_frames, num_classes))


def joint_prediction_probabilities(pred: NdarrayOrTensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """The class probabilities of every frame (soft-max of the logits) of a stacked joint prediction.

    Args:
        pred: as :func:`split_joint_prediction` takes it.
        num_classes: classes per frame.

    Returns:
        float32 ``(T, num_classes, H, W)``, ED first, on the device of ``pred``.

    Raises:
        CineDataError: as :func:`split_joint_prediction`.
    """
    return _prediction_parts(pred, num_classes)[1].softmax(1)


def split_joint_prediction(
    pred: torch.Tensor,
    num_classes: int = NUM_CLASSES,
    num_iterations: int = 50,
    tolerance: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the stacked output of one window of ``StackedJointMotionSegNet`` into labels and tracking fields.

    The network's ``outputs`` must be ``("ddf_to_target", "seg_logits_target", "seg_logits_sources")``, in
    that order, on a sequence whose frame 0 is ED: channels ``2k + i`` (``k < T - 1``) hold ``u_{k+1->ED}``
    along in-plane axis ``i`` in voxels (on the ED grid), then ``num_classes`` logits per frame, ED first.
    The segmentation is the arg-max of each frame's logits; the motion is converted to the project's
    tracking field ``u_{ED->t}`` (on frame ``t``'s grid) by :func:`monai_cardiac.displacement.invert_displacement`
    (fixed-point iteration; it warns when a field does not converge, e.g. where it folds), with the field
    of frame 0 set to exactly zero.

    Args:
        pred: ``(2 (T - 1) + num_classes T, H, W)``, any floating dtype (float16 under AMP).
        num_classes: classes per frame (4: BG, RV, Myo, LV).
        num_iterations, tolerance: of :func:`invert_displacement`.

    Returns:
        ``(labels, ddf)``: float32 class ids ``(T, H, W)`` and float32 ``u_{ED->t}`` ``(T, 2, H, W)`` in voxels,
        both on the device of ``pred``.

    Raises:
        CineDataError: ``pred`` is not 3D or its channel count is not ``2 (T - 1) + num_classes T`` for a
            ``T >= 2``.
    """
    to_ed, logits = _prediction_parts(pred, num_classes)
    labels = logits.argmax(1).float()
    from_ed = invert_displacement(to_ed, num_iterations=num_iterations, tolerance=tolerance)
    ddf = torch.cat([torch.zeros_like(from_ed[:1]), from_ed])
    return labels, ddf


class JointPredictionSplitd(MapTransform):
    """Dictionary version of :func:`split_joint_prediction`: ``d[pred_key]`` to ``d[seg_key]`` and ``d[ddf_key]``.

    Both outputs are on the network's grid, ED first (see :class:`InvertToInputGridd` to bring them back). With
    ``prob_key``, the frames' class probabilities (soft-max of the logits, ``(T, C, H, W)``, float32) are kept too,
    for the segmentation term of :class:`~monai_cardiac.engines.RefineTrackingd`.
    ``d[seg_key]`` is a MetaTensor with the meta of ``d[pred_key]`` when that is one; ``d[ddf_key]`` is a
    plain tensor, as displacements are throughout the project. An inversion that does not converge is logged once,
    naming ``d["subject"]`` and ``d["slice"]`` (:func:`monai_cardiac.displacement.inversion_warnings_logged`).

    Args:
        pred_key: key of the stacked prediction.
        seg_key: key for the labels ``(T, H, W)``.
        ddf_key: key for ``u_{ED->t}`` ``(T, 2, H, W)``.
        num_classes, num_iterations, tolerance: see :func:`split_joint_prediction`.
        prob_key: key for the class probabilities ``(T, C, H, W)``; ``None`` keeps none.
    """

    def __init__(
        self,
        pred_key: str = "pred",
        seg_key: str = "seg",
        ddf_key: str = "ddf",
        num_classes: int = NUM_CLASSES,
        num_iterations: int = 50,
        tolerance: float = 1e-3,
        prob_key: str | None = None,
    ) -> None:
        super().__init__(keys=[pred_key])
        self.pred_key, self.seg_key, self.ddf_key, self.prob_key = pred_key, seg_key, ddf_key, prob_key
        self.num_classes, self.num_iterations, self.tolerance = num_classes, num_iterations, tolerance

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        pred = d[self.pred_key]
        where = f"{d.get('subject', 'input')} slice {int(d.get('slice', 0))}"
        with inversion_warnings_logged(logger, where):
            labels, ddf = split_joint_prediction(pred, self.num_classes, self.num_iterations, self.tolerance)
        d[self.seg_key] = MetaTensor(labels, meta=dict(pred.meta)) if isinstance(pred, MetaTensor) else labels
        d[self.ddf_key] = ddf
        if self.prob_key is not None:
            d[self.prob_key] = joint_prediction_probabilities(pred, self.num_classes)
        return d


class InvertToInputGridd(MapTransform):
    """Bring sequences on the network's grid back onto the input slice's grid and frame order.

    The inverse of ``transform`` (the preprocessing) is applied as recorded on ``d[orig_key]``, with
    MONAI's :class:`~monai.transforms.Invertd`: crops are undone (zeros outside the window: background for
    labels, no displacement for fields) and frames are rolled back from ED-first to the file's order. A
    sequence ``(T, H, W)`` is inverted as it is; one with more axes between frames and image axes, e.g. a
    displacement sequence ``(T, S, H, W)`` or several samples of one ``(T, K, S, H, W)``, one ``(T, H, W)``
    sequence at a time. With ``restore_frame_order=False`` only the crops are undone and frame 0 stays ED,
    for sequences that are not the input's own frames (e.g. generated ones of another length).

    Only operations in :data:`GRID_PRESERVING_OPERATIONS` may appear in the record: their inverses move voxel
    values without interpolating them, so labels stay labels and displacements stay valid in voxels of the
    input grid. A record holding anything else (e.g. a resampling) is refused rather than inverted wrongly.

    Args:
        keys: keys of the sequences to invert.
        transform: the invertible preprocessing that produced ``d[orig_key]``.
        orig_key: key of the preprocessed image whose record is inverted.
        allow_missing_keys: don't raise for missing ``keys``.
        restore_frame_order: roll frames back to the file's order (True) or keep ED first (False).

    Raises:
        ValueError: the record of ``d[orig_key]`` holds an operation that is not grid preserving.
        CineDataError: ``d[orig_key]`` is not a MetaTensor, or a sequence has fewer than 3 axes.
    """

    _component_key = "_component"

    def __init__(
        self,
        keys: KeysCollection,
        transform: InvertibleTransform,
        orig_key: str = "image",
        allow_missing_keys: bool = False,
        restore_frame_order: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.orig_key = orig_key
        self.restore_frame_order = restore_frame_order
        self.inverter = Invertd(self._component_key, transform=transform, orig_keys=orig_key, nearest_interp=False)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        orig = d.get(self.orig_key)
        if not isinstance(orig, MetaTensor):
            raise CineDataError(f"'{self.orig_key}' must be a MetaTensor carrying the preprocessing's record",
                                type(self).__name__)
        names = [op[TraceKeys.CLASS_NAME] for op in orig.applied_operations]
        resampling = [n for n in names if n not in GRID_PRESERVING_OPERATIONS]
        if resampling:
            raise ValueError(
                f"the preprocessing of '{self.orig_key}' recorded {resampling}, which may resample; only "
                f"{list(GRID_PRESERVING_OPERATIONS)} keep labels and voxel displacements valid when inverted."
            )
        # the frame roll the inversion undoes, to be put back when the output keeps ED first
        shift = 0 if self.restore_frame_order else sum(
            int(op[TraceKeys.EXTRA_INFO]["ed"]) for op in orig.applied_operations
            if op[TraceKeys.CLASS_NAME] == "ReorderFromED"
        )
        for key in self.key_iterator(d):
            value = d[key]
            if value.ndim == 3:
                d[key] = self._invert(value, orig, shift)
            elif value.ndim > 3:
                flat = value.reshape(value.shape[0], -1, *value.shape[-2:])
                parts = [convert_to_tensor(self._invert(flat[:, i], orig, shift), track_meta=False)
                         for i in range(flat.shape[1])]
                d[key] = torch.stack(parts, dim=1).reshape(*value.shape[:-2], *parts[0].shape[-2:])
            else:
                raise CineDataError(f"'{key}' must be a sequence (T, H, W) or (T, ..., H, W), got shape "
                                    f"{tuple(value.shape)}", orig.meta.get("filename_or_obj"))
        return d

    def _invert(self, sequence: torch.Tensor, orig: MetaTensor, shift: int) -> torch.Tensor:
        component = MetaTensor(convert_to_tensor(sequence, track_meta=False))  # Invertd gives it orig's record
        out = self.inverter({self._component_key: component, self.orig_key: orig})[self._component_key]
        return torch.roll(out, -(shift % out.shape[0]), dims=0) if shift % out.shape[0] else out


def volume_summary(labels: np.ndarray, spacing: Sequence[float], ed: int) -> dict[str, Any]:
    """Volume curves (mL) of LV, RV and Myo over ``(T, Z, H, W)`` labels and EDV / ESV / EF of LV and RV."""
    summary: dict[str, Any] = {"ed_frame": ed}
    for name, label in _VOLUME_LABELS:
        summary[f"{name}_ml"] = structure_volume_curve(labels, spacing, label).numpy()
    for name in ("lv", "rv"):
        curve = summary[f"{name}_ml"]
        edv, esv, ef = ejection_fraction(curve, ed=ed)
        summary.update({f"{name}_edv_ml": edv, f"{name}_esv_ml": esv, f"{name}_es_frame": int(np.argmin(curve)),
                        f"{name}_ef": ef})
    return summary


def _write_volume_csv(path: str | Path, summary: dict[str, Any], header: dict[str, Any]) -> None:
    """``# key: value`` header lines, then the table ``frame, lv_ml, rv_ml, myo_ml``."""
    with open(path, "w", newline="") as f:
        for key, value in header.items():
            f.write(f"# {key}: {value}\n")
        writer = csv.writer(f)
        names = [f"{name}_ml" for name, _ in _VOLUME_LABELS]
        writer.writerow(["frame", *names])
        for t in range(len(summary["lv_ml"])):
            writer.writerow([t, *(f"{summary[n][t]:.4f}" for n in names)])


def _plot_volumes(path: str | Path, subject: str, summary: dict[str, Any], spacing_known: bool) -> None:
    """LV and RV volume curves with ED and ES marked, rendered with matplotlib's Agg canvas (no pyplot)."""
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot()
    frames = np.arange(len(summary["lv_ml"]))
    for name, color in (("lv", "tab:red"), ("rv", "tab:blue")):
        curve = summary[f"{name}_ml"]
        label = f"{name.upper()} (EF {100 * summary[f'{name}_ef']:.1f} %)"
        ax.plot(frames, curve, "-o", color=color, markersize=3, label=label)
        es = summary[f"{name}_es_frame"]
        ax.plot([es], [curve[es]], "v", color=color, markersize=9)
    ax.axvline(summary["ed_frame"], color="grey", linestyle="--", label="ED")
    ax.set_xlabel("frame (order of the input file)")
    ax.set_ylabel("volume (mL)")
    title = f"{subject}: LV and RV volumes (triangles: ES)"
    if not spacing_known:
        title += "\nmL based on PLACEHOLDER spacing (dataset marks the header spacing unknown)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path))


def write_sequence_nifti(path: str | Path, sequence: Any, file_affine: Any, dtype: Any = np.float32) -> str:
    """Write a sequence ``(T, Z, H, W)`` (e.g. a cine or labels of every frame) as a NIfTI ``(X, Y, Z, T)``.

    Args:
        path: the file to write.
        sequence: ``(T, Z, H, W)``, frames in the order they are to be stored.
        file_affine: the input's 4 x 4 ``(i, j, k)`` affine (``meta["original_affine"]``).
        dtype: dtype of the stored voxels.

    Returns:
        ``path`` as a string.

    Raises:
        CineDataError: ``sequence`` is not 4D or holds non-finite values.
    """
    data = convert_to_numpy(sequence)
    if data.ndim != 4 or not np.isfinite(data).all():
        raise CineDataError(f"expected a finite sequence (T, Z, H, W), got shape {data.shape}", path)
    affine = convert_to_numpy(file_affine, dtype=np.float64)
    nib.save(nifti_image(data.astype(dtype).transpose(2, 3, 1, 0), affine), str(path))
    return str(path)


def write_ddf_nifti(path: str | Path, ddf: Any, file_affine: Any) -> str:
    """Write a displacement sequence ``(T, 2, Z, H, W)`` in voxels as a float32 NIfTI ``(X, Y, Z, T, 2)``.

    Components are along ``(X, Y)`` = ``(H, W)``: the layout :func:`monai_cardiac.data.read_nifti_ddf` reads.

    Args:
        path: the file to write.
        ddf: ``(T, 2, Z, H, W)`` in voxels.
        file_affine: the input's 4 x 4 ``(i, j, k)`` affine.

    Returns:
        ``path`` as a string.

    Raises:
        CineDataError: ``ddf`` is not shaped ``(T, 2, Z, H, W)`` or holds non-finite values.
    """
    data = convert_to_numpy(ddf, dtype=np.float32)
    if data.ndim != 5 or data.shape[1] != 2:
        raise CineDataError(f"expected a displacement sequence (T, 2, Z, H, W), got shape {data.shape}", path)
    if not np.isfinite(data).all():
        raise CineDataError("the displacement holds non-finite values", path)
    affine = convert_to_numpy(file_affine, dtype=np.float64)
    nib.save(nifti_image(data.transpose(3, 4, 2, 0, 1), affine), str(path))
    return str(path)


def write_joint_outputs(
    output_dir: str | Path,
    subject: str,
    labels: Any | None,
    ddf: Any,
    file_affine: Any,
    ed: int,
    spacing_known: bool = True,
    source: str | None = None,
    plot: bool = True,
    strain: bool = True,
    roi_size: Sequence[int] | None = None,
    image: Any | None = None,
) -> dict[str, Any]:
    """Write one subject's segmentation, motion, volume table and plot, strain and report into ``output_dir/subject/``.

    Files (``X, Y, Z`` are the input's voxel axes, i.e. ``H, W, Z``; frames in the input file's order):

    - ``<subject>_seg.nii.gz``: uint8 ``(X, Y, Z, T)``, 0 BG, 1 RV, 2 Myo, 3 LV;
    - ``<subject>_ddf_ed_to_t.nii.gz``: float32 ``(X, Y, Z, T, 2)``, ``u_{ED->t}`` in voxels, components along
      ``(X, Y)`` = ``(H, W)``, zero at frame ``ed`` (the layout :func:`monai_cardiac.data.read_nifti_ddf` reads);
    - ``<subject>_volumes.csv``: ``# key: value`` header lines (subject, source, ED frame, spacing, EDV, ESV
      (the smallest volume), ES frame, EF of LV and RV, and a note when the spacing is a placeholder), then
      the columns ``frame, lv_ml, rv_ml, myo_ml``;
    - ``<subject>_volumes.png``: the LV and RV curves with ED and ES marked (if ``plot``);
    - with ``strain``, the files of :func:`~monai_cardiac.engines.strain_outputs.write_strain_outputs` (strain
      curves, AHA segment table with wall thickness, bull's-eye) from
      :func:`~monai_cardiac.metrics.stack_strain.stack_strain` of the labels and ``u_{ED->t}`` (skipped with a
      warning when the ED labels hold no myocardium);
    - with ``labels`` and ``plot``, ``<subject>_overlay.gif`` (with ``image``: the cine with the contours of the ED
      labels carried by ``u_{ED->t}``, :func:`~monai_cardiac.engines.subject_report.write_tracking_gif`) and
      ``<subject>_report.html`` (volumes, EF, strain, the pictures and the plausibility warnings on one page,
      :func:`~monai_cardiac.engines.subject_report.write_subject_report`).

    Both NIfTI files carry ``file_affine``. Volumes use the voxel size of ``file_affine`` including the
    slice spacing. Without ``labels`` only the displacement file is written.

    Args:
        output_dir: folder that receives the subject's folder.
        subject: subject id (folder and file prefix).
        labels: class ids ``(T, Z, H, W)``, frames in file order, or None (motion only).
        ddf: ``u_{ED->t}`` ``(T, 2, Z, H, W)`` in voxels, frames in file order.
        file_affine: the input's 4 x 4 ``(i, j, k)`` affine (``meta["original_affine"]``).
        ed: 0-based ED frame in file order.
        spacing_known: False where the dataset marks the header spacing as a placeholder.
        source: the input file, recorded in the table.
        plot: write the PNGs (needs matplotlib).
        strain: write the strain files.
        roi_size: the network's crop ``(h, w)``, for the plausibility flags.
        image: the input cine ``(T, Z, H, W)`` on the same grid and frame order, for the overlay GIF (None: none).

    Returns:
        ``{"files": {kind: path}, "summary": {...}, "flags": [...]}`` with the curves as arrays and the EDV / ESV /
        EF values (an empty summary without ``labels``), with ``strain`` the global strain under ``"strain"``, and
        the :func:`~monai_cardiac.metrics.plausibility.plausibility_flags` of the input and the volumes (also
        written as the ``flags`` header line of the volume table and logged as a warning).

    Raises:
        CineDataError: shapes that disagree, ``ed`` outside the frames, labels outside 0-3, non-finite motion.
    """
    ddf_np = convert_to_numpy(ddf, dtype=np.float32)
    affine = convert_to_numpy(file_affine, dtype=np.float64)
    labels_np = None if labels is None else convert_to_numpy(labels)
    expected = ddf_np.shape[:1] + ddf_np.shape[2:] if labels_np is None else labels_np.shape
    if len(expected) != 4 or ddf_np.shape != (expected[0], 2, *expected[1:]):
        got = "no labels" if labels_np is None else f"labels {labels_np.shape}"
        raise CineDataError(f"expected labels (T, Z, H, W) and ddf (T, 2, Z, H, W), got {got} and ddf "
                            f"{ddf_np.shape}", subject)
    if not 0 <= ed < expected[0]:
        raise CineDataError(f"ED frame {ed} is outside the {expected[0]} frames", subject)
    if not np.isfinite(ddf_np).all():
        raise CineDataError("the displacement holds non-finite values", subject)
    if labels_np is not None:
        labels_np = check_label_values(labels_np, subject)
    folder = Path(output_dir) / subject
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path | str] = {"ddf": folder / f"{subject}_ddf_ed_to_t.nii.gz"}
    write_ddf_nifti(files["ddf"], ddf_np, affine)
    s_h, s_w, s_z = spacing_of(affine)
    geometry = {"spacing_mm": (s_h, s_w, s_z), "image_size": expected[2:], "roi_size": roi_size,
                "num_frames": expected[0]}
    if labels_np is None:
        flags = report_plausibility(subject, logger, **geometry)
        logger.info(f"{subject}: motion written to {folder}")
        return {"files": {k: str(v) for k, v in files.items()}, "summary": {}, "flags": flags}
    files.update(seg=folder / f"{subject}_seg.nii.gz", volumes=folder / f"{subject}_volumes.csv")
    write_sequence_nifti(files["seg"], labels_np, affine, dtype=labels_np.dtype)

    summary = volume_summary(labels_np, (s_z, s_h, s_w), ed)
    flags = report_plausibility(
        subject, logger, **geometry, volumes={k: summary[k] for k in ("lv_edv_ml", "rv_edv_ml", "lv_ef", "rv_ef")})
    header = {"subject": subject, "source": source or "", "ed_frame": f"{ed} (0-based, frame order of the input file)",
              "spacing_mm": f"{s_h:.4g} x {s_w:.4g} x {s_z:.4g} (in-plane x slice spacing, from the input's affine)"}
    if not spacing_known:
        header["note"] = _PLACEHOLDER_NOTE
    for name in ("lv", "rv"):
        header[f"{name}_edv_ml"] = f"{summary[f'{name}_edv_ml']:.4f}"
        header[f"{name}_esv_ml"] = f"{summary[f'{name}_esv_ml']:.4f}"
        header[f"{name}_es_frame"] = summary[f"{name}_es_frame"]
        header[f"{name}_ef"] = f"{summary[f'{name}_ef']:.6f}"
    header["flags"] = "; ".join(flags) or "none"
    _write_volume_csv(files["volumes"], summary, header)
    if plot:
        files["plot"] = folder / f"{subject}_volumes.png"
        _plot_volumes(files["plot"], subject, summary, spacing_known)
    result = None
    if strain:
        try:
            with inversion_warnings_logged(logger, f"{subject} strain"):
                result = stack_strain(labels_np, ddf_np, (s_h, s_w), ed, es=summary["lv_es_frame"])
        except CineDataError as error:
            logger.warning(f"{subject}: no strain written: {error.problem}")
        else:
            keep = ("subject", "source", "ed_frame", "spacing_mm", "note")
            files.update(write_strain_outputs(folder, subject, result, {k: header[k] for k in keep if k in header},
                                              plot))
            summary["strain"] = result["global"]
    if plot:
        if image is not None and not (labels_np[ed] > 0).any():
            logger.warning(f"{subject}: no overlay written: the ED labels hold no structure to track")
        elif image is not None:
            tracked = propagate_labels(labels_np[ed], torch.as_tensor(ddf_np).movedim(2, 1)).numpy()  # (T, Z, H, W)
            files["overlay"] = Path(write_tracking_gif(folder / f"{subject}_overlay.gif", convert_to_numpy(image),
                                                       tracked, ed))
        files["report"] = Path(write_subject_report(
            folder, subject, {k: str(v) for k, v in files.items()}, summary, flags, result,
            {k: header[k] for k in ("source", "ed_frame", "spacing_mm", "note") if k in header}))
    logger.info(
        f"{subject}: LV EDV {summary['lv_edv_ml']:.1f} mL, ESV {summary['lv_esv_ml']:.1f} mL, "
        f"EF {100 * summary['lv_ef']:.1f} %; RV EF {100 * summary['rv_ef']:.1f} %; written to {folder}"
        + ("" if spacing_known else " (placeholder spacing)")
    )
    return {"files": {k: str(v) for k, v in files.items()}, "summary": summary, "flags": flags}


class JointResultWriter:
    """Writer for :class:`monai_cardiac.handlers.SubjectSaver`: stack a subject's slices, then write them.

    The stacked arrays go to :func:`write_joint_outputs`. Each slice record holds ``seg_key`` (labels
    ``(T, H, W)``), ``ddf_key`` (``u_{ED->t}`` ``(T, 2, H, W)``),
    both on the input slice's grid in file frame order, ``ed_key`` (the file's ED frame),
    ``spacing_known_key`` (optional, default True) and ``"meta"`` (with ``original_affine`` and
    ``filename_or_obj``).

    Args:
        output_dir: folder that receives one folder per subject.
        seg_key, ddf_key, ed_key, spacing_known_key: keys of the slice records.
        image_key: key of the input cine ``(T, H, W)`` on the input grid in file order (the bundle copies the loaded
            image before preprocessing, ``CopyItemsd``), for the overlay GIF; None: no overlay.
        plot: write the plots.
        strain: write the strain files (:func:`write_joint_outputs`).
        roi_size: the network's crop, for the plausibility flags.
    """

    def __init__(
        self,
        output_dir: str | Path,
        seg_key: str = "seg",
        ddf_key: str = "ddf",
        ed_key: str = "input_ed",
        spacing_known_key: str = "spacing_known",
        plot: bool = True,
        strain: bool = True,
        roi_size: Sequence[int] | None = None,
        image_key: str | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.seg_key, self.ddf_key, self.ed_key, self.spacing_known_key = seg_key, ddf_key, ed_key, spacing_known_key
        self.plot, self.strain, self.roi_size, self.image_key = plot, strain, roi_size, image_key

    def __call__(self, subject: str, slices: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Write ``subject`` from its slice records (slice ``z`` at position ``z``); see :func:`write_joint_outputs`."""
        labels = np.stack([convert_to_numpy(s[self.seg_key]) for s in slices], axis=1)
        ddf = np.stack([convert_to_numpy(s[self.ddf_key]) for s in slices], axis=2)
        image = None if self.image_key is None else np.stack([convert_to_numpy(s[self.image_key]) for s in slices], 1)
        first = slices[0]
        meta = first["meta"]
        return write_joint_outputs(
            self.output_dir,
            subject,
            labels,
            ddf,
            meta["original_affine"],
            int(first[self.ed_key]),
            bool(first.get(self.spacing_known_key, True)),
            str(meta.get("filename_or_obj", "")),
            self.plot,
            self.strain,
            self.roi_size,
            image,
        )
