from __future__ import annotations

import sys
from pathlib import Path

from monai.bundle import ConfigParser

from monai_cardiac import bundle_root

REPO = Path(__file__).resolve().parents[1]


def test_the_config_file_on_the_command_line_gives_its_bundle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = REPO / "bundles" / "joint" / "configs" / "inference.json"
    assert bundle_root("joint", ["run", "--config_file", str(config)]) == str(REPO / "bundles" / "joint")
    configs = REPO / "bundles" / "probabilistic_motion" / "configs"
    listed = f"['{configs}/train.json','{configs}/acdc.json']"
    assert bundle_root("probabilistic_motion", ["run", f"--config_file={listed}"]) == str(
        REPO / "bundles" / "probabilistic_motion")
    # a config of another bundle, or none: beside the package (the editable install's repository)
    assert bundle_root("probabilistic_motion", ["run", "--config_file", str(config)]) == str(
        REPO / "bundles" / "probabilistic_motion")
    assert bundle_root("no_such_bundle", []) == "bundles/no_such_bundle"


def test_from_the_repository_root_the_relative_folder_is_kept(monkeypatch):
    monkeypatch.chdir(REPO)
    assert bundle_root("joint", []) == "bundles/joint"
    assert bundle_root("joint", ["run", "--config_file", "bundles/joint/configs/train.json"]) == "bundles/joint"


def test_every_bundle_config_resolves_its_paths_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("joint", "probabilistic_motion"):
        for config in ("train.json", "inference.json"):
            path = REPO / "bundles" / name / "configs" / config
            monkeypatch.setattr(sys, "argv", ["monai.bundle", "run", "--config_file", str(path)])
            parser = ConfigParser()
            parser.read_config(str(path))
            root = Path(parser.get_parsed_content("bundle_root"))
            assert root.resolve() == (REPO / "bundles" / name).resolve()
            ckpt = parser.get_parsed_content("ckpt_path" if config == "inference.json" else "ckpt_dir")
            assert Path(ckpt).resolve().is_relative_to(root.resolve())
