"""Training and validation iterations of the probabilistic motion model (Krebs et al., STACOM 2019).

Batches come from the project's pipeline (docs/conventions.md): ``image`` ``(B, T, H, W)`` with frame 0 the ED
frame (the moving image ``I_0``) and frames ``1 ... T - 1`` the fixed images ``I_t``; for validation also
``label`` ``(B, T, H, W)`` and ``label_mask`` ``(B, T)``. Sequences of different lengths do not collate, so
training runs with batch size 1 (as in the paper) unless the pipeline makes lengths equal. The callables plug
into ``monai.engines.SupervisedTrainer`` / ``SupervisedEvaluator`` as ``iteration_update``.
"""

from __future__ import annotations

import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.networks.utils import one_hot

from monai_cardiac.data.nifti import NUM_CLASSES
from monai_cardiac.displacement import warp_labels
from monai_cardiac.engines.engine_utils import batch_to_device, engine_autocast, optimizer_step

__all__ = ["ProbabilisticMotionTrainingIteration", "ProbabilisticMotionValidationIteration"]


def _split_sequence(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, H, W)`` ED-first sequence to the moving ED frame ``(B, 1, H, W)`` and fixed frames
    ``(B, T-1, H, W)``."""
    if image.ndim != 4 or image.shape[1] < 2:
        raise ValueError(f"expected an ED-first sequence (B, T >= 2, H, W), got {tuple(image.shape)}")
    return image[:, :1], image[:, 1:]


class ProbabilisticMotionTrainingIteration:
    """``iteration_update`` of a ``SupervisedTrainer`` for :class:`~monai_cardiac.networks.ProbabilisticMotionModel`.

    The network runs in training mode (posterior sampling with temporal dropout sampling) on
    ``(I_0, I_1..T)``, and the engine's ``loss_function`` (a
    :class:`~monai_cardiac.losses.ProbabilisticMotionLoss`) is called with the model's ``ddf``,
    ``inverse_ddf``, ``mu`` and ``logvar``.

    Returns (of a call):
        ``{"loss", "similarity", "kl"}`` (detached scalars) and ``"image"``, what MONAI's handlers read.
    """

    def __call__(self, engine: SupervisedTrainer, batchdata: dict) -> dict:
        image, _, _ = batch_to_device(engine, batchdata)
        moving, fixed = _split_sequence(image)
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        with engine_autocast(engine):
            out = engine.network(moving, fixed)
            terms = engine.loss_function(
                moving, fixed, out["ddf"].float(), out["inverse_ddf"].float(), out["mu"].float(), out["logvar"].float()
            )
        optimizer_step(engine, terms["loss"])
        return {**{key: value.detach() for key, value in terms.items()}, "image": image}


class ProbabilisticMotionValidationIteration:
    """``iteration_update`` of a ``SupervisedEvaluator``: tracking of whole sequences (batch size 1, any ``T``).

    The network runs in eval mode (posterior means, no dropout). The ED labels are warped onto every labelled
    later frame ``t`` with ``u_{ED->t}`` (nearest neighbour) and compared with that frame's labels.

    Returns (of a call):
        ``"warped_label"`` and ``"frame_label"``, one-hot ``(N, C, H, W)`` for MONAI metric handlers (``N``
        labelled frames after ED), and ``"image"``.

    Raises:
        ValueError: on a batch size other than 1, or when the ED frame or no later frame is labelled.
    """

    def __call__(self, engine: SupervisedEvaluator, batchdata: dict) -> dict:
        image, labels, mask = batch_to_device(engine, batchdata)
        if image.shape[0] != 1:
            raise ValueError(f"validation runs on whole sequences with batch size 1, got {image.shape[0]}")
        if labels is None or mask is None or not bool(mask[0, 0]) or not bool(mask[0, 1:].any()):
            raise ValueError("validation needs a labelled ED frame and at least one labelled later frame")
        moving, fixed = _split_sequence(image)
        engine.network.eval()
        with torch.no_grad(), engine_autocast(engine):
            ddf = engine.network(moving, fixed)["ddf"]
        later = mask[0].nonzero().flatten()
        later = later[later > 0]
        ed = labels[0, :1][:, None].expand(len(later), 1, *labels.shape[2:])
        warped = warp_labels(ed, ddf[0, later - 1].float())
        return {
            "image": image,
            "warped_label": one_hot(warped, NUM_CLASSES),
            "frame_label": one_hot(labels[0, later][:, None], NUM_CLASSES),
        }
