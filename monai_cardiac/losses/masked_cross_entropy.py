"""Segmentation losses for temporally sparse labels: on labelled frames (cross-entropy, Dice + cross-entropy), and
through the motion field (warped cross-entropy).

Label sequences follow ``docs/conventions.md``: one label map per frame, frames without an expert label hold
0 and are marked ``False`` in ``label_mask``. Only the frames the masks select contribute; when a batch has
none, the loss is 0 (still attached to the graph), so unlabelled batches add no supervision instead of NaN.
All three are computed in float32 under any autocast (:func:`~monai_cardiac.losses._precision.float32_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_cardiac.errors import CineDataError
from monai_cardiac.losses._precision import float32_loss
from monai_cardiac.networks.blocks.sequence_warp import SequenceWarp, warp_probabilities

__all__ = ["MaskedCrossEntropyLoss", "MaskedDiceCELoss", "WarpedCrossEntropyLoss"]

_MIN_PROBABILITY = 1e-8  # floor of the warped probabilities before the log (caps a pixel's loss at 18.4)


def _frame_labels(labels: torch.Tensor, logits: torch.Tensor, what: str, source: str) -> torch.Tensor:
    """``labels`` as ``(B, T, *spatial)`` for ``logits`` ``(B, T, C, *spatial)``; a channel axis of 1 is dropped."""
    if labels.ndim == logits.ndim and labels.shape[2] == 1:
        labels = labels.squeeze(2)
    if labels.shape != logits.shape[:2] + logits.shape[3:]:
        raise CineDataError(
            f"{what} must be shaped {tuple(logits.shape[:2] + logits.shape[3:])} (one label map per frame of the "
            f"logits {tuple(logits.shape)}), got {tuple(labels.shape)}.",
            source,
        )
    return labels


def _checked_index(labels: torch.Tensor, num_classes: int, what: str, source: str) -> torch.Tensor:
    """Integer class indices of the selected label maps, after checking they are whole and within range."""
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise CineDataError(f"{what} must hold whole class indices, got fractional values.", source)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise CineDataError(
            f"{what} must hold class indices in [0, {num_classes - 1}], got values in "
            f"[{labels.min().item()}, {labels.max().item()}].",
            source,
        )
    return labels.long()


def _frame_mask(
    mask: torch.Tensor | None, shape: torch.Size, device: torch.device, what: str, source: str
) -> torch.Tensor:
    """A boolean mask of ``shape`` on ``device`` (all ``True`` where ``mask`` is ``None``)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    mask = torch.as_tensor(mask)
    if mask.shape != shape or mask.dtype != torch.bool:
        raise CineDataError(
            f"{what} must be a bool tensor of shape {tuple(shape)}, got {mask.dtype} {tuple(mask.shape)}.", source
        )
    return mask.to(device)


def _reduce(per_pixel: torch.Tensor, counted: torch.Tensor, reduction: str, anchor: torch.Tensor) -> torch.Tensor:
    """Reduce the per-pixel losses of the counted frames; ``"none"`` scatters them into zeros of all frames."""
    if reduction == LossReduction.NONE.value:
        full = per_pixel.new_zeros(counted.shape + per_pixel.shape[1:])
        full[counted] = per_pixel
        return full
    if per_pixel.numel() == 0:
        return anchor.sum() * 0.0
    return per_pixel.mean() if reduction == LossReduction.MEAN.value else per_pixel.sum()


class MaskedCrossEntropyLoss(_Loss):
    """Categorical cross-entropy on the labelled frames of a sequence (``L_s`` of Qin et al.).

    Args:
        reduction: ``"mean"`` (over the pixels of the labelled frames), ``"sum"`` or ``"none"``
            (``(B, T, *spatial)``, zero on unlabelled frames).

    Raises:
        ValueError: if ``reduction`` is unknown.
    """

    def __init__(self, reduction: LossReduction | str = LossReduction.MEAN) -> None:
        super().__init__(reduction=LossReduction(reduction).value)

    @float32_loss
    def forward(self, logits: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the soft-max of ``logits`` against ``labels`` on frames where ``label_mask`` is set.

        Args:
            logits: ``(B, T, C, *spatial)`` class logits (no soft-max applied).
            labels: ``(B, T, *spatial)`` or ``(B, T, 1, *spatial)`` class indices 0..C-1 (integer, or float
                holding whole numbers); the maps of unlabelled frames are ignored.
            label_mask: ``(B, T)`` bool, ``True`` where the frame carries a label.

        Returns:
            The reduced loss (see ``reduction``); 0 when no frame is labelled.

        Raises:
            CineDataError: on mismatched shapes, a non-bool mask, or labels of labelled frames out of range.
        """
        name = type(self).__name__
        labels = _frame_labels(labels, logits, "labels", name)
        counted = _frame_mask(label_mask, logits.shape[:2], logits.device, "label_mask", name)
        target = _checked_index(labels[counted], logits.shape[2], "labels", name)
        per_pixel = F.cross_entropy(logits[counted].float(), target, reduction="none")
        return _reduce(per_pixel, counted, self.reduction, logits)


class MaskedDiceCELoss(_Loss):
    """Soft Dice plus cross-entropy on the labelled frames of a sequence: ``dice_weight * Dice + ce_weight * CE``.

    The cross-entropy is :class:`MaskedCrossEntropyLoss` (mean over the labelled frames' pixels). The Dice term is
    MONAI's ``DiceLoss`` on the soft-max of the labelled frames' logits, foreground classes only, pooled over all
    labelled frames of the batch (``batch=True``: a structure absent from one frame, e.g. the RV at the apex, does
    not make that frame's Dice undefined). Dice weighs each structure alike whatever its size, which helps the thin
    structures (RV, myocardium) that cross-entropy, dominated by the background, learns last.

    Args:
        dice_weight: weight of the Dice term (>= 0).
        ce_weight: weight of the cross-entropy term (>= 0).

    Raises:
        ValueError: a negative weight.
    """

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0) -> None:
        super().__init__()
        if min(dice_weight, ce_weight) < 0:
            raise ValueError(f"weights must be non-negative, got {dice_weight=}, {ce_weight=}.")
        self.dice_weight, self.ce_weight = float(dice_weight), float(ce_weight)
        self.cross_entropy = MaskedCrossEntropyLoss()
        self.dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)

    @float32_loss
    def forward(self, logits: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
        """The weighted sum on frames where ``label_mask`` is set (arguments as :class:`MaskedCrossEntropyLoss`).

        Returns:
            A scalar; 0 (attached to the graph) when no frame is labelled.

        Raises:
            CineDataError: on mismatched shapes, a non-bool mask, or labels of labelled frames out of range.
        """
        ce = self.cross_entropy(logits, labels, label_mask)
        counted = _frame_mask(label_mask, logits.shape[:2], logits.device, "label_mask", type(self).__name__)
        if not counted.any():
            return ce
        frame_labels = _frame_labels(labels, logits, "labels", type(self).__name__)[counted]
        dice = self.dice(logits[counted].float(), frame_labels[:, None].long())
        return self.ce_weight * ce + self.dice_weight * dice


class WarpedCrossEntropyLoss(_Loss):
    """Cross-entropy between source-frame predictions warped onto the target and the target's label (``L_w``).

    The soft-max probabilities predicted for source frame ``k`` are warped bilinearly onto the target with the
    motion branch's ``ddf_to_target[k]`` (pull convention, voxels; see
    :func:`monai_cardiac.networks.blocks.warp_probabilities`) and scored against the target's label map:
    ``-log(warped_prob[label_target])`` per pixel (probabilities floored at 1e-8). As in the paper this runs
    on the *unlabelled* source frames: frames with ``source_label_mask`` set are skipped (they are
    supervised directly by :class:`MaskedCrossEntropyLoss`), as are samples whose target carries no label.

    Args:
        reduction: ``"mean"`` (over the pixels of the counted frames), ``"sum"`` or ``"none"``
            (``(B, T, *spatial)``, zero on frames not counted).
        padding_mode: padding of the warp (``"border"``, the project's convention).

    Raises:
        ValueError: if ``reduction`` is unknown.
    """

    def __init__(self, reduction: LossReduction | str = LossReduction.MEAN, padding_mode: str = "border") -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        self.warp = SequenceWarp(mode="bilinear", padding_mode=padding_mode)

    @float32_loss
    def forward(
        self,
        source_logits: torch.Tensor,
        ddf_to_target: torch.Tensor,
        target_label: torch.Tensor,
        source_label_mask: torch.Tensor | None = None,
        target_label_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Warp the source predictions onto the target and score them against the target label.

        Args:
            source_logits: ``(B, T, C, *spatial)`` class logits of the source frames.
            ddf_to_target: ``(B, T, S, *spatial)`` displacement in voxels warping source ``k`` onto the target.
            target_label: ``(B, *spatial)`` or ``(B, 1, *spatial)`` class indices of the target frame.
            source_label_mask: ``(B, T)`` bool, ``True`` where a source frame is labelled (then skipped);
                ``None`` counts every source frame.
            target_label_mask: ``(B,)`` bool, ``True`` where the target is labelled; ``None`` means all are.

        Returns:
            The reduced loss (see ``reduction``); 0 when no frame is counted.

        Raises:
            CineDataError: on mismatched shapes, non-bool masks, or target labels out of range.
        """
        name = type(self).__name__
        batch, frames = source_logits.shape[:2]
        if ddf_to_target.shape[:2] != source_logits.shape[:2] or ddf_to_target.shape[3:] != source_logits.shape[3:]:
            raise CineDataError(
                f"ddf_to_target {tuple(ddf_to_target.shape)} must be (B, T, S, *spatial) for the logits "
                f"{tuple(source_logits.shape)}.",
                name,
            )
        labels = _frame_labels(target_label.unsqueeze(1), source_logits[:, :1], "target_label", name)
        device = source_logits.device
        target_ok = _frame_mask(target_label_mask, source_logits.shape[:1], device, "target_label_mask", name)
        counted = target_ok[:, None].expand(batch, frames)
        if source_label_mask is not None:
            counted = counted & ~_frame_mask(source_label_mask, counted.shape, device, "source_label_mask", name)
        target = labels.expand(batch, frames, *labels.shape[2:])[counted]
        target = _checked_index(target, source_logits.shape[2], "target_label", name)
        if not counted.any():
            nothing = source_logits.new_zeros(target.shape, dtype=torch.float32)
            return _reduce(nothing, counted, self.reduction, source_logits)
        warped = warp_probabilities(source_logits[counted][None], ddf_to_target[counted][None], self.warp)[0]
        per_pixel = F.nll_loss(torch.log(warped.clamp_min(_MIN_PROBABILITY)), target, reduction="none")
        return _reduce(per_pixel, counted, self.reduction, source_logits)
