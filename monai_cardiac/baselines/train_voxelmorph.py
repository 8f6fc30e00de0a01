"""Command line: train the VoxelMorph peer on the training split of an ACDC-layout folder.

    python -m monai_cardiac.baselines.train_voxelmorph --dataset_dir /path/to/acdc --output /tmp/vxm/model.pt \\
        --minutes 15

Training slices: the ``train`` part of the joint bundle's split (:func:`~monai_cardiac.baselines.data.split_datalist`),
cropped as the benchmark crops them; model selection on the ``val`` part (ED -> ES warped-label Dice). Weights go
to ``--output`` only: trained on ACDC they are covered by its licence and stay out of the repository.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch
from monai.utils import convert_to_tensor

from .data import cine_preprocessing, split_datalist
from .voxelmorph import train_voxelmorph

__all__ = ["main"]


def _load(entries: Sequence[dict], preprocessing, with_labels: bool) -> list:
    items = []
    for entry in entries:
        d = preprocessing(entry)
        image = convert_to_tensor(d["image"], dtype=torch.float32, track_meta=False)
        if with_labels:
            labels = convert_to_tensor(d["label"], track_meta=False).round().long()
            items.append({"image": image, "label": labels, "es": int(d["es"])})
        else:
            items.append(image)
    return items


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse the arguments, load the slices, train, print and return the training summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True, help="ACDC-layout folder")
    parser.add_argument("--output", required=True, help="checkpoint path (keep it outside the repository)")
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget")
    parser.add_argument("--max_epochs", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--smoothness", type=float, default=0.01, help="weight of the diffusion penalty")
    parser.add_argument("--roi_size", type=int, nargs=2, default=(96, 96), help="crop around the heart")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--train_split", default="train", help="split trained on (train, val, test, all)")
    parser.add_argument("--val_split", default="val", help="split used for model selection, or 'none'")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    preprocessing = cine_preprocessing(args.roi_size)
    train = _load(split_datalist(args.dataset_dir, args.train_split, args.split_seed), preprocessing, False)
    val = [] if args.val_split == "none" else _load(
        split_datalist(args.dataset_dir, args.val_split, args.split_seed), preprocessing, True)
    print(f"VoxelMorph: {len(train)} training slices, {len(val)} validation slices, {args.threads} thread(s)")
    result = train_voxelmorph(
        train, args.output, val, minutes=args.minutes, max_epochs=args.max_epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, smoothness=args.smoothness, seed=args.seed,
    )
    summary = {k: v for k, v in result.items() if k != "history"}
    print(json.dumps(summary, indent=1))
    return result


if __name__ == "__main__":
    main()
