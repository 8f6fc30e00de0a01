"""Propagation figures through a running server: ED label -> every frame, scored at ES against the ES label.

For each patient of an ACDC-layout folder (``patientXXX/patientXXX_4d.nii.gz``, ``Info.cfg``,
``patientXXX_frameNN_gt.nii.gz``; the phantom written by make_phantom_datastore.py has this layout too), the cine
and its ED label are uploaded to ``/infer/propagation`` (``ed`` from ``Info.cfg``), and the returned labels of the ES
frame are compared with the ES label: Dice per structure over the patient's volume and per slice (slices where
both are empty left out), and the server's latency of the request.

Usage (the app's environment; data are read from their folder, outputs go where --output says)::

    python apps/cardiac_label/propagation_figures.py --url http://127.0.0.1:8000 --dataset /path/to/acdc \
        [--test-split | --patients patient008 patient035] [--motion joint] [--output /tmp/figures.json]

``--test-split`` keeps the patients of the bundles' test split (``monai_cardiac.baselines.data.split_datalist``, which
reads the split from the joint bundle's ``configs/train.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import requests
from requests_toolbelt.multipart.decoder import MultipartDecoder

from monai_cardiac.baselines.data import split_datalist
from monai_cardiac.data import acdc_datalist
from monai_cardiac.data.nifti import STRUCTURES
from monai_cardiac.metrics.overlap import compute_dice

__all__ = ["main", "propagation_figures"]


def _rounded(values) -> dict:
    return {name: round(float(v), 4) for name, v in zip(STRUCTURES, values)}


def _dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of RV, Myo, LV of two label maps of any shape (one batch item)."""
    return compute_dice(pred[None, None], truth[None, None], num_classes=4)[0].numpy()


def propagation_figures(url: str, dataset: str | Path, patients: list[str] | None = None, motion: str = "joint",
                        mode: str = "onehot") -> dict:
    """Run the propagation of each patient's ED label through the server and score it at ES.

    Returns:
        ``{"patients": {id: {"dice_volume": {...}, "dice_slices": {...}, "latency_s", "request_s", ...}},
        "mean_dice_volume", "std_dice_volume", "mean_dice_slices", "slices", "mean_latency_s"}``.
    """
    entries = acdc_datalist(dataset, per="volume", subjects=patients)
    rows, slice_scores = {}, []
    for entry in entries:
        frames = dict(zip(entry["label_frames"], entry["label"]))
        ed, es = int(entry["ed"]), int(entry["es"])
        start = time.time()
        with open(entry["image"], "rb") as cine, open(frames[ed], "rb") as label:
            response = requests.post(f"{url}/infer/propagation", params={"output": "all"}, timeout=1800,
                                     data={"params": json.dumps({"motion": motion, "ed": ed, "frame": ed,
                                                                 "mode": mode})},
                                     files={"file": ("cine.nii.gz", cine), "label": ("ed.nii.gz", label)})
        elapsed = time.time() - start
        response.raise_for_status()
        result, labels = None, None
        for part in MultipartDecoder(response.content, response.headers["content-type"]).parts:
            if b'name="params"' in part.headers.get(b"Content-Disposition", b""):
                result = json.loads(part.content)
            else:
                with tempfile.NamedTemporaryFile(suffix=".nii.gz") as f:
                    f.write(part.content)
                    f.flush()
                    labels = np.asarray(nib.load(f.name).dataobj)
        truth = np.asarray(nib.load(frames[es]).dataobj)  # (X, Y, Z)
        pred = labels[..., es]
        per_slice = []
        for z in range(truth.shape[2]):
            if truth[:, :, z].any() or pred[:, :, z].any():
                per_slice.append(_dice(pred[:, :, z], truth[:, :, z]))
        slice_scores.extend(per_slice)
        rows[entry["subject"]] = {
            "ed": ed, "es": es, "frames": labels.shape[-1], "slices": truth.shape[2],
            "dice_volume": _rounded(_dice(pred, truth)),
            "dice_slices": _rounded(np.mean(per_slice, axis=0)),
            "latency_s": result["latencies"]["total"], "request_s": round(elapsed, 3),
        }
        print(entry["subject"], rows[entry["subject"]], flush=True)
    volume = np.array([[r["dice_volume"][s] for s in STRUCTURES] for r in rows.values()])
    return {
        "motion": motion, "mode": mode, "patients": rows,
        "mean_dice_volume": _rounded(volume.mean(0)),
        "std_dice_volume": _rounded(volume.std(0)),
        "mean_dice_slices": _rounded(np.mean(slice_scores, axis=0)),
        "std_dice_slices": _rounded(np.std(slice_scores, axis=0)),
        "slices": len(slice_scores),
        "mean_latency_s": round(float(np.mean([r["latency_s"] for r in rows.values()])), 3),
        "mean_request_s": round(float(np.mean([r["request_s"] for r in rows.values()])), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--dataset", required=True, help="ACDC-layout folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--patients", nargs="+")
    group.add_argument("--test-split", action="store_true")
    parser.add_argument("--motion", default="joint")
    parser.add_argument("--mode", default="onehot")
    parser.add_argument("--output", help="JSON file for the figures (keep it outside the repository for real data)")
    args = parser.parse_args(argv)
    patients = args.patients
    if args.test_split:
        patients = sorted({e["subject"] for e in split_datalist(args.dataset, "test")})
    figures = propagation_figures(args.url, args.dataset, patients, args.motion, args.mode)
    summary = {k: v for k, v in figures.items() if k != "patients"}
    print(json.dumps(summary, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
