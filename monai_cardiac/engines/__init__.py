"""Training and evaluation engines: the stage iterations of the bundles and their evaluation reports."""

from __future__ import annotations

from .joint_evaluation import (
    evaluate_joint_checkpoints,
    evaluate_joint_datalist,
    evaluate_joint_sequence,
    joint_tables_markdown,
    phantom_evaluation_preprocessing,
    report_phantom_joint,
    summarize_rows,
)
from .joint_inference import (
    GRID_PRESERVING_OPERATIONS,
    InvertToInputGridd,
    JointPredictionSplitd,
    JointResultWriter,
    joint_inference_datalist,
    split_joint_prediction,
    write_joint_outputs,
)
from .joint_training import STAGES, JointTrainingIteration, JointValidationIteration, stage_parameters

__all__ = [
    "GRID_PRESERVING_OPERATIONS",
    "InvertToInputGridd",
    "JointPredictionSplitd",
    "JointResultWriter",
    "STAGES",
    "JointTrainingIteration",
    "JointValidationIteration",
    "evaluate_joint_checkpoints",
    "evaluate_joint_datalist",
    "evaluate_joint_sequence",
    "joint_inference_datalist",
    "joint_tables_markdown",
    "phantom_evaluation_preprocessing",
    "report_phantom_joint",
    "split_joint_prediction",
    "stage_parameters",
    "summarize_rows",
    "write_joint_outputs",
]
