"""Segments of several videos gathered into new videos by one flat index (docs/augmentations.md: one gather).

The common step of the synthetic videos of label refinement (docs/weak.md#synthetic-videos) and of the fused
and replica videos of `avel_fast.augment`, which import it from here.
"""
from __future__ import annotations

import numpy as np
import torch


def _index_tensor(values, name: str, bound: int, device: torch.device) -> torch.Tensor:
    """`values` as int64 on `device` after checking they are integers in ``0..bound-1`` (on the CPU for numpy
    input, then copied to a CUDA `device` asynchronously from pinned memory; one device sync for a CUDA
    tensor)."""
    if isinstance(values, torch.Tensor):
        if values.dtype.is_floating_point or values.dtype == torch.bool or values.is_complex():
            raise ValueError(f"{name} must be an integer array, got dtype {values.dtype}")
        index = values.to(dtype=torch.int64)
        low, high = torch.stack(torch.aminmax(index)).tolist() if index.numel() else (0, -1)  # empty: in range
    else:
        array = np.asarray(values)
        if array.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer array, got dtype {array.dtype}")
        index = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
        low, high = (int(array.min()), int(array.max())) if array.size else (0, -1)
        if device.type == "cuda":
            index = index.pin_memory()
    if low < 0 or high >= bound:
        raise ValueError(f"{name} must be in 0..{bound - 1}, got values in {low}..{high}")
    return index.to(device, non_blocking=True)


def gather_segments(features: torch.Tensor, video_idx, segment_idx) -> torch.Tensor:
    """``out[m, j] = features[video_idx[m, j], segment_idx[m, j]]`` by one flat ``index_select``.

    `features` is ``[V, T, ...]`` (audio ``[V, T, 128]``, pooled visual ``[V, T, 512]``, maps
    ``[V, T, 7, 7, 512]``, labels ``[V, T]``); the indices (numpy or tensors, any device) have one shape
    ``[M, T']`` and are range-checked (a device sync for CUDA index tensors). Returns ``[M, T', ...]`` on
    the features' device and dtype.
    """
    if features.dim() < 2:
        raise ValueError(f"features must have shape [videos, segments, ...], got {tuple(features.shape)}")
    num_videos, num_segments = features.shape[:2]
    videos = _index_tensor(video_idx, "video_idx", num_videos, features.device)
    segments = _index_tensor(segment_idx, "segment_idx", num_segments, features.device)
    if videos.shape != segments.shape or videos.dim() != 2:
        raise ValueError(
            "video_idx and segment_idx must share one shape [M, T], "
            f"got {tuple(videos.shape)} and {tuple(segments.shape)}"
        )
    flat = (videos * num_segments + segments).reshape(-1)
    gathered = features.flatten(0, 1).index_select(0, flat)
    return gathered.reshape(*videos.shape, *features.shape[2:])
