"""Peer registration methods behind one interface, for the side-by-side benchmark.

Every peer is a :class:`SequenceRegistration`: ``register_sequence(cine (T, H, W), spacing) -> (T, 2, H, W)``
``u_{ED->t}`` in voxels, MONAI's pull convention, ED = frame 0 (docs/conventions.md).

| name | method | package (extra ``peers``) |
|---|---|---|
| ``identity`` | no motion, the floor | - |
| ``ffd`` | pairwise B-spline FFD, elastix (Qin et al.'s FFD baseline) | itk-elastix |
| ``groupwise`` | group-wise 2D+t B-spline, elastix (Krebs et al.'s 4D-Elastix) | itk-elastix |
| ``syn`` | pairwise ANTs SyN (Krebs et al.'s SyN) | antspyx |
| ``voxelmorph`` | MONAI's VoxelMorph trained on the same data | - (needs a checkpoint) |

Importing this package never needs the extra: :func:`absent_peers` lists what is missing, and a missing peer
raises :class:`PeerUnavailableError` only when it is run.
"""

from __future__ import annotations

from .ants_syn import AntsSyNRegistration
from .base import PeerUnavailableError, SequenceRegistration, check_cine, check_spacing
from .data import SPLITS, cine_preprocessing, split_datalist
from .elastix_ffd import ElastixFFDRegistration
from .elastix_groupwise import ElastixGroupwiseRegistration
from .identity import IdentityRegistration
from .voxelmorph import VoxelMorphRegistration, build_voxelmorph, load_voxelmorph, train_voxelmorph

__all__ = [
    "PEERS",
    "SPLITS",
    "AntsSyNRegistration",
    "ElastixFFDRegistration",
    "ElastixGroupwiseRegistration",
    "IdentityRegistration",
    "PeerUnavailableError",
    "SequenceRegistration",
    "VoxelMorphRegistration",
    "absent_peers",
    "build_voxelmorph",
    "check_cine",
    "check_spacing",
    "cine_preprocessing",
    "load_voxelmorph",
    "split_datalist",
    "train_voxelmorph",
]

PEERS: dict[str, type[SequenceRegistration]] = {
    cls.name: cls
    for cls in (IdentityRegistration, ElastixFFDRegistration, ElastixGroupwiseRegistration, AntsSyNRegistration,
                VoxelMorphRegistration)
}
"""Peer classes by name."""


def absent_peers() -> dict[str, list[str]]:
    """``{peer name: [missing distributions]}`` for the peers that cannot run in this environment."""
    return {name: cls.missing() for name, cls in PEERS.items() if cls.missing()}
