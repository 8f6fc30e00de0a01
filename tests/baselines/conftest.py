"""A tiny phantom cine slice with its true motion, shared by the peer tests."""

from __future__ import annotations

import numpy as np
import pytest

from monai_cardiac.data import make_cine_phantom


@pytest.fixture(scope="session")
def phantom_slice() -> dict:
    """48 x 48 voxels of 3 mm, 6 frames, ED first: ``image``, ``label`` and the true ``ddf`` (``u_{ED->t}``)."""
    return make_cine_phantom(seed=1, num_frames=6, spatial_size=(48, 48), spacing=(3.0, 3.0))


@pytest.fixture(scope="session")
def heart_epe(phantom_slice):
    """``heart_epe(ddf)``: mean over frames 1..T-1 of the end-point error (voxels) inside the heart of frame t."""
    truth, heart = phantom_slice["ddf"], phantom_slice["label"] > 0

    def _epe(ddf: np.ndarray) -> float:
        errors = [np.linalg.norm(ddf[t] - truth[t], axis=0)[heart[t]].mean() for t in range(1, truth.shape[0])]
        return float(np.mean(errors))

    return _epe
