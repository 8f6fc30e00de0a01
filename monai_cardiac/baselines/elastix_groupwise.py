"""Group-wise 2D+t B-spline registration in elastix: the 4D-Elastix baseline of Krebs et al. (STACOM 2019).

The whole cine is one ``(T, H, W)`` image registered with itself: a B-spline stack transform (one spatial B-spline
per frame, no coupling along time) minimises the intensity variance over time at each point of a common "mean"
space (elastix's ``VarianceOverLastDimensionMetric``, with ``SubtractMean`` so the mean frame's transform is
identity on average). Frame ``t``'s field maps the mean space onto frame ``t``: it is ``u_{t->mean}`` (it pulls
frame ``t`` onto the mean grid). ED -> t then is ``u_{ED->t} = compose(u_{ED->mean}, inverse(u_{t->mean}))``
(:func:`monai_cardiac.displacement.compose_displacements`, :func:`~monai_cardiac.displacement.invert_displacement`);
the inversion is part of the method's time.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from monai_cardiac.displacement import compose_displacements, invert_displacement

from ._elastix import ElastixBSplineRegistration, deformation_field_voxels, elastix_parameter_object, itk, itk_image

__all__ = ["ElastixGroupwiseRegistration"]


class ElastixGroupwiseRegistration(ElastixBSplineRegistration):
    """Group-wise 2D+t B-spline registration of the whole cine, turned into ED -> t fields.

    The default grid (10 voxels) was chosen on acdc_dev's validation split against 6 voxels (docs/benchmarks.md).

    Args:
        grid_spacing: final in-plane control-point spacing in voxels (time is not gridded: stack transform).
        num_resolutions: pyramid levels; images are smoothed in-plane only (``ImagePyramidSchedule`` with 0 along
            time), so frames are never blurred into each other.
        iterations: optimizer iterations per level.
        num_samples: random spatial samples per iteration (over the whole 2D+t image).
        seed: elastix's random seed.
    """

    name = "groupwise"

    def __init__(
        self, grid_spacing: float = 10.0, num_resolutions: int = 3, iterations: int = 256, num_samples: int = 4096,
        seed: int = 0,
    ) -> None:
        super().__init__(grid_spacing, num_resolutions, iterations, num_samples, seed)

    def _settings(self) -> dict:
        pyramid = []
        for k in range(self.num_resolutions):
            factor = 2 ** (self.num_resolutions - 1 - k)
            pyramid += [factor, factor, 0]  # x, y, t: never smooth along time
        return {
            **self._bspline_settings(),
            "ImagePyramidSchedule": pyramid,
            "NumberOfSpatialSamples": self.num_samples,
            "SubtractMean": True,
        }

    def _register(self, frames: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        stack = itk_image(frames, (1.0, *spacing))
        _, transform = itk.elastix_registration_method(
            stack, stack, parameter_object=elastix_parameter_object("groupwise", self._settings()),
            log_to_console=False,
        )
        to_mean = deformation_field_voxels(stack, transform, (1.0, *spacing))  # (3, T, H, W): time, row, column
        u_t_to_mean = torch.from_numpy(np.ascontiguousarray(to_mean[1:].transpose(1, 0, 2, 3)))  # (T, 2, H, W)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a folding frame: the last iterate is kept
            u_mean_to_t = invert_displacement(u_t_to_mean)
        u_ed_to_mean = u_t_to_mean[:1].expand_as(u_mean_to_t)
        return compose_displacements(u_ed_to_mean, u_mean_to_t).numpy()
