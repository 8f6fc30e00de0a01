"""bundles/scripts/strain_methods.py: a patient's slices stacked into the same strain as the stack itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_cardiac.data import make_cine_phantom
from monai_cardiac.metrics import PEAK_STRAIN_KEYS, stack_strain

SCRIPT = Path(__file__).resolve().parents[2] / "bundles" / "scripts" / "strain_methods.py"
spec = importlib.util.spec_from_file_location("strain_methods", SCRIPT)
strain_methods = importlib.util.module_from_spec(spec)
spec.loader.exec_module(strain_methods)


def test_slices_tracked_one_by_one_give_the_stacks_strain():
    p = make_cine_phantom(4, num_frames=10, spatial_size=(80, 80), num_slices=3, group="NOR", noise_std=0.0)
    spacing = tuple(p["spacing"][1:])
    affine = torch.diag(torch.tensor([*spacing, 8.0, 1.0], dtype=torch.float64))
    entries = [{"image": MetaTensor(torch.as_tensor(p["image"][:, z]), affine=affine), "label": p["label"][:, z],
                "es": int(p["es"]), "slice": z} for z in range(3)]
    truth = {z: torch.as_tensor(p["ddf"][1:, 1:, z]) for z in range(3)}  # u_{ED->t} of frames 1.., in-plane
    calls = []

    def fields_fn(image, slice_spacing):
        z = next(k for k, e in enumerate(entries) if torch.equal(torch.as_tensor(e["image"]), image))
        calls.append((z, tuple(slice_spacing)))
        return {"u_ed_to_t": truth[z], "u_t_to_ed": None}

    found = strain_methods.patient_strain(fields_fn, entries, preprocessing=lambda entry: entry)
    expected = stack_strain(p["label"], p["ddf"][:, 1:], spacing, es=int(p["es"]))["global"]
    assert [z for z, _ in calls] == [0, 1, 2] and all(s == pytest.approx(spacing) for _, s in calls)
    for key in PEAK_STRAIN_KEYS:
        assert found[key] == pytest.approx(expected[key], abs=1e-6)
    assert found["peak_circumferential_percent"] < -5.0 < 5.0 < found["peak_radial_percent"]
    assert np.isfinite(list(found.values())).all()


def test_the_group_figure_is_written(tmp_path):
    rows = [{"method": m, "subject": f"p{i}", "group": g, "peak_circumferential_percent": v, "peak_radial_percent": 1.0}
            for m in ("joint", "ffd") for i, (g, v) in enumerate([("NOR", -12.0), ("NOR", -10.0), ("DCM", -3.0)])]
    strain_methods.plot_groups(rows, ["joint", "ffd"], tmp_path / "groups.png")
    assert (tmp_path / "groups.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
