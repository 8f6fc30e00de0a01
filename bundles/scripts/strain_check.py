"""Strain of the models' motion against the phantom's true strain (shared by both bundles).

For phantom stacks of each diagnosis group (the project's phantom, base to apex, noise and bias field as the
default data), the true motion ``u_{ED->t}`` and each model's (the joint network's ``u_{t->ED}`` inverted; the
probabilistic model's ``u_{ED->t}``; optionally refined with ``refine_tracking``'s defaults) go through the same
:func:`monai_cardiac.metrics.stack_strain` with the true ED and ES labels, so only the motion differs. Reported:
peak global radial and circumferential strain (%) and their differences to the truth, per subject and model.

    python bundles/scripts/strain_check.py --joint_checkpoint bundles/joint/models/acdc/model.pt \\
        --prob_checkpoint bundles/probabilistic_motion/models/acdc/model.pt --output_dir /tmp/strain_check

Writes ``strain_check.json`` and ``strain_check.md`` into ``--output_dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import ScaleIntensityRangePercentiles

from monai_cardiac.baselines.benchmark import bundle_network, tracking_field
from monai_cardiac.checkpoints import load_model_weights
from monai_cardiac.data import PHANTOM_GROUPS, make_cine_phantom
from monai_cardiac.engines.probabilistic_evaluation import motion_fields
from monai_cardiac.engines.tracking_refinement import refine_tracking
from monai_cardiac.metrics import PEAK_STRAIN_KEYS, stack_strain


def _network(name: str, checkpoint: str) -> torch.nn.Module:
    """The bundle's network (``"joint"`` or ``"probabilistic"``, as the benchmark builds it) with ``checkpoint``."""
    network = bundle_network(name)
    load_model_weights(network, checkpoint, "cpu")
    return network.eval()


def tracking_fields(network: torch.nn.Module, cine: np.ndarray, refine: bool) -> np.ndarray:
    """``u_{ED->t}`` ``(T, 2, Z, H, W)`` of a phantom stack ``(T, Z, H, W)`` (ED first), slice by slice."""
    scale = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)
    fields = []
    for z in range(cine.shape[1]):
        image = torch.as_tensor(scale(cine[:, z]), dtype=torch.float32)
        with torch.no_grad():
            out = motion_fields(network, image)
        u = tracking_field(out)
        u = torch.cat([torch.zeros_like(u[:1]), u])  # ED's own field first
        # the joint network's soft-max enters the refinement's segmentation term; the probabilistic model has none
        fields.append(refine_tracking(image, u, segmentation=out.get("probabilities")) if refine else u)
    return torch.stack(fields, dim=2).numpy()


def phantom_strain(p: dict, fields: np.ndarray) -> dict:
    """``stack_strain`` of a phantom stack ``p`` from ``u_{ED->t}`` ``(T, 2, Z, H, W)``, with its true labels."""
    return stack_strain(p["label"], fields, tuple(p["spacing"][1:]), ed=0, es=int(p["es"]))


def method_strains(models: dict, p: dict, no_refine: bool) -> dict[str, dict]:
    """:func:`phantom_strain` of the true motion (``"truth"``) and of each model's fields (and refined ones)."""
    strains = {"truth": phantom_strain(p, p["ddf"][:, 1:])}
    for name, network in models.items():
        for refine in (False, True)[: 1 if no_refine else 2]:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="invert_displacement did not converge")
                fields = tracking_fields(network, p["image"], refine)
                strains[name + ("+refine" if refine else "")] = phantom_strain(p, fields)
    return strains


def weakest_segments(strain: dict) -> dict[str, int]:
    """Per AHA level, the segment whose peak circumferential strain is smallest in magnitude."""
    weakest: dict[str, tuple[float, int]] = {}
    for key, segment in strain["segments"].items():
        magnitude = abs(segment["peak_circumferential_percent"])
        if segment["level"] not in weakest or magnitude < weakest[segment["level"]][0]:
            weakest[segment["level"]] = (magnitude, int(key))
    return {level: seg for level, (_, seg) in weakest.items()}


def akinetic_rows(models: dict, seeds: Sequence[int], slices: int, frames: int, no_refine: bool) -> list[dict]:
    """Per akinetic MINF phantom stack: each method's weakest segment per level against the truth's."""
    rows = []
    for seed in seeds:
        p = make_cine_phantom(seed, num_frames=frames, spatial_size=(96, 96), num_slices=slices, akinetic=True)
        row = {"seed": seed, **{m: weakest_segments(s) for m, s in method_strains(models, p, no_refine).items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joint_checkpoint")
    parser.add_argument("--prob_checkpoint")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12], help="phantom seeds per group")
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--no_refine", action="store_true", help="leave out the refined rows")
    parser.add_argument("--akinetic_seeds", type=int, nargs="*", default=[21],
                        help="seeds of the akinetic MINF stacks (the segment detection check); none to skip")
    args = parser.parse_args(argv)
    models = {}
    if args.joint_checkpoint:
        models["joint"] = _network("joint", args.joint_checkpoint)
    if args.prob_checkpoint:
        models["probabilistic"] = _network("probabilistic", args.prob_checkpoint)
    rows = []
    for group in PHANTOM_GROUPS:
        for seed in args.seeds:
            p = make_cine_phantom(seed, num_frames=args.frames, spatial_size=(96, 96), num_slices=args.slices,
                                  group=group)
            strains = method_strains(models, p, args.no_refine)
            peaks = {m: {k: s["global"][k] for k in PEAK_STRAIN_KEYS} for m, s in strains.items()}
            row = {"group": group, "seed": seed, **peaks}
            rows.append(row)
            print(json.dumps(row), flush=True)
    methods = [k for k in rows[0] if k not in ("group", "seed")]
    summary = {m: {k: float(np.mean([abs(r[m][k] - r["truth"][k]) for r in rows])) for k in PEAK_STRAIN_KEYS}
               for m in methods}
    radial, circumferential = PEAK_STRAIN_KEYS
    lines = ["| method | mean peak radial % | mean peak circumferential % | mean abs error radial | mean abs error "
             "circumferential |", "|---|---|---|---|---|"]
    for m in methods:
        lines.append(f"| {m} | {np.mean([r[m][radial] for r in rows]):.1f} | "
                     f"{np.mean([r[m][circumferential] for r in rows]):.1f} | {summary[m][radial]:.1f} | "
                     f"{summary[m][circumferential]:.1f} |")
    akinetic = akinetic_rows(models, args.akinetic_seeds, args.slices, args.frames, args.no_refine)
    if akinetic:
        lines += ["", "| method | weakest segment per level (basal / mid / apical), per akinetic stack | detected (all "
                  "levels, every stack) |", "|---|---|---|"]
        for m in methods:
            found = ["/".join(str(r[m].get(level, "-")) for level in ("basal", "mid", "apical")) for r in akinetic]
            detected = all(r[m] == r["truth"] for r in akinetic)
            lines.append(f"| {m} | {', '.join(found)} | {'yes' if detected else 'no'} |")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "strain_check.json").write_text(
        json.dumps({"rows": rows, "mean_abs_error": summary, "akinetic": akinetic}, indent=1)
    )
    (out / "strain_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
