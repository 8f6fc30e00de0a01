"""Where is the posterior spread of the tracking large? Measured on held-out phantom slices, whose labels are dense.

For each slice of a split of a phantom folder (the bundle's patient split), the probabilistic model tracks the
cine with ``--num_samples`` draws from its posterior (:class:`~monai_cardiac.engines.ProbabilisticMotionInferer`,
``track`` mode, as ``inference.json --num_samples K`` runs it); the per-voxel spread of ``u_{ED->t}`` is
``sqrt(var_H + var_W)`` over the draws (``K - 1`` in the denominator), as the bundle writes it to
``<subject>_ddf_std.nii.gz`` (the same function, ``displacement_spread``). It is averaged over the frames after
ED, in three regions of each frame's own grid (``u_{ED->t}`` lives on frame ``t``'s grid), taken from that frame's
true labels:

- ``border``: voxels within ``--band`` voxels of the myocardium's inner or outer border (where the image
  constrains the motion);
- ``pool``: the LV blood pool eroded by ``--band`` voxels (uniform bright blood);
- ``background``: background voxels at least ``2 x --band`` voxels from the heart whose image gradient is at most
  the frame's 25th percentile (uniform dark tissue).

The claim "the spread is smaller where the image constrains the motion than in uniform regions" is checked
against each uniform region separately: the pool moves with the heart, the background hardly moves at all, and
a spread in voxels also scales with the size of the motion the decoder puts there.

    python bundles/probabilistic_motion/scripts/uncertainty_check.py --dataset_dir data/phantom \
        --checkpoint bundles/probabilistic_motion/models/model.pt --output runs/uncertainty.json
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
from scipy import ndimage

from monai_cardiac.baselines.data import SPLITS, split_datalist
from monai_cardiac.checkpoints import load_model_weights
from monai_cardiac.data.nifti import STRUCTURES
from monai_cardiac.engines import ProbabilisticMotionInferer
from monai_cardiac.engines.joint_evaluation import phantom_evaluation_preprocessing
from monai_cardiac.engines.probabilistic_inference import displacement_spread

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
REGIONS = ("border", "pool", "background")


def region_masks(label: np.ndarray, image: np.ndarray, band: int) -> dict[str, np.ndarray]:
    """The three regions of one frame ``(H, W)`` (see the module docstring)."""
    myo, lv, heart = label == STRUCTURES.index("Myo") + 1, label == STRUCTURES.index("LV") + 1, label > 0
    ball = ndimage.generate_binary_structure(2, 1)
    border = ndimage.binary_dilation(myo, ball, band) & ~ndimage.binary_erosion(myo, ball, band)
    pool = ndimage.binary_erosion(lv, ball, band)
    gradient = np.hypot(*np.gradient(image))
    far = ~ndimage.binary_dilation(heart, ball, 2 * band)
    background = far & (gradient <= np.percentile(gradient, 25))
    return {"border": border, "pool": pool, "background": background}


def slice_spread(network: torch.nn.Module, entry: dict, num_samples: int, band: int, seed: int) -> dict[str, float]:
    """Mean posterior spread of ``u_{ED->t}`` per region over the frames after ED of one slice."""
    data = phantom_evaluation_preprocessing()(entry)
    image = torch.as_tensor(np.asarray(data["image"]), dtype=torch.float32)[None]  # (1, N, H, W), ED first
    labels = np.asarray(data["dense_label"])
    inferer = ProbabilisticMotionInferer(mode="track", num_samples=num_samples, seed=seed)
    with torch.no_grad():
        samples = inferer(image, network)["ddf_samples"][0]  # (N, K, 2, H, W)
    spread = displacement_spread(samples).numpy()  # (N, H, W)
    sums = {name: [] for name in REGIONS}
    for t in range(1, spread.shape[0]):
        for name, mask in region_masks(labels[t], image[0, t].numpy(), band).items():
            if mask.any():
                sums[name].append(float(spread[t][mask].mean()))
    return {name: float(np.mean(values)) if values else float("nan") for name, values in sums.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="a phantom folder (dense labels on every frame)")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--num_samples", type=int, default=16)
    parser.add_argument("--band", type=int, default=2, help="voxels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="JSON file for the per-slice and mean figures")
    args = parser.parse_args(argv)
    config = ConfigParser()
    config.read_config(str(CONFIGS / "train.json"))
    network = config.get_parsed_content("network_def")
    load_model_weights(network, args.checkpoint)
    network.eval()
    rows = []
    for entry in split_datalist(args.dataset_dir, args.split):
        row = {"subject": entry["subject"], "slice": entry.get("slice", 0),
               **slice_spread(network, entry, args.num_samples, args.band, args.seed)}
        rows.append(row)
        print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    means = {name: float(np.nanmean([r[name] for r in rows])) for name in REGIONS}
    checks = {f"border_below_{name}": bool(means["border"] < means[name]) for name in ("pool", "background")}
    print(f"mean spread (voxels) over {len(rows)} slices: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
    print(", ".join(f"{k.replace('_', ' ')}: {'yes' if v else 'no'}" for k, v in checks.items()))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"rows": rows, "mean": means, **checks}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
