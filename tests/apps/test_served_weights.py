"""ServedWeights: the MONAI Label app serves weights trained here first, else the weights a bundle ships."""

from __future__ import annotations

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


def test_the_repository_bundle_ships_weights_the_app_finds():
    joint = APP.parents[1] / "bundles" / "joint"
    assert (joint / "models" / SHIPPED_WEIGHTS).is_file()
    if not (joint / "models" / "model.pt").is_file():
        assert ServedWeights(str(joint)).model_pytorch() == SHIPPED_WEIGHTS
