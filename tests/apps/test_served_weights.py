"""ServedWeights: the MONAI Label app serves weights trained here first, else the weights a bundle ships."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("monailabel", reason="MONAI Label is not installed here: .ci/label.sh builds its environment")

APP = Path(__file__).resolve().parents[2] / "apps" / "cardiac_label"
sys.path.insert(0, str(APP))
from lib.infers import SHIPPED_WEIGHTS, ServedWeights  # noqa: E402


def test_trained_weights_win_then_the_shipped_ones_then_the_default_name(tmp_path):
    models = tmp_path / "models"
    (models / "acdc").mkdir(parents=True)
    assert ServedWeights(str(tmp_path)).model_pytorch() == "model.pt"  # neither: MONAI Label's own message
    (models / SHIPPED_WEIGHTS).write_bytes(b"shipped")
    assert ServedWeights(str(tmp_path)).model_pytorch() == SHIPPED_WEIGHTS == "acdc/model.pt"
    (models / "model.pt").write_bytes(b"trained here")
    assert ServedWeights(str(tmp_path)).model_pytorch() == "model.pt"


@pytest.mark.parametrize("name", ["joint", "probabilistic_motion"])
def test_the_repository_bundles_ship_weights_the_app_finds(name):
    bundle = APP.parents[1] / "bundles" / name
    weights = bundle / "models" / SHIPPED_WEIGHTS
    assert weights.is_file() and (weights.parent / "LICENSE").is_file()
    if not (bundle / "models" / "model.pt").is_file():
        assert ServedWeights(str(bundle)).model_pytorch() == SHIPPED_WEIGHTS
    # the manifest and the model-zoo large_files.yml both name the shipped file's hash
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert json.loads((weights.parent / "manifest.json").read_text())["sha256"] == digest
    assert f'hash_val: "{digest}"' in (bundle / "large_files.yml").read_text()
