"""Peak global strain of every patient of an acdc_dev split, from each motion method's fields, by the same code.

Each method of the benchmark (a peer such as ``ffd`` or ``syn``, or a network, refined or not) tracks every slice of
the split on the benchmark's crops (``monai_cardiac.baselines.data``: the joint bundle's split and pipeline); its
``u_{ED->t}`` of the patient's slices is stacked and measured with ``monai_cardiac.metrics.stack_strain`` on the
expert ED labels, as the inference bundles measure their own. Per patient and method: peak global radial and
circumferential strain; then the means per ACDC group (``strain_methods.md``) and a box plot of the patients'
circumferential strain per group and method (``strain_groups.png``).

    python bundles/scripts/strain_methods.py --dataset_dir /path/to/acdc_dev --split test --methods ffd joint \\
        --joint_checkpoint bundles/joint/models/acdc/model.pt --output_dir /tmp/strain_methods [--peer_params P]

Peers need their optional packages (``.venv-peers``: itk-elastix for ``ffd``, ANTs for ``syn``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.utils import convert_to_numpy, convert_to_tensor

from monai_cardiac.baselines.benchmark import METHODS, build_method, tracking_field
from monai_cardiac.baselines.data import SPLITS, cine_preprocessing, split_datalist
from monai_cardiac.engines.engine_utils import slice_spacing
from monai_cardiac.metrics import PEAK_STRAIN_KEYS, stack_strain


def plot_groups(rows: Sequence[dict], methods: Sequence[str], path: Path) -> None:
    """Box plot of the patients' peak global circumferential strain per ACDC group, one box per method."""
    from matplotlib.figure import Figure

    groups = sorted({r["group"] for r in rows})
    figure = Figure(figsize=(1.6 + 1.4 * len(groups), 3.6))
    axes = figure.add_subplot()
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        values = [[r[PEAK_STRAIN_KEYS[1]] for r in rows if r["method"] == method and r["group"] == g] for g in groups]
        positions = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(groups))]
        boxes = axes.boxplot(values, positions=positions, widths=width * 0.9, patch_artist=True)
        for box in boxes["boxes"]:
            box.set_facecolor(f"C{k}")
        axes.plot([], [], color=f"C{k}", linewidth=6, label=method)
    axes.set_xticks(range(len(groups)), [f"{g} ({sum(r['group'] == g for r in rows) // len(methods)})" for g in groups])
    axes.set_ylabel("peak global circumferential strain (%)")
    axes.axhline(0.0, color="0.6", linewidth=0.8)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def patient_strain(fields_fn, entries: Sequence[dict], preprocessing) -> dict:
    """Peak global strain of one patient (its slice entries, base first) from one method's tracking fields."""
    labels, tracks, spacing, es = [], [], None, None
    for entry in entries:
        d = preprocessing(entry)
        es = int(d["es"]) if es is None else es
        image = convert_to_tensor(d["image"], dtype=torch.float32, track_meta=False)
        space, _ = slice_spacing(d["image"], entry)
        spacing = spacing if spacing is not None else tuple(float(s) for s in space[:2])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="invert_displacement did not converge")
            u = tracking_field(fields_fn(image, list(spacing)))
        tracks.append(torch.cat([torch.zeros_like(u[:1]), torch.as_tensor(u)]).numpy())  # ED's own field first
        labels.append(convert_to_numpy(d["label"]).astype(np.uint8))  # (T, H, W), ED first, labelled frames only
    strain = stack_strain(np.stack(labels, axis=1), np.stack(tracks, axis=2), spacing, ed=0, es=es)["global"]
    return {k: float(strain[k]) for k in PEAK_STRAIN_KEYS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--methods", nargs="+", required=True, choices=[m for m in METHODS if m != "identity"])
    parser.add_argument("--joint_checkpoint")
    parser.add_argument("--prob_checkpoint")
    parser.add_argument("--peer_params", help="JSON file {method: {parameter: value}}")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    params = json.loads(Path(args.peer_params).read_text()) if args.peer_params else {}
    checkpoints = {"joint": args.joint_checkpoint, "probabilistic": args.prob_checkpoint}
    by_patient: dict[str, list[dict]] = defaultdict(list)
    for entry in split_datalist(args.dataset_dir, args.split):
        by_patient[entry["subject"]].append(entry)
    preprocessing = cine_preprocessing((96, 96))
    rows = []
    for method in args.methods:
        network = method.split("+")[0]
        spec = {"name": method, "params": params.get(method), "checkpoint": checkpoints.get(network)}
        fields_fn, _ = build_method(spec)
        for subject, entries in sorted(by_patient.items()):
            row = {"method": method, "subject": subject, "group": entries[0].get("group", ""),
                   **patient_strain(fields_fn, entries, preprocessing)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    groups = sorted({r["group"] for r in rows})
    lines = ["| method | " + " | ".join(f"{g} circumferential / radial (n)" for g in groups) + " |",
             "|---|" + "---|" * len(groups)]
    for method in args.methods:
        cells = []
        for g in groups:
            mine = [r for r in rows if r["method"] == method and r["group"] == g]
            radial, circumferential = (np.mean([r[k] for r in mine]) for k in PEAK_STRAIN_KEYS)
            cells.append(f"{circumferential:.1f} / {radial:.1f} ({len(mine)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "strain_methods.json").write_text(json.dumps({"rows": rows, "command": " ".join(sys.argv)}, indent=1))
    (out / "strain_methods.md").write_text("\n".join(lines) + "\n")
    plot_groups(rows, args.methods, out / "strain_groups.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
