"""monai_cardiac.networks.nets: complete networks."""

from __future__ import annotations

from .joint_motion_seg import JointMotionSegNet, StackedJointMotionSegNet, window_segmentation_logits
from .probabilistic_motion import ProbabilisticMotionModel

__all__ = ["JointMotionSegNet", "ProbabilisticMotionModel", "StackedJointMotionSegNet", "window_segmentation_logits"]
