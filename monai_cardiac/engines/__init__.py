"""Training and evaluation engines: the stage iterations of the bundles and their evaluation reports."""

from __future__ import annotations

from .joint_evaluation import (
    evaluate_joint_datalist,
    evaluate_joint_sequence,
    phantom_evaluation_preprocessing,
    report_phantom_joint,
    summarize_rows,
)
from .joint_training import STAGES, JointTrainingIteration, JointValidationIteration, stage_parameters

__all__ = [
    "STAGES",
    "JointTrainingIteration",
    "JointValidationIteration",
    "evaluate_joint_datalist",
    "evaluate_joint_sequence",
    "phantom_evaluation_preprocessing",
    "report_phantom_joint",
    "stage_parameters",
    "summarize_rows",
]
