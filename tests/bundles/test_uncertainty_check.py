"""bundles/probabilistic_motion/scripts/uncertainty_check.py: its regions and the spread it averages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from monai_cardiac.data import acdc_datalist, write_phantom_dataset
from monai_cardiac.networks import ProbabilisticMotionModel

SCRIPT = Path(__file__).resolve().parents[2] / "bundles" / "probabilistic_motion" / "scripts" / "uncertainty_check.py"
spec = importlib.util.spec_from_file_location("uncertainty_check", SCRIPT)
uncertainty_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(uncertainty_check)


def test_regions_of_a_ring():
    yy, xx = np.mgrid[:40, :40]
    radius = np.hypot(yy - 20, xx - 20)
    label = np.where(radius < 6, 3, np.where(radius < 10, 2, 0))  # LV pool inside a myocardial ring
    image = np.where(label == 3, 1.0, np.where(label == 2, 0.4, 0.0)) + 0.01 * (xx > 30)
    masks = uncertainty_check.region_masks(label, image, band=2)
    assert masks["border"][20, 20 + 6] and masks["border"][20, 20 + 9]  # both borders of the ring
    assert not masks["border"][20, 20] and masks["pool"][20, 20]  # the pool's centre, not its rim
    assert not masks["pool"][20, 20 + 5]  # eroded by the band
    assert masks["background"][2, 2] and not masks["background"][20, 20 + 12]  # far from the heart only
    assert not (masks["border"] & masks["pool"]).any()


def test_slice_spread_is_zero_without_posterior_width_and_positive_with_it(tmp_path):
    write_phantom_dataset(tmp_path, num_subjects=1, seed=5, num_frames=5, num_slices=None, spatial_size=(32, 32),
                          spacing=(4.0, 4.0))
    entry = acdc_datalist(tmp_path, per="slice")[0]
    torch.manual_seed(0)
    model = ProbabilisticMotionModel(spatial_size=(32, 32), latent_dim=4, encoder_channels=(4, 4, 4, 2),
                                     decoder_channels=(4, 4, 4), decoder_latent_channels=4, tcn_dilations=(1, 2))
    torch.nn.init.normal_(model.decoder.velocity.conv.weight, std=0.2)
    model.eval()
    spread = uncertainty_check.slice_spread(model, entry, num_samples=4, band=1, seed=0)
    assert set(spread) == set(uncertainty_check.REGIONS) and all(v > 0 for v in spread.values())
    with torch.no_grad():  # a posterior of (almost) zero width: every draw is the mean
        model.encoder.log_var.bias.fill_(-60.0)
        model.encoder.log_var.weight.zero_()
    narrow = uncertainty_check.slice_spread(model, entry, num_samples=4, band=1, seed=0)
    assert all(v < 1e-6 for v in narrow.values())
