"""Run a loss in float32 (at least) whatever mixed-precision autocast is active around it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import ParamSpec, TypeVar, cast

import torch

__all__ = ["float32_loss"]

P = ParamSpec("P")
R = TypeVar("R")


def _upcast(value: object) -> object:
    """``value`` with its floating tensors narrower than float32 cast to float32 (a mapping's values too)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and torch.finfo(value.dtype).bits < 32:
            return value.float()
        return value
    if isinstance(value, Mapping):
        return {key: _upcast(item) for key, item in value.items()}
    return value


def _first_tensor(values: list[object]) -> torch.Tensor:
    """The first tensor among ``values`` or among the values of the mappings in it."""
    for value in values:
        items = value.values() if isinstance(value, Mapping) else (value,)
        for item in items:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError("a float32 loss needs at least one tensor argument (to know which device's autocast to leave).")


def float32_loss(function: Callable[P, R]) -> Callable[P, R]:
    """Decorate a loss's ``forward`` so that its body runs in float32 under any autocast.

    The wrapped function receives every floating tensor argument of fewer than 32 bits (float16, bfloat16),
    positional or keyword, top level or a value of a mapping argument, cast to float32; float32 and float64
    tensors, integer and bool tensors and other arguments are passed unchanged. The body then runs inside
    ``torch.autocast(device_type=..., enabled=False)`` for the device of the first tensor argument, so no
    operation inside is moved back to float16 / bfloat16. Gradients flow back through the casts to the
    half-precision inputs (in their dtype). Without autocast and with float32 inputs the result is bitwise
    what the undecorated function returns.

    Why: small constants that keep losses defined (e.g. the ``1e-5`` variance floor of MONAI's LNCC, whose
    square ``1e-10`` underflows to 0 in float16) and sums over many voxels are not safe in half precision;
    a NaN loss makes ``GradScaler`` skip the step silently.

    Args:
        function: the ``forward`` (or any function) of a loss; ``self`` passes through unchanged.

    Returns:
        The wrapped function, same signature and docstring.

    Raises:
        TypeError: (from the wrapper) when it is called without any tensor argument.
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        cast_args = [_upcast(value) for value in args]
        cast_kwargs = {key: _upcast(value) for key, value in kwargs.items()}
        device_type = _first_tensor(cast_args + list(cast_kwargs.values())).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            # the upcast arguments are the caller's, some tensors now float32: no longer P to a type checker
            return cast(Callable[..., R], function)(*cast_args, **cast_kwargs)

    return wrapper
