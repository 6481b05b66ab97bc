"""State Machine Based video fusion (EDRNet Alg. 1 and Table 1; `docs/augmentations.md#smb`) on label sequences.

For each event class, a state machine over the Table 1 states (BG, START, CONTINUE, END; one or two segments
each) writes a T-segment state sequence holding one event, and every state is filled with a random instance
of it cut from that class's training videos. Transitions are drawn with the frequencies of the training
labels' own state sequences (pooled over classes, per position, add-one smoothed) among those that can still
complete the sequence, so the fused set keeps the training set's share of foreground and event lengths.

The algorithm is written out step by step in `avel_fast.reference.augment` (the pure-Python twin); the
native `avel_fast._sampler` mirrors it draw for draw, so both backends give identical output for a seed.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from avel_fast import _sampler
from avel_fast.augment._inputs import as_numpy, check_backend
from avel_fast.constants import NUM_EVENT_CLASSES
from avel_fast.reference import augment as twin

SMB_STATE_NAMES = twin.SMB_STATE_NAMES
SMB_STATE_LENGTHS = twin.SMB_STATE_LENGTHS


@dataclass(frozen=True)
class SMBFusion:
    """``per_class`` fused videos per event class, grouped by class (rows ``e*per_class ..`` are class e).

    Each field is int64 ``[28*per_class, T]``: ``video_idx`` indexes the rows of the labels given,
    ``segment_idx`` the segment within that video, ``labels`` the fused label sequences and ``states`` the
    SMB state (index into `SMB_STATE_NAMES`) that produced each segment.
    """

    video_idx: np.ndarray
    segment_idx: np.ndarray
    labels: np.ndarray
    states: np.ndarray
    per_class: int

    @property
    def event_class(self) -> np.ndarray:
        """The event class of each fused video, int64 ``[28*per_class]``."""
        return np.repeat(np.arange(len(self.labels) // self.per_class), self.per_class)


def smb_fusion(labels, per_class: int = 250, seed: int = 0, backend: str = "cpp", threads: int = 1) -> SMBFusion:
    """Fuse ``per_class`` new videos for every event class from the training labels ``[V, T]`` (EDRNet Alg. 1).

    `labels` may be a numpy array or a tensor; ``backend="python"`` runs the pure-Python twin. ``threads``
    spreads the classes of the native sampler over std::threads; the output does not depend on it (each
    class draws from its own derived stream). Default 1: on the 2-core CI machine 2 threads measured no
    faster, even for 28 x 10000 videos.
    """
    check_backend(backend)
    seed = twin.check_seed(seed)
    per_class = operator.index(per_class)
    if backend == "python":
        video_idx, segment_idx, fused, states = twin.smb_fusion(as_numpy(labels), per_class, seed)
    else:
        threads = operator.index(threads)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        threads = min(threads, NUM_EVENT_CLASSES)  # one class per thread at the most
        video_idx, segment_idx, fused, states = _sampler.smb_fusion(as_numpy(labels), per_class, seed, threads)
    return SMBFusion(video_idx, segment_idx, fused, states, per_class)


def smb_database_sizes(labels, backend: str = "cpp") -> np.ndarray:
    """Instances per (event class, SMB state), int64 ``[28, 8]`` (states in `SMB_STATE_NAMES` order)."""
    if check_backend(backend) == "python":
        return twin.smb_database_sizes(as_numpy(labels))
    return _sampler.smb_database_sizes(as_numpy(labels))


def smb_transition_counts(labels, backend: str = "cpp") -> np.ndarray:
    """How often the training labels' own state sequences take each transition, int64 ``[2, 9, T, 8]``:
    [a START precedes, previous state (8 = the beginning), position, state]; the weights of SMB fusion."""
    if check_backend(backend) == "python":
        return twin.smb_transition_counts(as_numpy(labels))
    return _sampler.smb_transition_counts(as_numpy(labels))
