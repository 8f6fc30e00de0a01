"""Dice overlap per cardiac structure, with the empty-mask values of docs/conventions.md."""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.metrics import DiceMetric as _MonaiDiceMetric
from monai.metrics import compute_dice as _monai_compute_dice
from monai.utils import MetricReduction

from ._utils import as_one_hot_pair

__all__ = ["StructureDiceMetric", "compute_dice"]


def compute_dice(
    y_pred: NdarrayOrTensor, y: NdarrayOrTensor, include_background: bool = False, num_classes: int | None = None
) -> torch.Tensor:
    """Dice score of each structure of each batch item.

    Empty structures follow docs/conventions.md rather than MONAI's default: both masks empty gives 1.0
    (agreement), exactly one empty gives 0.0. No value is NaN.

    Args:
        y_pred: binarised one-hot prediction ``(B, C, *spatial)``, or an integer label map ``(B, 1, *spatial)``
            when ``num_classes`` is given. Tensor or array.
        y: reference in the same form as ``y_pred`` (the two forms may be mixed when ``num_classes`` is given).
        include_background: whether to score channel 0 (background). Defaults to ``False``, giving
            ``(RV, Myo, LV)`` for the four cardiac classes.
        num_classes: number of classes, background included (4 for the cardiac labels); needed for label maps.

    Returns:
        float tensor ``(B, C')`` with ``C' = C`` or ``C - 1``.

    Raises:
        ValueError: inputs whose shapes disagree.
        CineDataError: a label map holds values outside ``[0, num_classes)``.
    """
    y_pred_t, y_t = as_one_hot_pair(y_pred, y, num_classes)
    return _monai_compute_dice(y_pred_t, y_t, include_background=include_background, ignore_empty=False)


class StructureDiceMetric(_MonaiDiceMetric):
    """Cumulative Dice per structure: MONAI's ``DiceMetric`` with the empty-mask values of docs/conventions.md.

    Each call scores a batch with :py:func:`compute_dice` and buffers the ``(B, C')`` result; ``aggregate()``
    reduces the buffer as :py:class:`monai.metrics.DiceMetric` does. Since no score is NaN, ``not_nans``
    counts every item.

    Args:
        include_background: whether to score channel 0. Defaults to ``False`` (MONAI's default is ``True``).
        reduction: reduction mode of :py:class:`monai.utils.MetricReduction` applied by ``aggregate()``.
        get_not_nans: whether ``aggregate()`` also returns the count of values that entered each reduction.
        num_classes: number of classes, background included; lets label maps ``(B, 1, *spatial)`` be passed.
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(
            include_background=include_background,
            reduction=reduction,
            get_not_nans=get_not_nans,
            ignore_empty=False,
            num_classes=num_classes,
        )

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Score one batch, see :py:func:`compute_dice`."""
        return compute_dice(y_pred, y, include_background=self.include_background, num_classes=self.num_classes)
