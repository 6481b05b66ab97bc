"""Replicate (docs/augmentations.md#replicate, DPNet Alg. 1): native == Python twin, decomposition by hand,
replica invariants, bad inputs."""
import numpy as np
import pytest
import torch

from avel_fast.augment import PIECE_TYPE_NAMES, ReplicaSampler
from avel_fast.constants import BACKGROUND, CLASS_NAMES, NUM_EVENT_CLASSES
from avel_fast.reference.augment import (
    BACKGROUND_RUN, CONTINUE, END_BORDER, END_OPEN, START_BORDER, START_OPEN, decompose,
)

B = BACKGROUND


def random_labels(rng, num_videos, T):
    """Random label sequences: several runs, classes, one-segment runs and background-only videos."""
    labels = np.full((num_videos, T), B, dtype=np.int64)
    for row in labels:
        for _ in range(rng.integers(0, 4)):
            a = rng.integers(0, T)
            row[a:rng.integers(a + 1, T + 1)] = rng.integers(0, 6)
    return labels


@pytest.mark.parametrize("case", range(12))
def test_cpp_equals_python(case):
    rng = np.random.default_rng(100 + case)
    T = int(rng.integers(2, 13))
    labels = random_labels(rng, int(rng.integers(1, 80)), T)
    native, twin = ReplicaSampler(labels), ReplicaSampler(labels, backend="python")
    batch = rng.integers(0, len(labels), int(rng.integers(0, 64)))
    for seed in (0, int(rng.integers(0, 2**63)), 2**64 - 1):
        video, segment = native.sample(batch, seed)
        expected = twin.sample(batch, seed)
        np.testing.assert_array_equal(video, expected[0])
        np.testing.assert_array_equal(segment, expected[1])
        np.testing.assert_array_equal(labels[video, segment], labels[batch])  # same label sequence
    native_sizes, twin_sizes = native.database_sizes(), twin.database_sizes()
    assert list(native_sizes) == list(twin_sizes) == list(PIECE_TYPE_NAMES)
    for name in PIECE_TYPE_NAMES:
        np.testing.assert_array_equal(native_sizes[name], twin_sizes[name])


@pytest.mark.parametrize(
    ("row", "pieces"),
    [
        ([B, B, B, 5, 5, 5, 5, B, B, B],
         [(BACKGROUND_RUN, 5, 0, 2), (START_BORDER, 5, 2, 2), (CONTINUE, 5, 4, 2), (END_BORDER, 5, 6, 2),
          (BACKGROUND_RUN, 5, 8, 2)]),
        # a one-segment gap goes to the earlier event's end; the next start is then the open variant
        ([5, 5, B, 5, 5, B],
         [(START_OPEN, 5, 0, 1), (END_BORDER, 5, 1, 2), (START_OPEN, 5, 3, 1), (END_BORDER, 5, 4, 2)]),
        ([B, 7, B, B], [(START_BORDER, 7, 0, 2), (BACKGROUND_RUN, 7, 2, 2)]),  # a one-segment run is a start
        ([3, 3, 9, 9, B], [(START_OPEN, 3, 0, 1), (END_OPEN, 3, 1, 1), (START_OPEN, 9, 2, 1), (END_BORDER, 9, 3, 2)]),
        ([B, 2, 2, 2, B, 4, 4], [(START_BORDER, 2, 0, 2), (CONTINUE, 2, 2, 1), (END_BORDER, 2, 3, 2),
                                 (START_OPEN, 4, 5, 1), (END_OPEN, 4, 6, 1)]),
        ([B, B, B, B], [(BACKGROUND_RUN, -1, 0, 4)]),
    ],
)
def test_decomposition_by_hand(row, pieces):
    assert decompose(row) == pieces


@pytest.mark.parametrize("backend", ["cpp", "python"])
def test_replicas_by_hand(backend):
    A, C = [0] * 6, [B, 0, 0, 0, 0, B]
    sampler = ReplicaSampler(np.array([A, C]), backend=backend)
    # A: its start/end variants exist only in A (kept); its 4-segment continue is assembled from C's only
    # continue window of length 2 (the longest C offers), twice.
    video, segment = sampler.sample([0], seed=3)
    assert video.tolist() == [[0, 1, 1, 1, 1, 0]] and segment.tolist() == [[0, 2, 3, 2, 3, 5]]
    # C: start/end borders only in C; continue [2, 3] from one of A's three length-2 windows 1, 2, 3.
    drawn = set()
    for seed in range(40):
        video, segment = sampler.sample([1], seed)
        assert video[0, [0, 1, 4, 5]].tolist() == [1, 1, 1, 1] and segment[0, [0, 1, 4, 5]].tolist() == [0, 1, 4, 5]
        assert video[0, 2] == video[0, 3] == 0 and segment[0, 3] == segment[0, 2] + 1
        drawn.add(int(segment[0, 2]))
    assert drawn == {1, 2, 3}
    sizes = sampler.database_sizes()
    assert sizes["continue"][0] == (4 + 3 + 2 + 1) + (2 + 1) and sizes["start_open"][0] == 1 == sizes["start_border"][0]


def test_row_streams_are_independent_and_deterministic():
    labels = random_labels(np.random.default_rng(1), 50, 10)
    sampler = ReplicaSampler(labels)
    video, segment = sampler.sample(np.array([3, 5, 7]), seed=12)
    other_video, other_segment = sampler.sample(torch.tensor([9, 5]), seed=12)  # row 1 depends on (seed, 1, 5)
    np.testing.assert_array_equal(other_video[1], video[1])
    np.testing.assert_array_equal(other_segment[1], segment[1])
    np.testing.assert_array_equal(sampler.sample([3, 5, 7], seed=12)[0], video)
    assert sampler.sample(np.zeros(0, dtype=np.int64), seed=1)[0].shape == (0, 10)


def test_real_training_replicas(train_labels, capsys):
    sampler = ReplicaSampler(train_labels)
    sizes = sampler.database_sizes()
    with capsys.disabled():
        print(f"\nReplicate databases on {len(train_labels)} real training videos (entries per class, all lengths):")
        print("class " + " ".join(f"{name:>12}" for name in PIECE_TYPE_NAMES))
        for e in range(NUM_EVENT_CLASSES):
            print(f"{e:5d} " + " ".join(f"{sizes[name][e]:12d}" for name in PIECE_TYPE_NAMES) + f"  {CLASS_NAMES[e]}")
        print("total " + " ".join(f"{sizes[name].sum():12d}" for name in PIECE_TYPE_NAMES))
    T = train_labels.shape[1]
    is_event = train_labels != B
    assert sizes["start_open"].sum() == is_event[:, 0].sum() and sizes["end_open"].sum() == is_event[:, -1].sum()
    assert sizes["start_border"].sum() == (~is_event[:, :-1] & is_event[:, 1:]).sum()
    assert (sizes["continue"] > 0).all() and (sizes["background"] > 0).all()

    batch = np.arange(len(train_labels))  # replicate every training video
    original = train_labels
    video_class = np.where(is_event.any(1), train_labels.min(1), -1)  # one event class per real video
    t = np.arange(T)
    for seed in (0, 77):
        video, segment = sampler.sample(batch, seed)
        assert (train_labels[video, segment] == original).all()  # exactly the original's labels
        source_prev = np.where(segment > 0, train_labels[video, np.maximum(segment - 1, 0)], -1)
        source_next = np.where(segment < T - 1, train_labels[video, np.minimum(segment + 1, T - 1)], -1)
        prev = np.concatenate([np.full((len(batch), 1), -1), original[:, :-1]], 1)
        nxt = np.concatenate([original[:, 1:], np.full((len(batch), 1), -1)], 1)
        start, end = is_event & (prev != original), is_event & (nxt != original)
        inner = is_event & ~start & ~end
        assert (source_prev[inner] == original[inner]).all() and (source_next[inner] == original[inner]).all()
        assert (source_prev[start] != original[start]).all()  # a genuine start sub-event of the class
        assert (source_next[end & ~start] != original[end & ~start]).all()  # a genuine end sub-event
        assert (segment[start & (t == 0)] == 0).all() and (segment[end & (t == T - 1)] == T - 1).all()
        border_start = start & (prev == B)  # [BG, FG] drawn as one two-segment unit
        rows, cols = np.nonzero(border_start)
        assert (video[rows, cols - 1] == video[rows, cols]).all()
        assert (segment[rows, cols - 1] + 1 == segment[rows, cols]).all()
        rows, cols = np.nonzero(end & ~start & (nxt == B))  # [FG, BG] likewise
        assert (video[rows, cols + 1] == video[rows, cols]).all()
        assert (segment[rows, cols + 1] == segment[rows, cols] + 1).all()
        background = ~is_event
        assert (video_class[video][background] == np.broadcast_to(video_class[:, None], video.shape)[background]).all()
        # from another video, except the one background-only video, which is kept as it is
        own = (video == batch[:, None]).any(1)
        np.testing.assert_array_equal(own, ~is_event.any(1))
        np.testing.assert_array_equal(segment[own], np.broadcast_to(t, segment.shape)[own])


@pytest.mark.parametrize("backend", ["cpp", "python"])
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((3, 10), dtype=np.float64), "labels must be an integer array, got dtype float64"),
        (np.zeros(10, dtype=np.int64), r"labels must have rank 2 \[videos, segments\], got rank 1"),
        (np.zeros((4, 1), dtype=np.int64), "labels must have at least 2 segments per video, got 1"),
        (np.array([[0, 30]]), r"labels must be in 0..28 \(28 = background\), got 30 at \[0, 1\]"),
    ],
)
def test_bad_labels(backend, labels, message):
    with pytest.raises(ValueError, match=message):
        ReplicaSampler(labels, backend=backend)


@pytest.mark.parametrize("backend", ["cpp", "python"])
@pytest.mark.parametrize(
    ("batch", "seed", "message"),
    [
        (np.array([0, 3, 4]), 0, "batch_video_idx must be in 0..3, got 4 at position 2"),
        (np.array([1, -1]), 0, "batch_video_idx must be in 0..3, got -1 at position 1"),
        (np.array([0.0, 1.0]), 0, "batch_video_idx must be an integer array, got dtype float64"),
        (np.zeros((2, 2), dtype=np.int64), 0, "batch_video_idx must be 1-D, got rank 2"),
        (np.array([0]), -5, r"seed must be an integer in 0..2\*\*64-1, got -5"),
    ],
)
def test_bad_batch(backend, batch, seed, message):
    sampler = ReplicaSampler(np.array([[0, 0, B], [B, 1, 1], [2, 2, 2], [B, B, B]]), backend=backend)
    with pytest.raises(ValueError, match=message):
        sampler.sample(batch, seed)


@pytest.mark.parametrize("backend", ["cpp", "python"])
def test_empty_batch_of_any_dtype_gives_no_replicas(backend):
    sampler = ReplicaSampler(np.array([[0, 0, B], [B, 1, 1], [2, 2, 2], [B, B, B]]), backend=backend)
    for batch in ([], np.array([], dtype=np.int32)):
        video_idx, segment_idx = sampler.sample(batch, 0)
        assert video_idx.shape == segment_idx.shape == (0, 3)
