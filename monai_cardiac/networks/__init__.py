"""monai_cardiac.networks: networks for cardiac motion estimation and segmentation."""

from __future__ import annotations

from .blocks import (
    ConvSimpleRNN,
    MotionDecoder,
    MotionEncoder,
    MultiScaleFusionHead,
    SequenceWarp,
    SiameseVGGEncoder,
    SpatioTemporalGaussianSmoothing,
    StreamConvBlock,
    TemporalConvNet,
    normalized_time,
    normalized_to_voxel_ddf,
    voxel_to_normalized_ddf,
    warp_probabilities,
)
from .nets import JointMotionSegNet, ProbabilisticMotionModel, StackedJointMotionSegNet

__all__ = [
    "ConvSimpleRNN",
    "JointMotionSegNet",
    "MotionDecoder",
    "MotionEncoder",
    "MultiScaleFusionHead",
    "ProbabilisticMotionModel",
    "SequenceWarp",
    "SiameseVGGEncoder",
    "SpatioTemporalGaussianSmoothing",
    "StackedJointMotionSegNet",
    "StreamConvBlock",
    "TemporalConvNet",
    "normalized_time",
    "normalized_to_voxel_ddf",
    "voxel_to_normalized_ddf",
    "warp_probabilities",
]
