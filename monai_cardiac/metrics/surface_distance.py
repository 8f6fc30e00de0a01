"""Contour distances in mm: Hausdorff distance, HD95 and mean contour distance (MCD).

The contour of a mask is its boundary voxels: the mask minus its binary erosion (face connectivity, voxels
outside the array count as background, so a mask touching the array edge has a contour there), in 2D and
3D alike. For contours ``P`` (prediction) and ``G`` (reference), the directed distances ``d(P, G)`` are the
distances in mm from each voxel of ``P`` to the nearest voxel of ``G``, read from an exact Euclidean
distance transform sampled at the voxel spacing. Then

- ``"hd"``: Hausdorff distance, ``max(max d(P, G), max d(G, P))``;
- ``"hd95"``: ``max(q95 d(P, G), q95 d(G, P))``, ``q95`` being the 95th percentile with linear
  interpolation between order statistics (``numpy.percentile``'s default);
- ``"mcd"``: mean contour distance, ``(mean d(P, G) + mean d(G, P)) / 2``, the mean of the two directed
  means (Qin et al., "Joint learning of motion estimation and segmentation for cardiac MR image
  sequences", MICCAI 2018).

A structure missing from either mask has no defined distance and scores NaN (never inf).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction, get_mask_edges, ignore_background
from monai.utils import MetricReduction, convert_to_numpy, look_up_option, optional_import

from ._utils import as_one_hot_pair, spacing_per_item

distance_transform_edt, _ = optional_import("scipy.ndimage", name="distance_transform_edt")

__all__ = ["CONTOUR_METRICS", "ContourDistanceMetric", "compute_contour_distance", "contour_distance"]

CONTOUR_METRICS = ("hd", "hd95", "mcd")
"""Names accepted by ``metric``: Hausdorff distance, 95th-percentile Hausdorff distance, mean contour distance."""


def _directed_distances(from_edges: np.ndarray, to_edges: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distances in mm from every voxel of ``from_edges`` to the nearest voxel of ``to_edges`` (1D array)."""
    return distance_transform_edt(~to_edges, sampling=spacing)[from_edges]


def contour_distance(
    pred: NdarrayOrTensor,
    ref: NdarrayOrTensor,
    metric: str = "mcd",
    spacing: float | Sequence[float] | np.ndarray | None = None,
) -> float:
    """One contour distance between two binary masks of a single structure.

    Args:
        pred: predicted mask ``(*spatial)``, 2D or 3D, nonzero inside.
        ref: reference mask of the same shape.
        metric: ``"hd"``, ``"hd95"`` or ``"mcd"`` (see the module docstring for the definitions).
        spacing: voxel size in mm, one number or one per spatial axis (in the array's axis order);
            ``None`` means 1 mm.

    Returns:
        the distance in mm; NaN if either mask is empty.

    Raises:
        ValueError: unknown ``metric``, masks of different shapes, or a bad ``spacing``.
    """
    metric = look_up_option(metric, CONTOUR_METRICS)
    pred_np = convert_to_numpy(pred) != 0
    ref_np = convert_to_numpy(ref) != 0
    if pred_np.shape != ref_np.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred_np.shape} and {ref_np.shape}.")
    if not pred_np.any() or not ref_np.any():
        return float("nan")
    sampling = spacing_per_item(spacing, 1, pred_np.ndim)[0]
    edges_pred, edges_ref = get_mask_edges(pred_np, ref_np, crop=True)
    d_pr = _directed_distances(edges_pred, edges_ref, sampling)
    d_rp = _directed_distances(edges_ref, edges_pred, sampling)
    if metric == "hd":
        return float(max(d_pr.max(), d_rp.max()))
    if metric == "hd95":
        return float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
    return float((d_pr.mean() + d_rp.mean()) / 2)


def compute_contour_distance(
    y_pred: NdarrayOrTensor,
    y: NdarrayOrTensor,
    metric: str = "mcd",
    include_background: bool = False,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | NdarrayOrTensor | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Contour distance of each structure of each batch item, in mm.

    Args:
        y_pred: binarised one-hot prediction ``(B, C, *spatial)``, or an integer label map ``(B, 1, *spatial)``
            when ``num_classes`` is given; 2D or 3D. Tensor or array.
        y: reference in the same form as ``y_pred``.
        metric: ``"hd"``, ``"hd95"`` or ``"mcd"`` (see the module docstring for the definitions).
        include_background: whether to score channel 0. Defaults to ``False``.
        spacing: voxel size in mm: one number, one per spatial axis (array axis order), or one such sequence
            per batch item; ``None`` means 1 mm.
        num_classes: number of classes, background included (4 for the cardiac labels); needed for label maps.

    Returns:
        float tensor ``(B, C')`` on ``y_pred``'s device; NaN where the structure is missing from either mask.

    Raises:
        ValueError: unknown ``metric``, inputs whose shapes disagree, or a bad ``spacing``.
        CineDataError: a label map holds values outside ``[0, num_classes)``.
    """
    metric = look_up_option(metric, CONTOUR_METRICS)
    y_pred_t, y_t = as_one_hot_pair(y_pred, y, num_classes)
    if not include_background:
        y_pred_t, y_t = ignore_background(y_pred_t, y_t)
    batch_size, n_class = y_pred_t.shape[:2]
    sampling = spacing_per_item(spacing, batch_size, y_pred_t.ndim - 2)
    pred_np, ref_np = convert_to_numpy(y_pred_t) != 0, convert_to_numpy(y_t) != 0
    out = torch.empty((batch_size, n_class), dtype=torch.float, device=y_pred_t.device)
    for b, c in np.ndindex(batch_size, n_class):
        out[b, c] = contour_distance(pred_np[b, c], ref_np[b, c], metric, sampling[b])
    return out


class ContourDistanceMetric(CumulativeIterationMetric):
    """Cumulative contour distance (HD, HD95 or MCD) per structure, in mm.

    Each call scores a batch with :py:func:`compute_contour_distance` (pass ``spacing=`` to the call, as for
    :py:class:`monai.metrics.HausdorffDistanceMetric`) and buffers the ``(B, C')`` result. ``aggregate()``
    reduces the buffer leaving out NaN scores (structures missing from either mask); ``not_nans`` then says
    how many scores entered each reduced value.

    Args:
        metric: ``"hd"``, ``"hd95"`` or ``"mcd"``.
        include_background: whether to score channel 0. Defaults to ``False``.
        reduction: reduction mode of :py:class:`monai.utils.MetricReduction` applied by ``aggregate()``,
            over non-NaN values only.
        get_not_nans: whether ``aggregate()`` returns ``(metric, not_nans)``.
        num_classes: number of classes, background included; lets label maps ``(B, 1, *spatial)`` be passed.

    Raises:
        ValueError: unknown ``metric``.
    """

    def __init__(
        self,
        metric: str = "mcd",
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.metric = look_up_option(metric, CONTOUR_METRICS)
        self.include_background = include_background
        self.reduction = reduction
        self.get_not_nans = get_not_nans
        self.num_classes = num_classes

    def _compute_tensor(  # type: ignore[override]
        self,
        y_pred: torch.Tensor,
        y: torch.Tensor,
        spacing: float | Sequence[float] | Sequence[Sequence[float]] | NdarrayOrTensor | None = None,
    ) -> torch.Tensor:
        """Score one batch, see :py:func:`compute_contour_distance`."""
        return compute_contour_distance(
            y_pred,
            y,
            metric=self.metric,
            include_background=self.include_background,
            spacing=spacing,
            num_classes=self.num_classes,
        )

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered scores, leaving out NaN.

        Args:
            reduction: reduction mode overriding ``self.reduction`` for this call.

        Returns:
            the reduced metric, and ``not_nans`` (the count of scores used) if ``get_not_nans``.

        Raises:
            ValueError: nothing has been buffered yet.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("ContourDistanceMetric has no scores to aggregate; call it on a batch first.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f
