"""Segment-recombination augmentations (docs/augmentations.md): SMB video fusion (EDRNet) and Replicate (DPNet).

The samplers work on label sequences and return indices; `gather_segments` builds the features on their
device with one gather, `interleave` lays originals next to their replicas for Link. ``backend="cpp"`` is
the native sampler `avel_fast._sampler`, ``backend="python"`` its identical pure-Python twin
`avel_fast.reference.augment`.
"""
from avel_fast.augment.gather import gather_segments, interleave
from avel_fast.augment.replica import PIECE_TYPE_NAMES, ReplicaSampler
from avel_fast.augment.smb import (
    SMB_STATE_LENGTHS,
    SMB_STATE_NAMES,
    SMBFusion,
    smb_database_sizes,
    smb_fusion,
    smb_transition_counts,
)

__all__ = [
    "PIECE_TYPE_NAMES",
    "SMB_STATE_LENGTHS",
    "SMB_STATE_NAMES",
    "ReplicaSampler",
    "SMBFusion",
    "gather_segments",
    "interleave",
    "smb_database_sizes",
    "smb_fusion",
    "smb_transition_counts",
]
