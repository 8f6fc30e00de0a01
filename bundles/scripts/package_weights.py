"""Ship a bundle's trained weights: copy the network's state dict into ``bundles/<bundle>/models/acdc/`` \
with a manifest.

    python bundles/scripts/package_weights.py --bundle joint --checkpoint /runs/jacdc/models/model.pt \\
        --command "python -m monai.bundle run training ..." --commit 1234abc --split "acdc_dev seed-0 train split" \\
        --figures figures.json [--max_mb 25]

Only the weights are kept (a ``{"model": state_dict}`` checkpoint, as the bundles' checkpoint loaders read it),
stored as float32, with the checkpoint's description of its network and training run (``"run"``, see
``monai_cardiac.checkpoints``) when it has one; the checkpoint of an unfinished run is refused unless
``--allow_unfinished``. ``manifest.json`` beside them records the sha256 and size of ``model.pt``, the training command,
the commit it ran from, the data split, the figures (any JSON object, e.g. the evaluation summaries) and the date.
Refuses a result over ``--max_mb``. Training never writes into ``models/acdc/``: this script is the only way in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from monai_cardiac.checkpoints import RUN_KEY, check_finished, read_checkpoint
from monai_cardiac.errors import CineDataError

BUNDLES = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--bundle", required=True, choices=sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir())
    )
    parser.add_argument("--checkpoint", required=True, help="the trained checkpoint ({'model': state_dict} or bare)")
    parser.add_argument("--command", required=True, help="the training command that produced it")
    parser.add_argument("--commit", required=True, help="the commit the training ran from")
    parser.add_argument("--split", required=True, help="the data it was trained on")
    parser.add_argument("--figures", help="JSON file of figures to record (evaluation summaries)")
    parser.add_argument("--notes", default="", help="anything else a user should know")
    parser.add_argument("--max_mb", type=float, default=25.0)
    parser.add_argument("--output_dir", help="where to write (default: bundles/<bundle>/models/acdc)")
    parser.add_argument("--allow_unfinished", action="store_true", help="ship the checkpoint of an unfinished run")
    args = parser.parse_args(argv)

    state, description = read_checkpoint(args.checkpoint)
    try:
        check_finished(description, args.checkpoint, args.allow_unfinished)
    except CineDataError as error:
        print(f"error: {error} (--allow_unfinished ships it anyway)", file=sys.stderr)
        return 1
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    out = Path(args.output_dir) if args.output_dir else BUNDLES / args.bundle / "models" / "acdc"
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.pt"
    torch.save({"model": state, **({RUN_KEY: description} if description is not None else {})}, target)
    size_mb = target.stat().st_size / 2**20
    if size_mb > args.max_mb:
        target.unlink()
        print(f"error: {target} would be {size_mb:.1f} MB, over the {args.max_mb} MB limit", file=sys.stderr)
        return 1
    manifest = {
        "file": "model.pt",
        "sha256": sha256(target),
        "size_mb": round(size_mb, 3),
        "parameters": int(sum(v.numel() for k, v in state.items() if v.is_floating_point())),
        "training_command": args.command,
        "run": description,
        "commit": args.commit,
        "split": args.split,
        "figures": json.loads(Path(args.figures).read_text()) if args.figures else {},
        "notes": args.notes,
        "licence": "CC BY-NC-SA 4.0 (see LICENSE): derived from the ACDC data",
        "packaged": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{target}: {size_mb:.2f} MB, sha256 {manifest['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
