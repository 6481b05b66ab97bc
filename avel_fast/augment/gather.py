"""Build fused or replica features on the features' device from sampler indices (docs/augmentations.md: one gather):
`gather_segments` (from `avel_fast.reference.gather`, which label refinement shares) and the Link layout."""
from __future__ import annotations

import torch

from avel_fast.reference.gather import gather_segments

__all__ = ["gather_segments", "interleave"]


def interleave(originals: torch.Tensor, replicas: torch.Tensor) -> torch.Tensor:
    """``[2B, ...]`` with rows ``2i = originals[i]`` and ``2i+1 = replicas[i]``: the Link layout of the RGCT
    with ``group_size=2`` (DPNet §3.4), each original next to its replica."""
    if originals.shape != replicas.shape:
        raise ValueError(
            f"originals and replicas must have the same shape, got {tuple(originals.shape)} and {tuple(replicas.shape)}"
        )
    return torch.stack((originals, replicas), dim=1).flatten(0, 1)
