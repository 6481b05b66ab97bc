"""Replicate (DPNet §3.4 and Alg. 1; docs/augmentations.md#replicate): replicas with exactly the labels of their
originals.

The algorithm is written out step by step in `avel_fast.reference.augment` (the pure-Python twin); the
native `avel_fast._sampler.ReplicaSampler` mirrors it draw for draw.
"""
from __future__ import annotations

import numpy as np

from avel_fast import _sampler
from avel_fast.augment._inputs import as_numpy, check_backend
from avel_fast.reference import augment as twin

PIECE_TYPE_NAMES = twin.PIECE_TYPE_NAMES


class ReplicaSampler:
    """Sub-event databases of the training labels ``[V, T]``, built once; `sample` draws replicas.

    Each sub-event (start, continue, end, background piece) of an original is replaced by a sample of the
    same type, class, variant and length from another training video when one exists; long continue and
    background pieces are assembled greedily from the longest windows other videos offer.
    """

    def __init__(self, labels, backend: str = "cpp") -> None:
        self.backend = check_backend(backend)
        labels = as_numpy(labels)
        self._impl = twin.ReplicaSampler(labels) if backend == "python" else _sampler.ReplicaSampler(labels)
        self.num_videos = self._impl.num_videos
        self.num_segments = self._impl.num_segments

    def sample(self, batch_video_idx, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One replica per batch row: ``(video_idx, segment_idx)``, int64 ``[B, T]``, indexing the labels given.

        Row i depends only on ``(seed, i, batch_video_idx[i])``; use a fresh seed per training step.
        """
        return self._impl.sample(as_numpy(batch_video_idx), twin.check_seed(seed))

    def database_sizes(self) -> dict[str, np.ndarray]:
        """Entries per sub-event type (`PIECE_TYPE_NAMES`) and event class, all lengths together: int64 ``[28]``."""
        return self._impl.database_sizes()
