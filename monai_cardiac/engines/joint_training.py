"""The three-stage schedule of Qin et al. (MICCAI 2018) on MONAI's ignite engines.

Stage 1, ``"motion"``: the motion branch and the shared encoder learn from all frames, labelled or not,
with the unsupervised loss ``L_m``. Stage 2, ``"segmentation"``: the shared encoder is frozen (weights and
batch-norm statistics) and the segmentation head learns from the labelled frames with cross-entropy.
Stage 3, ``"joint"``: everything trains with ``L = L_m + lambda1 L_s + lambda2 L_w``.

Batches come from the project's pipeline (docs/conventions.md): ``image`` ``(B, T, H, W)`` with frame 0 the
ED (target) frame, ``label`` ``(B, T, H, W)`` class ids, ``label_mask`` ``(B, T)``. The callables here plug
into ``monai.engines.SupervisedTrainer`` / ``SupervisedEvaluator`` as ``iteration_update``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.networks.utils import one_hot
from torch import nn

from monai_cardiac.data.nifti import NUM_CLASSES
from monai_cardiac.displacement import warp_labels
from monai_cardiac.engines.engine_utils import batch_to_device, engine_autocast, optimizer_step
from monai_cardiac.networks import window_segmentation_logits

__all__ = ["STAGES", "JointTrainingIteration", "JointValidationIteration", "stage_parameters"]

STAGES = ("motion", "segmentation", "joint")
"""Stages of the schedule, in order."""


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return stage


def _segmentation_modules(network: nn.Module) -> list[nn.Module]:
    """The modules trained in the segmentation stage (everything of the segmentation head)."""
    seg_head = getattr(network, "seg_head", None)
    if seg_head is None:
        raise ValueError("the segmentation stage needs a network with a segmentation branch")
    return [seg_head]


def stage_parameters(network: nn.Module, stage: str) -> Iterator[nn.Parameter]:
    """Mark which parameters train in ``stage`` and return them (for the stage's optimizer).

    ``"segmentation"`` freezes every parameter but the segmentation head's; the other stages train all.

    Args:
        network: a ``JointMotionSegNet`` (or a DDP wrapper of one).
        stage: one of :data:`STAGES`.

    Returns:
        the parameters that require gradients in this stage.
    """
    net = getattr(network, "module", network)
    trainable: set[int] = set()
    if _check_stage(stage) == "segmentation":
        for module in _segmentation_modules(net):
            trainable.update(id(p) for p in module.parameters())
    else:
        trainable.update(id(p) for p in net.parameters())
    for p in net.parameters():
        p.requires_grad_(id(p) in trainable)
    return (p for p in net.parameters() if p.requires_grad)


class JointTrainingIteration:
    """``iteration_update`` of a ``SupervisedTrainer`` for one stage of the schedule.

    The engine's ``loss_function`` is called as
    ``loss_function(outputs, target, labels, label_mask)`` (``JointMotionSegmentationLoss``) in the motion and
    joint stages, with ``labels = None`` in the motion stage, and as ``loss_function(logits, labels, mask)`` on
    the labelled frames in the segmentation stage (``MaskedCrossEntropyLoss``: each labelled frame of the
    batch is a one-frame window, logits ``(N, 1, C, H, W)``, labels ``(N, 1, H, W)``, mask ``(N, 1)``).

    Args:
        stage: one of :data:`STAGES`.

    Returns (of a call):
        ``{"loss": float tensor, "image": batch images}``, what MONAI's handlers read.
    """

    def __init__(self, stage: str) -> None:
        self.stage = _check_stage(stage)

    def __call__(self, engine: SupervisedTrainer, batchdata: dict) -> dict:
        image, labels, mask = batch_to_device(engine, batchdata)
        network = engine.network
        net = getattr(network, "module", network)
        network.train()
        if self.stage == "segmentation":
            net.get_submodule("encoder").eval()  # frozen encoder: keep its batch-norm statistics too
        engine.optimizer.zero_grad(set_to_none=True)
        with engine_autocast(engine):
            if self.stage == "segmentation":
                if labels is None or mask is None or not bool(mask.any()):
                    raise ValueError("the segmentation stage needs labelled frames in every batch")
                frames = image[mask][:, None]  # (N, 1, H, W) labelled frames only
                outputs = network(frames)
                logits = outputs["seg_logits_target"].float()[:, None]  # (N, 1, C, H, W): frames as 1-frame windows
                loss = engine.loss_function(logits, labels[mask][:, None], mask[mask][:, None])
            else:
                outputs = network(image[:, :1], image[:, 1:])
                supervised = self.stage == "joint"
                loss = engine.loss_function(
                    outputs, image[:, :1], labels if supervised else None, mask if supervised else None
                )
        optimizer_step(engine, loss)
        return {"loss": loss.detach(), "image": image}


class JointValidationIteration:
    """``iteration_update`` of a ``SupervisedEvaluator`` on whole sequences (batch size 1, any ``T``).

    Returns one-hot maps for MONAI metric handlers:

    - ``pred`` / ``label``: the network's segmentation and the reference on the labelled frames
      ``(N, C, H, W)`` (present when the network has a segmentation branch);
    - ``warped_label`` / ``ed_label``: each labelled non-ED frame's labels warped onto the ED frame with the
      estimated ``u_{t->ED}`` (nearest neighbour) and the ED labels (present with a motion branch).
    """

    def __call__(self, engine: SupervisedEvaluator, batchdata: dict) -> dict:
        image, labels, mask = batch_to_device(engine, batchdata)
        if image.shape[0] != 1:
            raise ValueError(f"validation runs on whole sequences with batch size 1, got {image.shape[0]}")
        network = engine.network
        network.eval()
        with torch.no_grad(), engine_autocast(engine):
            outputs = network(image[:, :1], image[:, 1:])
        result: dict = {"image": image}
        assert labels is not None and mask is not None  # validation batches are labelled
        frames = mask[0].nonzero().flatten()
        logits = window_segmentation_logits(outputs)
        if logits is not None:
            pred = logits[0, frames].float().argmax(1, keepdim=True)
            result["pred"] = one_hot(pred, NUM_CLASSES)
            result["label"] = one_hot(labels[0, frames][:, None], NUM_CLASSES)
        if "ddf_to_target" in outputs and bool(mask[0, 0]):
            later = frames[frames > 0]
            ddf = outputs["ddf_to_target"][0, later - 1].float()
            warped = warp_labels(labels[0, later][:, None], ddf)
            result["warped_label"] = one_hot(warped, NUM_CLASSES)
            result["ed_label"] = one_hot(labels[0, :1][:, None].expand_as(warped), NUM_CLASSES)
        return result
