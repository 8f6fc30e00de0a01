"""An ignite handler that keeps an exponential moving average of a network's weights during training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from monai.utils import IgniteInfo, min_version, optional_import
from torch.optim.swa_utils import AveragedModel

if TYPE_CHECKING:
    from ignite.engine import Engine

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage:
    """Exponential moving average (EMA) of a network's parameters, updated after every iteration.

    After each training iteration every averaged parameter becomes ``decay * average + (1 - decay) * current``;
    the first update copies the network, so the average starts from the weights after iteration 1; with
    ``decay = 0.99`` it spans about ``1 / (1 - decay) = 100`` iterations. Buffers (e.g. batch normalisation's
    running statistics) are copied from the network at every update, not averaged.

    With ``warmup`` the decay of update ``n`` (``n = 1`` for the second update, the first one that averages) is
    ``min(decay, (1 + n) / (10 + n))``, the schedule of TensorFlow's ``ExponentialMovingAverage`` with
    ``num_updates``: the average then spans about the last tenth of the iterations done so far until that reaches
    ``1 / (1 - decay)``, instead of holding on to the first iterations' weights while the weights still change
    fast (an average of such weights can be a network whose parts do not match).

    :attr:`module` is a copy of the network with the averaged weights, of the same class, so it can be validated,
    checkpointed and loaded into a plain network like the network itself (its state dict has the same keys). A
    network wrapped in ``DistributedDataParallel`` or ``DataParallel`` is averaged unwrapped: every rank keeps the
    same average, since the wrapped parameters agree after each step.

    Typical use in a bundle: attach it as a training handler and give :attr:`module` to the validation
    evaluator and the best-metric checkpoint saver, so that model selection and the saved model use the
    averaged weights.

    Args:
        network: the network being trained (possibly wrapped for data parallelism).
        decay: weight of the running average at each update, in ``[0, 1)``; ``0`` keeps a plain copy of the
            latest weights.
        warmup: lower the decay of the early updates as described above.

    Raises:
        ValueError: when ``decay`` is outside ``[0, 1)``.
    """

    def __init__(self, network: torch.nn.Module, decay: float = 0.99, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}.")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
        self.network = network.module if isinstance(network, wrappers) else network
        self.averaged = AveragedModel(self.network, multi_avg_fn=self._average, use_buffers=False)

    def current_decay(self, num_averaged: int) -> float:
        """Decay applied by the update that follows ``num_averaged`` earlier ones (``>= 1``)."""
        return min(self.decay, (1 + num_averaged) / (10 + num_averaged)) if self.warmup else self.decay

    @torch.no_grad()
    def _average(
        self, averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], num_averaged: torch.Tensor | int
    ) -> None:
        """``multi_avg_fn`` of :class:`~torch.optim.swa_utils.AveragedModel`: one update of the floating tensors."""
        weight = 1.0 - self.current_decay(int(num_averaged))
        for average, value in zip(averaged, current):
            average.lerp_(value, weight)

    @property
    def module(self) -> torch.nn.Module:
        """The network copy that holds the averaged weights."""
        return self.averaged.module

    @property
    def num_updates(self) -> int:
        """How many times the average has been updated."""
        return int(self.averaged.n_averaged)

    def attach(self, engine: Engine) -> None:
        """Update the average after every iteration of ``engine``."""
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        """Fold the network's current weights into the average (``engine`` is unused; ignite passes it)."""
        self.averaged.update_parameters(self.network)
        with torch.no_grad():
            for averaged, current in zip(self.module.buffers(), self.network.buffers()):
                averaged.copy_(current)
