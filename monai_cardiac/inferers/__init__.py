"""Inferers: how a network is run on a whole input at inference time."""

from __future__ import annotations

from .dihedral import (
    DihedralEnsembleInferer,
    average_over_orientations,
    dihedral_transforms,
    orientation_averaged_joint_outputs,
)

__all__ = [
    "DihedralEnsembleInferer",
    "average_over_orientations",
    "dihedral_transforms",
    "orientation_averaged_joint_outputs",
]
