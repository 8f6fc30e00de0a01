"""Label propagation as the MONAI Label app runs it, scored per volume: ED label -> ES, against the ES label.

For each patient of a split, the joint inference bundle (``configs/inference.json`` + ``configs/acdc.json``, the
shipped weights unless ``--checkpoint`` is given) tracks the 4D cine; each slice's tracking fields are refined on
its own frames (``refine_tracking``, ``--refine`` iterations per level, the app's default 100, with the one-hot of the
bundle's labels of every frame in the segmentation term, as the app does) and the ED label
is carried to every frame (``propagate_labels``, one-hot mode): the same functions, in the same order, as the app's
``/infer/propagation`` (apps/cardiac_label/lib/infers.py), without the HTTP server. The propagated ES labels are
compared with the expert ES labels: Dice per structure over the patient's whole stack.

    python bundles/joint/scripts/propagation_check.py --dataset_dir /path/to/acdc --split test --output_dir /tmp/prop
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigWorkflow

from monai_cardiac.baselines.data import SPLITS, split_datalist
from monai_cardiac.data import (
    acdc_datalist,
    read_nifti_cine,
    read_nifti_ddf,
    read_nifti_dense_labels,
    read_nifti_labels,
)
from monai_cardiac.data.nifti import STRUCTURES
from monai_cardiac.engines import label_probabilities, propagate_labels, refine_tracking

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def track(image: str, output_dir: Path, checkpoint: str | None) -> tuple[Path, Path]:
    """Run the joint inference bundle on one 4D cine; the paths of its ``u_{ED->t}`` and label files."""
    overrides = {"input": image, "output_dir": str(output_dir), "bundle_root": str(CONFIGS.parent)}
    if checkpoint:
        overrides["ckpt_path"] = checkpoint
    workflow = ConfigWorkflow(config_file=[str(CONFIGS / "inference.json"), str(CONFIGS / "acdc.json")],
                              meta_file=str(CONFIGS / "metadata.json"), workflow_type="infer", logging_file=False,
                              **overrides)
    workflow.initialize()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="invert_displacement did not converge")
        workflow.run()
    workflow.finalize()
    return next(output_dir.rglob("*_ddf_ed_to_t.nii.gz")), next(output_dir.rglob("*_seg.nii.gz"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--checkpoint", help="weights (default: the shipped models/acdc/model.pt)")
    parser.add_argument("--refine", type=int, default=100, help="refinement iterations per level (the app's default)")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    subjects = sorted({e["subject"] for e in split_datalist(args.dataset_dir, args.split)})
    rows = []
    for entry in acdc_datalist(args.dataset_dir, per="volume", subjects=subjects):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            ddf_path, seg_path = track(entry["image"], Path(tmp), args.checkpoint)
            cine = read_nifti_cine(entry["image"])
            ddf = torch.as_tensor(read_nifti_ddf(ddf_path, cine))[:, 1:]  # (T, 2, Z, H, W): in-plane components
            segmentation = torch.as_tensor(read_nifti_dense_labels(seg_path, cine))  # (T, Z, H, W)
        ed, es = int(entry["ed"]), int(entry["es"])
        labels = {f: read_nifti_labels(p, cine) for f, p in zip(entry["label_frames"], entry["label"])}
        propagated = []
        for z in range(cine.data.shape[1]):
            fields = ddf[:, :, z]
            if args.refine:
                fields = refine_tracking(cine.data[:, z], fields, reference=ed, iterations=args.refine,
                                         segmentation=label_probabilities(segmentation[:, z]))
            propagated.append(propagate_labels(labels[ed][z][None], [ed], fields, reference=ed)[es].numpy())
        propagated = np.stack(propagated)
        row = {"subject": entry["subject"], "group": entry["group"], "seconds": time.perf_counter() - start}
        for index, name in enumerate(STRUCTURES, start=1):
            p, r = propagated == index, labels[es] == index
            total = p.sum() + r.sum()
            row[f"dice_{name}"] = float(2 * (p & r).sum() / total) if total else float("nan")
        rows.append(row)
        print(json.dumps(row), flush=True)
    means = {name: float(np.nanmean([r[f"dice_{name}"] for r in rows])) for name in STRUCTURES}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"split": args.split, "refine": args.refine, "checkpoint": args.checkpoint or "models/acdc/model.pt",
              "patients": len(rows), "mean_dice": means, "rows": rows, "command": " ".join(sys.argv)}
    (out / "propagation_check.json").write_text(json.dumps(result, indent=1))
    print(
        f"per-volume ES Dice, mean over {len(rows)} patients: "
        + " / ".join(f"{k} {v:.3f}" for k, v in means.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
