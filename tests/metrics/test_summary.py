"""Tests for the NaN-excluding summary."""

from __future__ import annotations

import math

import numpy as np
import torch

from monai_cardiac.metrics import nanmean_excluded


def test_nanmean_excluded_counts_nan():
    assert nanmean_excluded([1.0, float("nan"), 3.0, float("nan")]) == (2.0, 2)
    assert nanmean_excluded(torch.tensor([[2.0, 4.0], [6.0, 8.0]])) == (5.0, 0)
    mean, excluded = nanmean_excluded(np.full(3, np.nan))
    assert math.isnan(mean) and excluded == 3
