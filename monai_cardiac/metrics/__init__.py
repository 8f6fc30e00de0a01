"""Evaluation metrics for cardiac segmentation and motion: overlap, contour distances, Jacobian, motion, volumes.

Units and empty-mask values follow docs/conventions.md: distances in mm, displacements in voxels, volumes in
mL, EF as a fraction; NaN marks an undefined score, never inf.
"""

from __future__ import annotations

from .jacobian import displacement_gradient, folding_fraction, jacobian_determinant, sdlogj
from .motion import end_point_error, spatial_gradient_magnitude, temporal_gradient_magnitude, warped_rmse
from .overlap import DiceMetric, compute_dice
from .summary import nanmean_excluded
from .surface_distance import CONTOUR_METRICS, ContourDistanceMetric, compute_contour_distance, contour_distance
from .volume import ejection_fraction, structure_volume_curve

__all__ = [
    "CONTOUR_METRICS",
    "ContourDistanceMetric",
    "DiceMetric",
    "compute_contour_distance",
    "compute_dice",
    "contour_distance",
    "displacement_gradient",
    "ejection_fraction",
    "end_point_error",
    "folding_fraction",
    "jacobian_determinant",
    "nanmean_excluded",
    "sdlogj",
    "spatial_gradient_magnitude",
    "structure_volume_curve",
    "temporal_gradient_magnitude",
    "warped_rmse",
]
