"""monai_cardiac.networks: networks for cardiac motion estimation and segmentation."""

from __future__ import annotations

from .blocks import (
    ConvSimpleRNN,
    DisplacementWarp,
    MotionDecoder,
    MotionEncoder,
    MultiScaleFusionHead,
    ScalingAndSquaring,
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
from .nets import JointMotionSegNet, ProbabilisticMotionModel, StackedJointMotionSegNet, window_segmentation_logits
from .utils import construction_arguments, records_construction_arguments

__all__ = [
    "ConvSimpleRNN",
    "DisplacementWarp",
    "JointMotionSegNet",
    "MotionDecoder",
    "MotionEncoder",
    "MultiScaleFusionHead",
    "ProbabilisticMotionModel",
    "ScalingAndSquaring",
    "SequenceWarp",
    "SiameseVGGEncoder",
    "SpatioTemporalGaussianSmoothing",
    "StackedJointMotionSegNet",
    "StreamConvBlock",
    "TemporalConvNet",
    "construction_arguments",
    "normalized_time",
    "normalized_to_voxel_ddf",
    "records_construction_arguments",
    "voxel_to_normalized_ddf",
    "warp_probabilities",
    "window_segmentation_logits",
]
