"""monai_cardiac.losses: losses for cardiac motion estimation and segmentation."""

from __future__ import annotations

from .huber_smoothness import HuberFlowSmoothnessLoss, TemporalHuberFlowSmoothnessLoss
from .joint_motion_seg import JointMotionSegmentationLoss
from .kl import KLDivergenceLoss
from .masked_cross_entropy import MaskedCrossEntropyLoss, MaskedDiceCELoss, WarpedCrossEntropyLoss
from .probabilistic_motion import ProbabilisticMotionLoss
from .similarity import BandedLocalNormalizedCrossCorrelationLoss, SymmetricLocalNormalizedCrossCorrelationLoss

__all__ = [
    "BandedLocalNormalizedCrossCorrelationLoss",
    "HuberFlowSmoothnessLoss",
    "JointMotionSegmentationLoss",
    "KLDivergenceLoss",
    "MaskedCrossEntropyLoss",
    "MaskedDiceCELoss",
    "ProbabilisticMotionLoss",
    "SymmetricLocalNormalizedCrossCorrelationLoss",
    "TemporalHuberFlowSmoothnessLoss",
    "WarpedCrossEntropyLoss",
]
