"""The one interface of every peer registration method: a 2D+t slice in, ``u_{ED->t}`` for every frame out.

A peer is a :class:`SequenceRegistration`. :meth:`SequenceRegistration.register_sequence` takes a cine slice
``(T, H, W)`` whose frame 0 is ED and returns the displacement sequence ``(T, 2, H, W)`` of docs/conventions.md:
``u_{ED->t}`` in voxels, MONAI's pull convention (``warp(I_ED, u_{ED->t}) ~ I_t``), channel order (row, column),
field 0 zero. :meth:`SequenceRegistration.motion_fields` wraps it in the adapter form of
:func:`monai_cardiac.engines.probabilistic_evaluation.motion_fields`, so the same evaluation code scores peers and
the project's networks.

Peers that need an optional package (the ``peers`` extra: ``pip install monai_cardiac[peers]``) say which in
:attr:`SequenceRegistration.requires`; :meth:`SequenceRegistration.available` checks it without importing the
package, and :meth:`SequenceRegistration.register_sequence` raises :class:`PeerUnavailableError` naming the
install command when it is absent.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

from monai_cardiac.errors import CineDataError

__all__ = ["PeerUnavailableError", "SequenceRegistration", "check_cine", "check_spacing"]


class PeerUnavailableError(ImportError):
    """A peer method's optional package is not installed."""


def check_cine(cine: NdarrayOrTensor, source: str = "register_sequence(cine)") -> np.ndarray:
    """A cine slice as float32 ``(T, H, W)`` numpy, or an error naming the source.

    Args:
        cine: ``(T, H, W)`` intensities, ED first; numpy or torch (MetaTensors are read as plain arrays).
        source: how the error names the input.

    Returns:
        float32 array ``(T, H, W)``.

    Raises:
        CineDataError: not 3D, fewer than 2 frames, sides shorter than 8 voxels, or non-finite values.
    """
    array = np.asarray(convert_to_numpy(cine), dtype=np.float32)
    if array.ndim != 3 or array.shape[0] < 2 or min(array.shape[1:]) < 8:
        raise CineDataError(f"expected a cine slice (T >= 2, H >= 8, W >= 8), got shape {array.shape}", source)
    if not np.isfinite(array).all():
        raise CineDataError("the cine holds NaN or infinite values", source)
    return array


def check_spacing(spacing: Sequence[float] | None, source: str = "register_sequence(spacing)") -> tuple[float, float]:
    """In-plane spacing ``(sH, sW)`` in mm, ``(1.0, 1.0)`` for ``None``.

    Raises:
        CineDataError: not two positive finite numbers.
    """
    if spacing is None:
        return 1.0, 1.0
    values = tuple(float(s) for s in spacing)
    if len(values) != 2 or not all(np.isfinite(v) and v > 0 for v in values):
        raise CineDataError(f"spacing must be two positive numbers (sH, sW) in mm, got {spacing}", source)
    return values


class SequenceRegistration:
    """Base of the peer methods: register every frame of a cine slice to its ED frame (frame 0).

    Subclasses set :attr:`name`, :attr:`requires` and implement :meth:`_register`; their parameters are plain
    constructor arguments, listed by :meth:`parameters` so that a benchmark can write them down.

    Attributes:
        name: short name used on the command line and in tables.
        requires: distribution names (as ``pip`` knows them) the method needs beyond the core.
    """

    name: str = ""
    requires: tuple[str, ...] = ()

    @classmethod
    def missing(cls) -> list[str]:
        """Distributions of :attr:`requires` that are not installed (checked without importing them)."""
        absent = []
        for dist in cls.requires:
            try:
                importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                absent.append(dist)
        return absent

    @classmethod
    def available(cls) -> bool:
        """Whether every package the method needs is installed."""
        return not cls.missing()

    def parameters(self) -> dict[str, Any]:
        """The method's settings (constructor arguments) as a JSON-serialisable dict."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items() if not k.startswith("_")}

    def _require(self) -> None:
        missing = self.missing()
        if missing:
            raise PeerUnavailableError(
                f"peer method '{self.name}' needs {', '.join(missing)}, which is not installed: "
                'pip install "monai_cardiac[peers]" (or pip install ' + " ".join(missing) + ")"
            )

    def register_sequence(self, cine: NdarrayOrTensor, spacing: Sequence[float] | None = None) -> np.ndarray:
        """Displacements from the ED frame (frame 0) to every frame.

        Args:
            cine: ``(T, H, W)`` intensities (the benchmark gives them in [0, 1]), ED first.
            spacing: in-plane voxel size ``(sH, sW)`` in mm; ``None`` for 1 mm. Parameters stated in mm (if any)
                depend on it; the result is in voxels whatever it is.

        Returns:
            float32 ``(T, 2, H, W)``: ``u_{ED->t}`` in voxels on frame ``t``'s grid, channel order (row, column),
            field 0 zero.

        Raises:
            PeerUnavailableError: the method's package is not installed.
            CineDataError: a cine or spacing that is not valid (see :func:`check_cine`).
        """
        self._require()
        frames = check_cine(cine, f"{self.name}.register_sequence(cine)")
        sp = check_spacing(spacing, f"{self.name}.register_sequence(spacing)")
        ddf = np.asarray(self._register(frames, sp), dtype=np.float32)
        expected = (frames.shape[0], 2, *frames.shape[1:])
        if ddf.shape != expected:  # a wrapper bug, not bad input
            raise RuntimeError(f"{self.name} returned displacements of shape {ddf.shape}, expected {expected}")
        ddf[0] = 0.0
        return ddf

    def _register(self, frames: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        """``(T, 2, H, W)`` ``u_{ED->t}`` in voxels for a checked float32 cine ``(T, H, W)``."""
        raise NotImplementedError

    def motion_fields(self, image: NdarrayOrTensor, spacing: Sequence[float] | None = None) -> Mapping[str, Any]:
        """The adapter form of ``monai_cardiac.engines.probabilistic_evaluation.motion_fields``.

        Args:
            image: ``(T, H, W)`` cine, ED first.
            spacing: in-plane spacing in mm or ``None``.

        Returns:
            ``{"u_ed_to_t": (T - 1, 2, H, W) float32 tensor, "u_t_to_ed": None, "seconds": float}``; ``seconds``
            is the wall time of :meth:`register_sequence`, conversions to and from the peer's image types included.
        """
        start = time.perf_counter()
        ddf = self.register_sequence(image, spacing)
        seconds = time.perf_counter() - start
        return {"u_ed_to_t": torch.from_numpy(ddf[1:]), "u_t_to_ed": None, "seconds": seconds}
