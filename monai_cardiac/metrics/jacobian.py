"""Jacobian of a displacement field: determinant, folding fraction and the spread of its logarithm.

For ``phi(x) = x + u(x)`` with ``u`` in voxels (channel ``i`` = displacement along spatial axis ``i``), the
Jacobian is ``J = I + grad u`` with ``(grad u)[i, j] = d u_i / d x_j``. Derivatives are finite differences in
voxel units: central ``(u[k+1] - u[k-1]) / 2`` inside the array and one-sided ``u[1] - u[0]`` and
``u[n-1] - u[n-2]`` on its first and last voxels (``torch.gradient``), so every voxel gets a value and an
affine field is differentiated exactly everywhere. ``det J`` does not depend on the voxel spacing (scaling
the axes conjugates ``J``), so no spacing is needed.
"""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_tensor

from monai_cardiac.displacement import check_ddf

from ._utils import masked_mean, prepare_mask

__all__ = ["displacement_gradient", "folding_fraction", "jacobian_determinant", "sdlogj"]


def displacement_gradient(ddf: NdarrayOrTensor) -> torch.Tensor:
    """Spatial gradient of a displacement field, in voxels per voxel.

    Args:
        ddf: displacement ``(B, S, *spatial)`` in voxels, ``S`` = 2 or 3 spatial axes. A sequence
            ``(T, S, *spatial)`` is read with frames as the batch.

    Returns:
        tensor ``(B, S, S, *spatial)`` whose ``[b, i, j]`` is ``d u_i / d x_j`` (differences as in the
        module docstring).

    Raises:
        ValueError: ``ddf`` not shaped ``(B, S, *spatial)``, or a spatial axis shorter than 2 voxels.
    """
    ddf_t = check_ddf(convert_to_tensor(ddf, track_meta=False))
    spatial_dims = ddf_t.shape[1]
    if min(ddf_t.shape[2:]) < 2:
        raise ValueError(
            f"every spatial axis of ddf needs at least 2 voxels to differentiate, got shape {tuple(ddf_t.shape)}."
        )
    grads = torch.gradient(ddf_t, dim=tuple(range(2, 2 + spatial_dims)))
    return torch.stack(grads, dim=2)


def jacobian_determinant(ddf: NdarrayOrTensor) -> torch.Tensor:
    """Determinant of the Jacobian ``det(I + grad u)`` at every voxel.

    Values below 1 mean local contraction, above 1 expansion, and ``<= 0`` folding (the map is not
    invertible there). Differentiable.

    Args:
        ddf: displacement ``(B, S, *spatial)`` in voxels, ``S`` = 2 or 3. A sequence ``(T, S, *spatial)`` is
            read with frames as the batch.

    Returns:
        tensor ``(B, *spatial)`` (dimensionless).

    Raises:
        ValueError: ``ddf`` not shaped ``(B, S, *spatial)``, or a spatial axis shorter than 2 voxels.
    """
    grad = displacement_gradient(ddf)
    spatial_dims = grad.shape[1]
    jac = torch.movedim(grad, (1, 2), (-2, -1)) + torch.eye(spatial_dims, dtype=grad.dtype, device=grad.device)
    return torch.linalg.det(jac)


def folding_fraction(det: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> torch.Tensor:
    """Percentage of voxels that fold (``det <= 0``), per batch item.

    Args:
        det: Jacobian determinants ``(B, *spatial)``, e.g. from :py:func:`jacobian_determinant`.
        mask: optional region ``(B, *spatial)`` or ``(*spatial)``, nonzero inside; ``None`` means every voxel.

    Returns:
        tensor ``(B,)`` in percent (0 to 100); NaN where the mask is empty.

    Raises:
        ValueError: a mask of the wrong shape.
    """
    det_t = convert_to_tensor(det, track_meta=False)
    mask_t = prepare_mask(mask, det_t.shape, det_t.device)
    return 100.0 * masked_mean((det_t <= 0).float(), mask_t)


def sdlogj(det: NdarrayOrTensor, mask: NdarrayOrTensor | None = None, floor: float = 1e-9) -> torch.Tensor:
    """Standard deviation of ``log(det J)``, per batch item: 0 for any field with a uniform Jacobian.

    Determinants are clipped to ``floor`` before the logarithm, so folded voxels (``det <= 0``) count as
    ``log(floor)`` (about -20.7 for the default) and the result stays finite. The deviation is the population
    one (divided by the voxel count, not the count minus one).

    Args:
        det: Jacobian determinants ``(B, *spatial)``, e.g. from :py:func:`jacobian_determinant`.
        mask: optional region ``(B, *spatial)`` or ``(*spatial)``, nonzero inside; ``None`` means every voxel.
        floor: smallest determinant kept; must be positive.

    Returns:
        tensor ``(B,)``; NaN where the mask is empty.

    Raises:
        ValueError: a non-positive ``floor`` or a mask of the wrong shape.
    """
    if not floor > 0:
        raise ValueError(f"floor must be positive, got {floor}.")
    det_t = convert_to_tensor(det, track_meta=False)
    det_t = det_t if det_t.is_floating_point() else det_t.float()
    mask_t = prepare_mask(mask, det_t.shape, det_t.device)
    log_det = torch.log(det_t.clamp(min=floor))
    centre = masked_mean(log_det, mask_t).reshape((-1,) + (1,) * (log_det.ndim - 1))
    return torch.sqrt(masked_mean((log_det - centre) ** 2, mask_t))
