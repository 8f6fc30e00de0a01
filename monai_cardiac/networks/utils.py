"""Construction arguments that a network keeps, so that its checkpoints can say how to rebuild it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

__all__ = ["construction_arguments", "records_construction_arguments"]

_Init = TypeVar("_Init", bound=Callable[..., None])


def _plain(value: Any) -> Any:
    """``value`` as JSON-like Python (tuples become lists), or its ``repr`` where it is not plain data."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def records_construction_arguments(init: _Init) -> _Init:
    """Decorate a network's ``__init__`` so the instance keeps its arguments in ``construction_arguments``.

    Every argument of the signature is kept with defaults applied (``**kwargs`` flattened into the others), as
    plain data: tuples become lists, anything that is not numbers, strings, ``None``, lists or dicts is kept as
    its ``repr``. When a decorated subclass ``__init__`` calls a decorated parent's, the record holds the parent's
    arguments (defaults included) updated with the subclass's own.

    Args:
        init: the ``__init__`` to wrap.

    Returns:
        the wrapped ``__init__``.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = value
        init(self, *args, **kwargs)
        inherited = getattr(self, "construction_arguments", None) or {}  # a decorated parent's, defaults included
        recorded = {**inherited, **{name: _plain(value) for name, value in arguments.items()}}
        setattr(self, "construction_arguments", recorded)  # nn.Module.__setattr__ is typed for tensors and modules

    return wrapper  # type: ignore[return-value]


def construction_arguments(network: nn.Module) -> dict[str, Any] | None:
    """The arguments ``network`` was built with (unwrapping DDP's ``module``), ``None`` if it keeps none."""
    network = getattr(network, "module", network)
    recorded = getattr(network, "construction_arguments", None)
    return dict(recorded) if isinstance(recorded, Mapping) else None
