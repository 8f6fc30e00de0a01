"""ITK / elastix glue shared by the elastix peers: images in, parameter maps, deformation fields out.

ITK orders image axes (x, y) = (column, row) and gives displacements as ``[dx, dy]`` in mm; the project orders
them (row, column) in voxels (docs/conventions.md). Every conversion between the two lives here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence

import numpy as np
from monai.utils import optional_import

from .base import SequenceRegistration

itk, _ = optional_import("itk")

__all__ = [
    "ELASTIX_DIST",
    "ElastixBSplineRegistration",
    "deformation_field_voxels",
    "elastix_parameter_object",
    "itk_image",
]

ELASTIX_DIST = "itk-elastix"  # the distribution that adds elastix to ITK's Python wrapping


def itk_image(array: np.ndarray, spacing: Sequence[float]):
    """An ITK float image of ``array`` (numpy axis order, last axis = ITK's x) with ``spacing`` in numpy order."""
    image = itk.image_from_array(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing([float(s) for s in reversed(tuple(spacing))])
    return image


def elastix_parameter_object(transform: str, settings: Mapping[str, object]):
    """An elastix ``ParameterObject`` with one map: elastix's default map for ``transform``, then ``settings``.

    elastix reads the image dimension from the images, so a map holds no dimension.

    Args:
        transform: name of elastix's default map (``"bspline"``, ``"groupwise"``).
        settings: elastix parameter names to values; a value may be a scalar, a string or a sequence, and is
            written as elastix's list of strings (``None`` removes the parameter).
    """
    parameter_object = itk.ParameterObject.New()
    parameter_map = parameter_object.GetDefaultParameterMap(transform)
    for key, value in settings.items():
        if value is None:
            if key in parameter_map:
                parameter_map.erase(key)
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        parameter_map[key] = [_elastix_str(v) for v in values]
    parameter_object.AddParameterMap(parameter_map)
    return parameter_object


def _elastix_str(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def deformation_field_voxels(moving, transform_parameters, spacing: Sequence[float]) -> np.ndarray:
    """The registration's displacement field on the fixed grid, in voxels, channels in numpy axis order.

    elastix's transform maps a fixed-image point ``x`` to ``x + u(x)`` in the moving image, so the field pulls the
    moving image onto the fixed grid (MONAI's convention); only the units and the channel order change here.

    Args:
        moving: the ITK moving image of the registration.
        transform_parameters: the result parameter object of ``itk.elastix_registration_method``.
        spacing: voxel size in mm, numpy axis order.

    Returns:
        float32 ``(D, *spatial)`` with ``D = len(spacing)``: channel ``i`` = displacement along numpy axis ``i``.
    """
    # transformix also writes the field to disk, in the working directory unless it is given another one
    with tempfile.TemporaryDirectory(prefix="transformix_") as scratch:
        field = itk.transformix_deformation_field(moving, transform_parameters, output_directory=scratch)
        field = np.asarray(field, dtype=np.float32)
    dims = len(spacing)
    # field[..., k] is along ITK axis k, i.e. numpy axis dims - 1 - k
    return np.stack([field[..., dims - 1 - i] / float(spacing[i]) for i in range(dims)]).astype(np.float32)


class ElastixBSplineRegistration(SequenceRegistration):
    """What the elastix B-spline peers share: the control-point grid, its multi-resolution schedule, the optimiser
    budget, the random sampling and the seed (subclasses add their metric and write ``_register``).

    Args:
        grid_spacing: final in-plane control-point spacing in voxels (elastix ``FinalGridSpacingInVoxels``); the
            coarser levels use ``2 ** k`` times it.
        num_resolutions: levels of the Gaussian image pyramid and of the grid schedule.
        iterations: optimiser iterations per level (adaptive stochastic gradient descent).
        num_samples: random spatial samples per iteration.
        seed: elastix's random seed (sampling), for reproducible fields.
    """

    requires = (ELASTIX_DIST,)

    def __init__(
        self, grid_spacing: float = 6.0, num_resolutions: int = 3, iterations: int = 256, num_samples: int = 2048,
        seed: int = 0,
    ) -> None:
        self.grid_spacing = float(grid_spacing)
        self.num_resolutions = int(num_resolutions)
        self.iterations = int(iterations)
        self.num_samples = int(num_samples)
        self.seed = int(seed)

    def _bspline_settings(self) -> dict:
        """elastix parameters of the grid, the schedule, the optimiser budget and the seed."""
        levels = self.num_resolutions
        return {
            "FinalGridSpacingInPhysicalUnits": None,
            "FinalGridSpacingInVoxels": self.grid_spacing,
            "GridSpacingSchedule": [2.0 ** (levels - 1 - k) for k in range(levels)],
            "NumberOfResolutions": levels,
            "MaximumNumberOfIterations": self.iterations,
            "RandomSeed": self.seed,
            "WriteResultImage": False,
        }
