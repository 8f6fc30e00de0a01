"""Joint motion estimation and segmentation network of Qin et al. (MICCAI 2018).

C. Qin, W. Bai, J. Schlemper, S. E. Petersen, S. K. Piechnik, S. Neubauer, D. Rueckert, "Joint learning of
motion estimation and segmentation for cardiac MR image sequences", MICCAI 2018.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.blocks.conv_rnn import ConvSimpleRNN
from monai_cardiac.networks.blocks.flow_units import normalized_to_voxel_ddf
from monai_cardiac.networks.blocks.multiscale_head import MultiScaleFusionHead
from monai_cardiac.networks.blocks.sequence_warp import SequenceWarp
from monai_cardiac.networks.blocks.vgg_encoder import SiameseVGGEncoder
from monai_cardiac.networks.utils import records_construction_arguments

__all__ = ["JointMotionSegNet", "StackedJointMotionSegNet", "window_segmentation_logits"]

_VGG_CHANNELS = (64, 128, 256, 512, 512)
_VGG_LAYERS = (2, 2, 3, 3, 3)
_HEAD_CHANNELS = 64
_MOTION_KEYS = ("ddf_to_target", "warped_sources")
_SEGMENTATION_KEYS = ("seg_logits_target", "seg_logits_sources")


def window_segmentation_logits(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """The segmentation logits of every frame of a window, target first: ``(B, 1 + T, num_classes, *spatial)``.

    Args:
        outputs: a :class:`JointMotionSegNet` output dict (``seg_logits_target`` ``(B, num_classes, *spatial)``
            and, when sources were given, ``seg_logits_sources`` ``(B, T, num_classes, *spatial)``).

    Returns:
        the target's logits followed by the sources' in the sources' dtype promoted with the target's (only the
        target's when the dict has no sources' logits), or ``None`` for a network without a segmentation branch.
    """
    if "seg_logits_target" not in outputs:
        return None
    target = outputs["seg_logits_target"][:, None]
    if "seg_logits_sources" not in outputs:
        return target
    sources = outputs["seg_logits_sources"]
    dtype = torch.promote_types(target.dtype, sources.dtype)
    return torch.cat([target.to(dtype), sources.to(dtype)], dim=1)


def _scaled(channels: int, multiplier: float) -> int:
    return max(1, int(round(channels * multiplier)))


class JointMotionSegNet(nn.Module):
    """Siamese recurrent motion branch and FCN segmentation branch on one shared VGG-16-style encoder.

    * Encoder (:class:`SiameseVGGEncoder`): VGG-16 blocks of (2, 2, 3, 3, 3) 3x3 conv-BN-ReLU layers, widths
      (64, 128, 256, 512, 512) x ``width_multiplier``, stride 2 instead of max-pooling; convolution weights
      are shared by every stream (target, sources, segmentation). The target frame is encoded once per
      sample, not once per source frame.
    * Motion branch: at each of the 5 scales the features of source frame ``k`` and of the target are
      concatenated (source first; the target's half of each first head conv runs once per sample, see
      ``MultiScaleFusionHead(shared=...)``); a :class:`MultiScaleFusionHead` fuses them at full resolution; a 1x1
      :class:`ConvSimpleRNN` with tanh, run over the ``T`` source frames, has a hidden state that *is* the
      flow in normalised [-1, 1] coordinates, channels in spatial-axis order ``(H, W)``. It is converted to
      voxels, ``u_i = h_i * (n_i - 1) / 2`` (``align_corners=True``), and the sources are warped bilinearly
      with MONAI's ``Warp`` (border padding). The recurrence and the warp run in float32 even under autocast.
    * Segmentation branch: the same kind of fusion head on the encoder features of each frame, then a 1x1
      conv to ``num_classes`` logits (labels 0 BG, 1 RV, 2 Myo, 3 LV; no soft-max applied).

    Displacement direction (paper's orientation, kept): the motion branch warps every source frame onto the
    target, ``warped_k(x) = source_k(x + ddf_to_target[k](x)) ~ target(x)``. In the project's notation
    (``docs/conventions.md``) with the target = ED frame, ``ddf_to_target[k]`` is ``u_{k->ED}``: it lives on
    the ED grid and carries frame ``k`` onto it. The project's tracking field ``u_{ED->k}`` (on frame ``k``'s
    grid) is its inverse, e.g. ``monai_cardiac.displacement.invert_displacement(ddf_to_target[:, k])``.

    Batch-norm statistics (``share_norm_stats``): ``True`` (default) runs one encoder pass over the target
    and all source frames together, so a frame's features do not depend on its role, the segmentation head
    reads exactly the features the motion branch trains (the coupling the paper is after) at no extra
    encoder cost, and the statistics are estimated from ``B * (1 + T)`` frames of the same distribution.
    ``False`` follows the authors' Theano code: shared convolution weights but separate batch-norm modules
    (statistics and affine parameters) per stream, namely target, source and segmentation; the segmentation
    stream is then a further encoder pass over all ``1 + T`` frames.

    Baselines: ``motion=False`` (segmentation only) and ``segmentation=False`` (motion only) are this class
    with one branch not built, so no parameter is left without gradient (safe for DDP).

    Args:
        in_channels: channels per frame (1 for cine MRI).
        num_classes: segmentation classes (4: BG, RV, Myo, LV).
        width_multiplier: scales every encoder width and the head width (64); 1.0 is the paper.
        motion: build the motion branch.
        segmentation: build the segmentation branch.
        spatial_dims: 2 (the paper) or 3.
        share_norm_stats: share batch-norm modules between streams (see above).

    Raises:
        ValueError: if neither branch is enabled or an argument is out of range.
    """

    @records_construction_arguments
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        width_multiplier: float = 1.0,
        motion: bool = True,
        segmentation: bool = True,
        spatial_dims: int = 2,
        share_norm_stats: bool = True,
    ) -> None:
        super().__init__()
        if not (motion or segmentation):
            raise ValueError("at least one of motion and segmentation must be enabled.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or width_multiplier <= 0 or (segmentation and num_classes < 2):
            raise ValueError(
                f"need in_channels >= 1 (got {in_channels}), width_multiplier > 0 (got {width_multiplier}) and "
                f"num_classes >= 2 (got {num_classes})."
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.spatial_dims = spatial_dims
        self.motion = motion
        self.segmentation = segmentation
        self.share_norm_stats = share_norm_stats
        roles = (["target", "source"] if motion else []) + (["segmentation"] if segmentation else [])
        self._streams = {role: 0 if share_norm_stats else i for i, role in enumerate(roles)}

        channels = tuple(_scaled(c, width_multiplier) for c in _VGG_CHANNELS)
        head = _scaled(_HEAD_CHANNELS, width_multiplier)
        self.encoder = SiameseVGGEncoder(
            spatial_dims, in_channels, channels, _VGG_LAYERS, num_streams=len(set(self._streams.values()))
        )
        self.motion_head = MultiScaleFusionHead(spatial_dims, [2 * c for c in channels], head) if motion else None
        self.motion_rnn = ConvSimpleRNN(spatial_dims, head, spatial_dims) if motion else None
        self.warp = SequenceWarp(mode="bilinear", padding_mode="border") if motion else None
        self.seg_head = MultiScaleFusionHead(spatial_dims, channels, head, num_classes) if segmentation else None

    @property
    def output_keys(self) -> tuple[str, ...]:
        """Keys :meth:`forward` returns when source frames are given, in a fixed order."""
        return (_MOTION_KEYS if self.motion else ()) + (_SEGMENTATION_KEYS if self.segmentation else ())

    def forward(self, target: torch.Tensor, sources: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Estimate the motion of every source frame onto the target and/or segment all frames.

        Args:
            target: ``(B, in_channels, *spatial)`` target (reference, e.g. ED) frame; every spatial size must
                be divisible by 16 (the encoder's total stride).
            sources: ``(B, T, *spatial)`` source frames when ``in_channels == 1``, else
                ``(B, T, in_channels, *spatial)``; any ``T >= 1``. ``None`` segments the target alone
                (needs the segmentation branch; the motion branch is skipped), e.g. to segment a batch of
                labelled frames in the segmentation stage of the schedule.

        Returns:
            A dict with the keys of the enabled branches:

            - ``"ddf_to_target"``: ``(B, T, S, *spatial)`` float32 displacement in voxels, channel order =
              spatial axes, that warps source ``k`` onto the target (``u_{k->target}``, on the target grid);
            - ``"warped_sources"``: the sources warped onto the target, same shape as ``sources``, float32;
            - ``"seg_logits_target"``: ``(B, num_classes, *spatial)`` logits of the target;
            - ``"seg_logits_sources"``: ``(B, T, num_classes, *spatial)`` logits of the sources (only when
              ``sources`` is given).

        Raises:
            CineDataError: on a wrong shape or dtype, a spatial size not divisible by 16, mismatched batch or
                spatial sizes between ``target`` and ``sources``, or missing sources for the motion branch.
        """
        squeezed = isinstance(sources, torch.Tensor) and sources.ndim == self.spatial_dims + 2
        sources = self._check_inputs(target, sources)
        batch = target.shape[0]
        frames = target if sources is None else torch.cat([target, sources.flatten(0, 1)])
        if self.share_norm_stats:
            features = self.encoder(frames)
            seg_features = features
            target_features = [f[:batch] for f in features]
            source_features = [f[batch:] for f in features]
        else:
            if self.motion and sources is not None:
                target_features = self.encoder(target, self._streams["target"])
                source_features = self.encoder(sources.flatten(0, 1), self._streams["source"])
            if self.segmentation:
                seg_features = self.encoder(frames, self._streams["segmentation"])

        out: dict[str, torch.Tensor] = {}
        if self.motion and sources is not None:
            ddf, warped = self._motion(target_features, source_features, sources)
            out["ddf_to_target"] = ddf
            out["warped_sources"] = warped.squeeze(2) if squeezed else warped
        if self.segmentation:
            assert self.seg_head is not None  # built with segmentation=True
            logits = self.seg_head(seg_features)
            out["seg_logits_target"] = logits[:batch]
            if sources is not None:
                out["seg_logits_sources"] = logits[batch:].unflatten(0, sources.shape[:2])
        return out

    def _motion(
        self, target_features: list[torch.Tensor], source_features: list[torch.Tensor], sources: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Displacements (voxels) and warped sources ``(B, T, in_channels, *spatial)`` from per-scale features."""
        # built with motion=True
        assert self.motion_head is not None and self.motion_rnn is not None and self.warp is not None
        fused = self.motion_head(source_features, shared=target_features).unflatten(0, sources.shape[:2])
        with torch.autocast(device_type=fused.device.type, enabled=False):
            flow = self.motion_rnn(fused.float())  # normalised [-1, 1] coordinates, channels (H, W[, D])
        ddf = normalized_to_voxel_ddf(flow, self.spatial_dims)
        return ddf, self.warp(sources, ddf)

    def _check_inputs(self, target: torch.Tensor, sources: torch.Tensor | None) -> torch.Tensor | None:
        """Validate the inputs; return the sources as ``(B, T, in_channels, *spatial)`` (or ``None``)."""
        name = type(self).__name__
        dims = self.spatial_dims
        if not isinstance(target, torch.Tensor) or target.ndim != dims + 2 or target.shape[1] != self.in_channels:
            got = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
            raise CineDataError(
                f"target must be a tensor shaped (B, {self.in_channels}, *spatial) with {dims} spatial axes, "
                f"got {got}.",
                name,
            )
        if not target.is_floating_point():
            raise CineDataError(f"target must be a floating-point tensor, got {target.dtype}.", name)
        spatial = tuple(target.shape[2:])
        stride = self.encoder.total_stride
        if any(s % stride for s in spatial):
            raise CineDataError(
                f"spatial size {spatial} is not divisible by {stride}, the encoder's total stride; pad or crop "
                f"every spatial axis to a multiple of {stride} (e.g. monai.transforms.DivisiblePad(k={stride})).",
                name,
            )
        if sources is None:
            if not self.segmentation:
                raise CineDataError("a motion-only network needs source frames; sources is None.", name)
            return None
        if not isinstance(sources, torch.Tensor):
            raise CineDataError(f"sources must be a tensor, got {type(sources).__name__}.", name)
        given = tuple(sources.shape)
        if self.in_channels == 1 and sources.ndim == dims + 2:
            sources = sources.unsqueeze(2)
        layout = "(B, T, *spatial)" if self.in_channels == 1 else f"(B, T, {self.in_channels}, *spatial)"
        if (
            sources.ndim != dims + 3
            or sources.shape[0] != target.shape[0]
            or sources.shape[1] < 1
            or sources.shape[2] != self.in_channels
            or tuple(sources.shape[3:]) != spatial
        ):
            raise CineDataError(
                f"sources must be shaped {layout} with T >= 1 and the batch and spatial sizes of target "
                f"{tuple(target.shape)}, got {given}.",
                name,
            )
        if not sources.is_floating_point():
            raise CineDataError(f"sources must be a floating-point tensor, got {sources.dtype}.", name)
        return sources


class StackedJointMotionSegNet(JointMotionSegNet):
    """:class:`JointMotionSegNet` with one tensor in and one tensor out, for MONAI inferers and bundle tools.

    Same parameters (a state dict of one loads into the other), so a model trained with the dict interface
    can be served through ``monai.inferers.SimpleInferer``, ``verify_net_in_out`` or a traced export.

    Input layout ``(B, (1 + T) * in_channels, *spatial)``: the target frame first, then the ``T`` source
    frames in order (frame-major; for ``in_channels == 1`` channel 0 is the target, channel ``k`` source ``k``).

    Output layout: the tensors named in ``outputs`` concatenated along the channel axis in that order, each
    flattened frame-major: ``ddf_to_target`` gives ``T * S`` channels (channel ``k * S + i`` = axis ``i`` of
    the displacement of source ``k``, voxels), ``warped_sources`` ``T * in_channels``, ``seg_logits_target``
    ``num_classes`` and ``seg_logits_sources`` ``T * num_classes`` (class ``c`` of source ``k`` at
    ``k * num_classes + c``). Requesting ``("seg_logits_target", "seg_logits_sources")`` thus gives the logits of
    the whole window, ``num_classes`` channels per frame, target first.

    The flow is predicted relative to the size of the input it is given, so use whole images
    (``SimpleInferer``), not patches (a sliding window would rescale displacements to the patch size).
    ``torch.jit.script`` fails on MONAI's ``Warp``; ``torch.jit.trace`` works but fixes ``T`` and the spatial
    size to those of the example input.

    Args:
        outputs: keys to return (see :meth:`JointMotionSegNet.forward`); default: all keys of the enabled
            branches, in the order ``ddf_to_target, warped_sources, seg_logits_target, seg_logits_sources``.
        kwargs: the arguments of :class:`JointMotionSegNet`.

    Raises:
        ValueError: if ``outputs`` names a key that the enabled branches do not produce.
    """

    @records_construction_arguments
    def __init__(self, outputs: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.outputs = self.output_keys if outputs is None else tuple(outputs)
        unknown = [k for k in self.outputs if k not in self.output_keys]
        if unknown or not self.outputs:
            raise ValueError(f"outputs must be a non-empty subset of {self.output_keys}, got {self.outputs}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Run the network on a stacked window.

        Args:
            x: ``(B, (1 + T) * in_channels, *spatial)``, target first (see the class docstring).

        Returns:
            ``(B, K, *spatial)``, the requested outputs concatenated along channels (see the class docstring).

        Raises:
            CineDataError: if ``x`` is not shaped as described, holds no source frame where one is needed,
                or fails the checks of :meth:`JointMotionSegNet.forward`.
        """
        channels = self.in_channels
        needs_sources = any(k != "seg_logits_target" for k in self.outputs)
        if (
            not isinstance(x, torch.Tensor)
            or x.ndim != self.spatial_dims + 2
            or x.shape[1] % channels
            or x.shape[1] < (2 if needs_sources else 1) * channels
        ):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise CineDataError(
                f"input must be shaped (B, (1 + T) * {channels}, *spatial) with {self.spatial_dims} spatial axes, "
                f"the target first{', and T >= 1' if needs_sources else ''}; got {got}.",
                type(self).__name__,
            )
        num_sources = x.shape[1] // channels - 1
        sources = x[:, channels:].unflatten(1, (num_sources, channels)) if num_sources else None
        out = super().forward(x[:, :channels], sources)
        parts = [out[k] if k == "seg_logits_target" else out[k].flatten(1, 2) for k in self.outputs]
        return torch.cat(parts, dim=1)
