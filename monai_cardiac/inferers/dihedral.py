"""Test-time averaging over the eight in-plane orientations of a short-axis slice (the dihedral group D4).

Scanners and converters store short-axis cines in any of eight in-plane orientations (0, 90, 180, 270 degrees,
each with or without a mirror). A network trained with random orientations (``cine_augmentation(orientations=
True)``) is close to orientation-independent but not exactly. Averaging its outputs over the eight orientations,
each brought back to the input's orientation, makes the result exactly equivariant: the output for a re-oriented
input is the re-oriented output. Displacement fields are vectors: besides moving them as images, their components
are rotated and mirrored with the orientation (docs/conventions.md: voxels, channel order = image axes ``(H, W)``,
pull convention).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from monai_cardiac.errors import CineDataError
from monai_cardiac.networks.nets.joint_motion_seg import window_segmentation_logits

__all__ = [
    "DihedralEnsembleInferer",
    "average_over_orientations",
    "dihedral_transforms",
    "orientation_averaged_joint_outputs",
]

_PROBABILITY_FLOOR = 1e-12  # floor of the averaged probabilities before the log


def dihedral_transforms(square: bool = True) -> list[tuple[int, bool]]:
    """The in-plane orientations as ``(quarter_turns, mirrored)``: ``x -> rot90(flip_H(x) if mirrored, k)``.

    Args:
        square: all eight for square images; for ``H != W`` only the four that keep the shape (0 and 180 degrees).

    Returns:
        ``(k, mirrored)`` pairs, the identity first.
    """
    turns = (0, 1, 2, 3) if square else (0, 2)
    return [(k, m) for m in (False, True) for k in turns]


def _apply(x: torch.Tensor, k: int, mirrored: bool) -> torch.Tensor:
    """Re-orient the last two axes ``(H, W)`` of ``x``."""
    return torch.rot90(x.flip(-2) if mirrored else x, k, dims=(-2, -1))


def _undo(x: torch.Tensor, k: int, mirrored: bool) -> torch.Tensor:
    """Inverse of :func:`_apply`."""
    x = torch.rot90(x, -k, dims=(-2, -1))
    return x.flip(-2) if mirrored else x


def _vector_matrix(k: int, mirrored: bool, device: torch.device) -> torch.Tensor:
    """``A`` (2 x 2) with ``_apply(image)(p) = image(A p + c)``: how displacement components turn back.

    Read off the re-oriented index grid: re-orienting the image of voxel coordinates gives ``A p + c`` at ``p``.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(3.0), torch.arange(3.0), indexing="ij")).to(device)
    moved = _apply(coords, k, mirrored)
    return torch.stack([moved[:, 1, 0] - moved[:, 0, 0], moved[:, 0, 1] - moved[:, 0, 0]], dim=1)


def average_over_orientations(
    run: Callable[[torch.Tensor], tuple[torch.Tensor | None, torch.Tensor | None]],
    images: torch.Tensor,
    orientations: Sequence[tuple[int, bool]] | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Average a motion / segmentation network's outputs over re-orientations of its input.

    For each orientation the images are re-oriented, ``run`` is called, and its outputs are turned back: fields
    and logits are moved back as images, and each displacement's two components are rotated / mirrored back
    (``u = A u'``, :func:`_vector_matrix`). Displacements are averaged; class probabilities (soft-max of the
    logits) are averaged and returned as log-probabilities, valid logits whose ``argmax`` is the ensemble's label.

    Args:
        run: ``run(images) -> (fields (B, F, 2, H, W) in voxels or None, logits (B, L, C, H, W) or None)``.
        images: ``(B, N, H, W)``.
        orientations: ``(quarter_turns, mirrored)`` pairs; default all of :func:`dihedral_transforms` (the four
            that keep the shape for a non-square image).

    Returns:
        ``(mean fields or None, log of the mean probabilities or None)``, float32, shaped as ``run``'s.

    Raises:
        CineDataError: ``images`` not ``(B, N, H, W)``, or quarter turns asked of a non-square image.
    """
    if images.ndim != 4:
        raise CineDataError(f"expected images (B, N, H, W), got {tuple(images.shape)}", "average_over_orientations")
    square = images.shape[-1] == images.shape[-2]
    orientations = list(orientations) if orientations else dihedral_transforms(square)
    if not square and any(k % 2 for k, _ in orientations):
        raise CineDataError(
            f"quarter turns of a non-square image {tuple(images.shape[-2:])} change its shape",
            "average_over_orientations",
        )
    fields_sum, probabilities_sum = None, None
    for k, mirrored in orientations:
        fields, logits = run(_apply(images, k, mirrored))
        if fields is not None:
            matrix = _vector_matrix(k, mirrored, fields.device)
            turned = torch.einsum("ij,btjhw->btihw", matrix, _undo(fields.float(), k, mirrored))
            fields_sum = turned if fields_sum is None else fields_sum + turned
        if logits is not None:
            probabilities = torch.softmax(_undo(logits.float(), k, mirrored), dim=2)
            probabilities_sum = probabilities if probabilities_sum is None else probabilities_sum + probabilities
    count = len(orientations)
    mean_fields = None if fields_sum is None else fields_sum / count
    log_probabilities = None
    if probabilities_sum is not None:
        log_probabilities = torch.log((probabilities_sum / count).clamp_min(_PROBABILITY_FLOOR))
    return mean_fields, log_probabilities


def orientation_averaged_joint_outputs(
    network: Callable[..., Mapping[str, torch.Tensor]],
    target: torch.Tensor,
    sources: torch.Tensor,
    orientations: Sequence[tuple[int, bool]] | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`average_over_orientations` of a ``JointMotionSegNet`` (the dict interface), as a dict of its keys.

    Args:
        network: ``network(target (B, 1, H, W), sources (B, T, H, W))`` returning ``ddf_to_target``
            ``(B, T, 2, H, W)`` and / or ``seg_logits_target`` ``(B, C, H, W)`` + ``seg_logits_sources``
            ``(B, T, C, H, W)``.
        target, sources: the inputs, as the network takes them.
        orientations: see :func:`average_over_orientations`.

    Returns:
        the keys the network gives among ``ddf_to_target``, ``seg_logits_target``, ``seg_logits_sources``
        (logits as log-probabilities), averaged; other keys (e.g. ``warped_sources``) are not returned.
    """

    def run(images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        out = network(images[:, :1], images[:, 1:])
        return out.get("ddf_to_target"), window_segmentation_logits(out)

    fields, log_probabilities = average_over_orientations(run, torch.cat([target, sources], dim=1), orientations)
    result = {} if fields is None else {"ddf_to_target": fields}
    if log_probabilities is not None:
        result.update(seg_logits_target=log_probabilities[:, 0], seg_logits_sources=log_probabilities[:, 1:])
    return result


class DihedralEnsembleInferer(Inferer):
    """Run the stacked joint network on the eight in-plane orientations of its input and average the results back.

    Made for ``StackedJointMotionSegNet`` with outputs ``ddf_to_target``, ``seg_logits_target``,
    ``seg_logits_sources``, in that order: input ``(B, 1 + T, H, W)``, ED first; output
    ``(B, 2 T + (1 + T) C, H, W)``: the ``T`` displacement fields ``(row, column)`` in voxels, then the class logits
    of the ``1 + T`` frames. The averaging is :func:`average_over_orientations`; the output has the same layout,
    with log-probabilities as logits.

    Args:
        num_classes: classes per frame ``C``.
        displacements: the output starts with ``2 T`` displacement channels (False: logits only, e.g. a
            segmentation-only network).
        orientations: ``(quarter_turns, mirrored)`` pairs to average over; default all of
            :func:`dihedral_transforms`. ``[(0, False)]`` runs the network once, unchanged.

    Raises:
        ValueError: ``num_classes < 1`` or an orientation that is not a ``(0..3, bool)`` pair.
    """

    def __init__(
        self,
        num_classes: int = 4,
        displacements: bool = True,
        orientations: Sequence[tuple[int, bool]] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}.")
        if orientations is not None and not all(k in (0, 1, 2, 3) and isinstance(m, bool) for k, m in orientations):
            raise ValueError(f"orientations must be (quarter turns 0-3, mirrored bool) pairs, got {orientations}.")
        self.num_classes = int(num_classes)
        self.displacements = bool(displacements)
        self.orientations: list[tuple[int, bool]] | None = (
            None if orientations is None else [(k, m) for k, m in orientations]
        )

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """Average ``network``'s outputs over the orientations.

        Args:
            inputs: ``(B, 1 + T, H, W)``, ED first.
            network: returns ``(B, 2 T + (1 + T) C, H, W)`` (``(B, (1 + T) C, H, W)`` without displacements).
            args, kwargs: passed to ``network``.

        Returns:
            ``(B, 2 T + (1 + T) C, H, W)``: mean displacements (voxels) and log of the mean probabilities.

        Raises:
            CineDataError: inputs or outputs not shaped as above.
        """
        name = type(self).__name__
        if inputs.ndim != 4:
            raise CineDataError(f"expected inputs (B, 1 + T, H, W), got {tuple(inputs.shape)}", name)
        num_fields = inputs.shape[1] - 1 if self.displacements else 0

        def run(images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
            out = network(images, *args, **kwargs)
            if out.shape[1] != 2 * num_fields + inputs.shape[1] * self.num_classes or out.shape[2:] != images.shape[2:]:
                raise CineDataError(
                    f"network output {tuple(out.shape)} is not (B, 2 T + (1 + T) C, H, W) for inputs "
                    f"{tuple(images.shape)} and C = {self.num_classes}",
                    name,
                )
            fields = out[:, : 2 * num_fields].unflatten(1, (-1, 2)) if num_fields else None
            return fields, out[:, 2 * num_fields :].unflatten(1, (-1, self.num_classes))

        fields, log_probabilities = average_over_orientations(run, inputs, self.orientations)
        assert log_probabilities is not None  # run always gives logits
        stacked = log_probabilities.flatten(1, 2)
        return stacked if fields is None else torch.cat([fields.flatten(1, 2), stacked], dim=1)
