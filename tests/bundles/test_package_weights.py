"""bundles/scripts/package_weights.py: float32 weights with their description and a manifest; no unfinished run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from monai_cardiac.checkpoints import RUN_KEY, read_checkpoint
from monai_cardiac.networks import JointMotionSegNet, construction_arguments

SCRIPT = Path(__file__).resolve().parents[2] / "bundles" / "scripts" / "package_weights.py"


def _package(checkpoint: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(SCRIPT), "--bundle", "joint", "--checkpoint", str(checkpoint), "--command", "train it",
            "--commit", "abc1234", "--split", "seed-0 train", "--output_dir", str(out), *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def _checkpoint(path: Path, finished: bool) -> dict:
    net = JointMotionSegNet(width_multiplier=0.0625)
    state = {k: v.double() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    description = {"network": "JointMotionSegNet", "arguments": construction_arguments(net), "run_id": "r7",
                   "stage": "joint", "epoch": 4, "max_epochs": 4 if finished else 9, "finished": finished}
    torch.save({"model": state, RUN_KEY: description}, path)
    return description


def test_weights_ship_as_float32_with_their_description_and_manifest(tmp_path):
    description = _checkpoint(tmp_path / "model.pt", finished=True)
    done = _package(tmp_path / "model.pt", tmp_path / "acdc")
    assert done.returncode == 0, done.stderr
    weights, shipped = read_checkpoint(tmp_path / "acdc" / "model.pt")
    assert shipped == description and all(v.dtype != torch.float64 for v in weights.values())
    manifest = json.loads((tmp_path / "acdc" / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256((tmp_path / "acdc" / "model.pt").read_bytes()).hexdigest()
    assert manifest["run"]["run_id"] == "r7" and manifest["commit"] == "abc1234"


def test_an_unfinished_runs_checkpoint_is_refused_unless_asked(tmp_path):
    _checkpoint(tmp_path / "model.pt", finished=False)
    refused = _package(tmp_path / "model.pt", tmp_path / "acdc")
    assert refused.returncode == 1 and "unfinished training run" in refused.stderr
    assert not (tmp_path / "acdc" / "model.pt").exists()
    assert _package(tmp_path / "model.pt", tmp_path / "acdc", "--allow_unfinished").returncode == 0
