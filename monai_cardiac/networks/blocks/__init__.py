"""monai_cardiac.networks.blocks: building blocks of the motion and segmentation networks."""

from __future__ import annotations

from .conv_rnn import ConvSimpleRNN
from .flow_units import normalized_to_voxel_ddf, voxel_to_normalized_ddf
from .motion_vae import MotionDecoder, MotionEncoder
from .multiscale_head import MultiScaleFusionHead
from .sequence_warp import SequenceWarp, warp_probabilities
from .temporal_conv import TemporalConvNet, normalized_time
from .velocity_smoothing import SpatioTemporalGaussianSmoothing
from .vgg_encoder import SiameseVGGEncoder, StreamConvBlock
from .warp import DisplacementWarp, ScalingAndSquaring

__all__ = [
    "ConvSimpleRNN",
    "DisplacementWarp",
    "MotionDecoder",
    "MotionEncoder",
    "MultiScaleFusionHead",
    "ScalingAndSquaring",
    "SequenceWarp",
    "SiameseVGGEncoder",
    "SpatioTemporalGaussianSmoothing",
    "StreamConvBlock",
    "TemporalConvNet",
    "normalized_time",
    "normalized_to_voxel_ddf",
    "voxel_to_normalized_ddf",
    "warp_probabilities",
]
