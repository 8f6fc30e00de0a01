"""Robustness of a bundle's model to how a site stores its cines: the eight in-plane orientations and a full view.

Each slice of a split is re-laid before the bundles' evaluation pipeline sees it, as a scanner or converter could
have stored it: rotated by 0, 90, 180 or 270 degrees, each with or without a mirror, and (separately) zero-padded
to a 256 x 256 field of view. The pipeline then does what inference does (crop around the heart found from the
images alone, intensities scaled on the crop). The joint model is scored per volume (3D Dice of each structure,
mean of ED and ES) and by the Dice of ES labels warped onto ED; the probabilistic motion model (no segmentation)
by the Dice of ED labels warped onto ES with ``u_{ED->ES}`` (tracking) and of ES labels warped onto ED with
``u_{ES->ED}``, means over slices. Every figure is compared with the stored orientation's; the check passes when
each differs by at most ``--tolerance`` (0.02).

    python bundles/scripts/orientation_check.py --dataset_dir /path/to/acdc --checkpoint model.pt \\
        --config bundles/joint/configs/train.json bundles/joint/configs/acdc.json --output_dir /tmp/orient
    python bundles/scripts/orientation_check.py --dataset_dir /path/to/acdc \\
        --checkpoint bundles/probabilistic_motion/models/acdc/model.pt \\
        --config bundles/probabilistic_motion/configs/train.json --output_dir /tmp/orient_prob

Writes ``orientation_check.json`` and ``orientation_check.md`` (one row per view) into ``--output_dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Flipd, Rotate90d, SpatialPadd

from monai_cardiac.baselines.data import SPLITS, cine_preprocessing, split_datalist
from monai_cardiac.checkpoints import load_model_weights
from monai_cardiac.engines.joint_evaluation import evaluate_joint_datalist, volume_rows
from monai_cardiac.engines.probabilistic_evaluation import evaluate_motion_datalist
from monai_cardiac.inferers import dihedral_transforms
from monai_cardiac.networks import ProbabilisticMotionModel

STRUCTURES = ("LV", "Myo", "RV")
KEYS = ["image", "label"]


def views(padded_size: int = 256) -> dict[str, list]:
    """The re-layings to test, by name: the eight orientations and the padded field of view."""
    result = {}
    for k, mirrored in dihedral_transforms():
        steps = ([Flipd(KEYS, spatial_axis=0)] if mirrored else []) + ([Rotate90d(KEYS, k=k)] if k else [])
        result[f"rot{90 * k}{'+mirror' if mirrored else ''}"] = steps
    result[f"padded {padded_size}x{padded_size}"] = [SpatialPadd(KEYS, spatial_size=(padded_size, padded_size))]
    return result


JOINT_COLUMNS = [f"vol_dice_{s}" for s in STRUCTURES] + [f"warp_dice_{s}" for s in STRUCTURES]
MOTION_COLUMNS = [f"track_dice_{s}" for s in STRUCTURES] + [f"comp_dice_{s}" for s in STRUCTURES]


def score(rows: list[dict]) -> dict[str, float]:
    """Joint model: per-volume Dice (mean over patients) and warped ES -> ED Dice (mean over slices) per structure."""
    volumes = volume_rows(rows)
    result = {f"vol_dice_{s}": float(np.nanmean([v[f"vol_dice_{s}"] for v in volumes])) for s in STRUCTURES}
    result.update({f"warp_dice_{s}": float(np.nanmean([r[f"warp_dice_{s}"] for r in rows])) for s in STRUCTURES})
    result["lv_ef_abs_error"] = float(np.nanmean([v["lv_ef_abs_error"] for v in volumes]))
    return result


def motion_score(rows: list[dict]) -> dict[str, float]:
    """Motion model: tracking (ED -> ES) and compensation (ES -> ED) warped-label Dice per structure, mean over
    slices, and the LV ejection fraction error of the tracked ED labels in points."""
    result = {c: float(np.nanmean([r[c] for r in rows])) for c in MOTION_COLUMNS}
    result["lv_ef_abs_error"] = 100.0 * float(np.nanmean([r["lv_ef_abs_error"] for r in rows]))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="ACDC-layout folder")
    parser.add_argument("--checkpoint", required=True, help="the model's weights")
    parser.add_argument("--config", nargs="+", default=["bundles/joint/configs/train.json"],
                        help="bundle config files that define network_def and roi_size (later ones override)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--no_ensemble", action="store_true", help="run the network once, not averaged over "
                        "orientations (the inference bundle's orientation_ensemble false)")
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--max_slices", type=int, help="only the first N slices (a quick look)")
    args = parser.parse_args(argv)

    config = ConfigParser()
    config.read_config(args.config)
    network = config.get_parsed_content("network_def")
    roi_size = config.get_parsed_content("roi_size")
    load_model_weights(network, args.checkpoint)
    entries = split_datalist(args.dataset_dir, args.split)[: args.max_slices]
    motion_model = isinstance(network, ProbabilisticMotionModel)
    ensemble = not args.no_ensemble
    results = {}
    for name, relaying in views().items():
        preprocessing = cine_preprocessing(roi_size, relaying)
        with torch.inference_mode():
            if motion_model:
                results[name] = motion_score(evaluate_motion_datalist(network, entries, preprocessing,
                                                                      orientation_ensemble=ensemble))
            else:
                results[name] = score(evaluate_joint_datalist(network, entries, preprocessing,
                                                              orientation_ensemble=ensemble))
        print(name, json.dumps({k: round(v, 4) for k, v in results[name].items()}), flush=True)
    stored = results["rot0"]
    columns = MOTION_COLUMNS if motion_model else JOINT_COLUMNS
    for result in results.values():
        result["max_abs_difference"] = max(abs(result[c] - stored[c]) for c in columns)
    passed = all(r["max_abs_difference"] <= args.tolerance for r in results.values())
    if motion_model:
        legend = (f"orientation ensemble {'on' if ensemble else 'off'}; tracking = ED labels warped onto ES, "
                  "compensation = ES labels warped onto ED, means over slices; LV EF error of the tracking, points.")
        header = "| view | tracking LV | tracking Myo | tracking RV | comp. LV | comp. Myo | comp. RV |"
    else:
        legend = (f"orientation ensemble {'on' if ensemble else 'off'}; per-volume Dice = mean over patients of the "
                  "3D Dice (mean of ED and ES); warped = ES labels warped onto ED, mean over slices.")
        header = "| view | vol Dice LV | vol Dice Myo | vol Dice RV | warped LV | warped Myo | warped RV |"
    lines = [f"Split {args.split} ({len(entries)} slices), checkpoint {args.checkpoint}; {legend}", "",
             header + " LV EF abs err | max abs diff vs stored |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        cells = [f"{r[c]:.3f}" for c in columns] + [f"{r['lv_ef_abs_error']:.1f}", f"{r['max_abs_difference']:.4f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Verdict (every figure within {args.tolerance} of the stored orientation's): "
              f"{'PASSED' if passed else 'FAILED'}"]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "orientation_check.json").write_text(json.dumps({"results": results, "passed": passed,
                                                            "command": " ".join(sys.argv)}, indent=1))
    (out / "orientation_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
