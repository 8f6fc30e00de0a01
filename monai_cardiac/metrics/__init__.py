"""Evaluation metrics for cardiac segmentation and motion: overlap, contour distances, Jacobian, motion, volumes.

Units and empty-mask values follow docs/conventions.md: distances in mm, displacements in voxels, volumes in
mL, EF as a fraction; NaN marks an undefined score, never inf.
"""

from __future__ import annotations

from .jacobian import displacement_gradient, folding_fraction, jacobian_determinant, sdlogj
from .motion import end_point_error, spatial_gradient_magnitude, temporal_gradient_magnitude, warped_rmse
from .overlap import StructureDiceMetric, compute_dice
from .plausibility import PLAUSIBLE_RANGES, plausibility_flags, report_plausibility
from .stack_strain import AHA_SEGMENT_NAMES, PEAK_STRAIN_KEYS, stack_strain
from .strain import (
    AHA_LEVELS,
    DEFAULT_SEPTUM_ANGLE_DEG,
    aha_segments,
    deformation_gradient,
    global_strain_curves,
    lagrangian_displacement,
    lagrangian_strain,
    lv_centre,
    radial_circumferential_strain,
    rv_insertion_points,
    segmental_strain_curves,
    strain_directions,
    wall_thickness,
)
from .summary import nanmean_excluded
from .surface_distance import CONTOUR_METRICS, ContourDistanceMetric, compute_contour_distance, contour_distance
from .volume import ejection_fraction, structure_volume_curve

__all__ = [
    "AHA_LEVELS",
    "AHA_SEGMENT_NAMES",
    "PEAK_STRAIN_KEYS",
    "CONTOUR_METRICS",
    "ContourDistanceMetric",
    "DEFAULT_SEPTUM_ANGLE_DEG",
    "StructureDiceMetric",
    "PLAUSIBLE_RANGES",
    "aha_segments",
    "compute_contour_distance",
    "compute_dice",
    "contour_distance",
    "deformation_gradient",
    "displacement_gradient",
    "ejection_fraction",
    "end_point_error",
    "folding_fraction",
    "global_strain_curves",
    "jacobian_determinant",
    "lagrangian_displacement",
    "lagrangian_strain",
    "lv_centre",
    "plausibility_flags",
    "report_plausibility",
    "nanmean_excluded",
    "radial_circumferential_strain",
    "rv_insertion_points",
    "sdlogj",
    "segmental_strain_curves",
    "stack_strain",
    "spatial_gradient_magnitude",
    "strain_directions",
    "structure_volume_curve",
    "temporal_gradient_magnitude",
    "wall_thickness",
    "warped_rmse",
]
