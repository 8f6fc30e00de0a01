"""monai_cardiac: MONAI building blocks and bundles for cardiac cine MRI motion and segmentation."""

from __future__ import annotations

__version__ = "0.1.0"

from .bundle_paths import bundle_root
from .errors import CineDataError

__all__ = ["CineDataError", "__version__", "bundle_root"]
