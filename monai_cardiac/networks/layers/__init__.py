"""monai_cardiac.networks.layers: functional layers shared by the networks and the losses."""

from __future__ import annotations

from .banded_filtering import banded_separable_filtering

__all__ = ["banded_separable_filtering"]
