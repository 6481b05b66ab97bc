"""SMB video fusion (docs/augmentations.md#smb, EDRNet Alg. 1 / Table 1): native == Python twin, Table 1
invariants, transition counts, a fused set that looks like the training set, bad inputs."""
import numpy as np
import pytest
import torch

from avel_fast.augment import SMB_STATE_NAMES, smb_database_sizes, smb_fusion, smb_transition_counts
from avel_fast.constants import BACKGROUND, CLASS_NAMES, NUM_EVENT_CLASSES
from avel_fast.data import synthetic_labels

BG, FG = "BG", "FG"
# Table 1, written out independently of the implementation: extracted pattern, and where it must sit.
PATTERNS = {
    "BG_1": (BG,), "BG_2": (BG, BG), "START_1": (FG,), "START_2": (BG, FG),
    "CONTINUE_1": (FG,), "CONTINUE_2": (FG, FG), "END_1": (FG,), "END_2": (FG, BG),
}
BEFORE_EVENT = {"BG_1", "BG_2", "START_2"}
INSIDE = {"CONTINUE_1", "CONTINUE_2", "END_1", "END_2"}
AFTER_EVENT = {"BG_1", "BG_2"}  # the event has ended: no second START
TRANSITIONS = {  # (previous state, a START was placed) -> allowed next states
    (None, False): {"BG_1", "BG_2", "START_1", "START_2"}, ("BG_1", False): BEFORE_EVENT,
    ("BG_2", False): BEFORE_EVENT, ("BG_1", True): AFTER_EVENT, ("BG_2", True): AFTER_EVENT,
    ("END_2", True): AFTER_EVENT, ("START_1", True): INSIDE, ("START_2", True): INSIDE,
    ("CONTINUE_1", True): INSIDE, ("CONTINUE_2", True): INSIDE, ("END_1", True): set(),
}


def check_fused_video(source, e, video, segment, labels, states):
    """Every rule of docs/augmentations.md#smb for one fused video of class e built from `source` labels [V, T]."""
    T = len(labels)
    t, prev, started = 0, None, False
    while t < T:
        name = SMB_STATE_NAMES[states[t]]
        n = len(PATTERNS[name])
        assert name in TRANSITIONS[prev, started], f"{prev} -> {name}"
        assert (states[t:t + n] == states[t]).all()
        v, s = video[t], segment[t]
        assert (video[t:t + n] == v).all() and segment[t:t + n].tolist() == list(range(s, s + n))
        src = source[v]
        expected = [e if p == FG else BACKGROUND for p in PATTERNS[name]]
        assert src[s:s + n].tolist() == expected == labels[t:t + n].tolist()
        assert e in src  # the source video is of class e
        if name == "START_1":
            assert t == 0 and s == 0
        if name == "END_1":
            assert t == T - 1 and s == T - 1
        if name.startswith("CONTINUE"):
            assert src[s - 1] == e and src[s + n] == e  # FG, [FG..], FG
        t, prev, started = t + n, name, started or name.startswith("START")
    assert prev in {"BG_1", "BG_2", "END_1", "END_2"} and started
    assert set(labels.tolist()) <= {e, BACKGROUND} and (labels == e).any()
    runs = np.split(labels, np.flatnonzero(np.diff(labels)) + 1)
    event_runs = [run for run in runs if run[0] == e]
    assert len(event_runs) == 1 and len(event_runs[0]) >= 2


def check_fusion(source, fused, per_class):
    assert fused.labels.shape == (NUM_EVENT_CLASSES * per_class, source.shape[1])
    for row, e in enumerate(fused.event_class):
        check_fused_video(source, e, fused.video_idx[row], fused.segment_idx[row], fused.labels[row], fused.states[row])


def random_labels(rng, num_videos, T):
    """Random label sequences with several runs and classes per video, plus one feasible video per class."""
    labels = np.full((num_videos, T), BACKGROUND, dtype=np.int64)
    for row in labels:
        for _ in range(rng.integers(0, 4)):
            a = rng.integers(0, T)
            row[a:rng.integers(a + 1, T + 1)] = rng.integers(0, NUM_EVENT_CLASSES)
    events = np.repeat(np.arange(NUM_EVENT_CLASSES)[:, None], T, axis=1)
    return np.concatenate([labels, events])[rng.permutation(num_videos + NUM_EVENT_CLASSES)]


@pytest.mark.parametrize("case", range(12))
def test_cpp_equals_python(case):
    rng = np.random.default_rng(case)
    T = int(rng.integers(2, 13))
    labels = random_labels(rng, int(rng.integers(0, 60)), T)
    seed = int(rng.integers(0, 2**63)) * 2 + case % 2
    per_class = int(rng.integers(1, 8))
    native = smb_fusion(labels, per_class, seed, backend="cpp")
    twin = smb_fusion(labels, per_class, seed, backend="python")
    for field in ("video_idx", "segment_idx", "labels", "states"):
        np.testing.assert_array_equal(getattr(native, field), getattr(twin, field))
    np.testing.assert_array_equal(smb_database_sizes(labels), smb_database_sizes(labels, backend="python"))
    np.testing.assert_array_equal(smb_transition_counts(labels), smb_transition_counts(labels, backend="python"))
    check_fusion(labels, native, per_class)


def test_single_possible_sequence_by_hand():
    # Each class has one video [BG, e, e, BG]: only START_2 -> END_2 fits 4 segments (no END_1, no CONTINUE).
    labels = np.full((NUM_EVENT_CLASSES, 4), BACKGROUND, dtype=np.int64)
    labels[:, 1:3] = np.arange(NUM_EVENT_CLASSES)[:, None]
    fused = smb_fusion(labels, per_class=3, seed=11)
    e = np.repeat(np.arange(NUM_EVENT_CLASSES), 3)
    background = np.full_like(e, BACKGROUND)
    np.testing.assert_array_equal(fused.labels, np.stack([background, e, e, background], 1))
    np.testing.assert_array_equal(fused.video_idx, np.repeat(e[:, None], 4, axis=1))
    # [BG, FG] from segments 0, 1 and [FG, BG] from segments 2, 3 of the class's video
    np.testing.assert_array_equal(fused.segment_idx, np.tile([0, 1, 2, 3], (len(e), 1)))
    assert [SMB_STATE_NAMES[s] for s in fused.states[0]] == ["START_2", "START_2", "END_2", "END_2"]
    sizes = smb_database_sizes(labels)
    np.testing.assert_array_equal(sizes[0], [2, 0, 0, 1, 0, 0, 0, 1])  # BG_1 x2, START_2, END_2


@pytest.mark.parametrize("backend", ["cpp", "python"])
def test_transition_counts_by_hand(backend):
    e, f, o = 4, 9, BACKGROUND
    labels = np.array([
        [o, o, o, e, e, o],  # BG_2 START_2 END_2
        [e, e, e, e, e, e],  # START_1 CONTINUE_2 CONTINUE_2 END_1
        [o, e, e, e, o, o],  # START_2 CONTINUE_1 END_2 BG_1
        [o, o, o, o, f, f],  # BG_2 BG_1 START_2 END_1 (twice)
        [o, o, o, o, f, f],
        # not counted: two runs, two classes, a one-segment run, no event
        [e, e, o, o, e, e], [e, e, f, f, o, o], [o, o, e, o, o, o], [o] * 6,
    ])
    expected = np.zeros((2, 9, 6, 8), dtype=np.int64)
    state = {name: i for i, name in enumerate(SMB_STATE_NAMES)} | {"BEGIN": 8}
    for started, prev, position, name, count in [
        (0, "BEGIN", 0, "BG_2", 3), (0, "BG_2", 2, "START_2", 1), (1, "START_2", 4, "END_2", 1),
        (0, "BEGIN", 0, "START_1", 1), (1, "START_1", 1, "CONTINUE_2", 1), (1, "CONTINUE_2", 3, "CONTINUE_2", 1),
        (1, "CONTINUE_2", 5, "END_1", 1),
        (0, "BEGIN", 0, "START_2", 1), (1, "START_2", 2, "CONTINUE_1", 1), (1, "CONTINUE_1", 3, "END_2", 1),
        (1, "END_2", 5, "BG_1", 1),
        (0, "BG_2", 2, "BG_1", 2), (0, "BG_1", 3, "START_2", 2), (1, "START_2", 5, "END_1", 2),
    ]:
        expected[started, state[prev], position, state[name]] = count
    np.testing.assert_array_equal(smb_transition_counts(labels, backend=backend), expected)


def test_deterministic_and_thread_independent():
    labels = random_labels(np.random.default_rng(5), 80, 10)
    one = smb_fusion(labels, 40, seed=9)
    for threads in (2, 5):
        np.testing.assert_array_equal(smb_fusion(labels, 40, seed=9, threads=threads).video_idx, one.video_idx)
    np.testing.assert_array_equal(smb_fusion(torch.from_numpy(labels), 40, seed=9).segment_idx, one.segment_idx)
    assert (smb_fusion(labels, 40, seed=10).video_idx != one.video_idx).any()


def test_real_training_labels_obey_table_1(train_labels, capsys):
    sizes = smb_database_sizes(train_labels)
    with capsys.disabled():
        print(f"\nSMB databases on {len(train_labels)} real training videos (instances per class and state):")
        print("class " + " ".join(f"{name:>10}" for name in SMB_STATE_NAMES))
        for e, row in enumerate(sizes):
            print(f"{e:5d} " + " ".join(f"{n:10d}" for n in row) + f"  {CLASS_NAMES[e]}")
        print("total " + " ".join(f"{n:10d}" for n in sizes.sum(0)))
    assert (sizes[:, [0, 2, 4, 5, 6, 7]] > 0).all()  # every class has BG, START_1, CONTINUE, END instances
    assert sizes[:, 2].sum() == (train_labels[:, 0] != BACKGROUND).sum()  # START_1: events at segment 0
    assert sizes[:, 6].sum() == (train_labels[:, -1] != BACKGROUND).sum()  # END_1: events at segment T-1
    event_lengths = (train_labels != BACKGROUND).sum(1)  # one contiguous event per real video
    assert sizes[:, 4].sum() == np.maximum(event_lengths - 2, 0).sum()  # CONTINUE_1: its inner segments

    fused = smb_fusion(train_labels, per_class=250, seed=2024)
    check_fusion(train_labels, fused, 250)
    for e in range(NUM_EVENT_CLASSES):  # the state machine really blends: several sequences per class
        assert len({tuple(s) for s in fused.states[fused.event_class == e]}) > 1


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((3, 10), dtype=np.float32), "labels must be an integer array, got dtype float32"),
        (np.zeros((2, 3, 10), dtype=np.int64), r"labels must have rank 2 \[videos, segments\], got rank 3"),
        (np.zeros((5, 1), dtype=np.int64), "labels must have at least 2 segments per video, got 1"),
        (np.array([[0, 28], [28, 29]]), r"labels must be in 0..28 \(28 = background\), got 29 at \[1, 1\]"),
        (np.array([[0, -1]]), r"labels must be in 0..28 \(28 = background\), got -1 at \[0, 1\]"),
        (np.repeat(np.arange(NUM_EVENT_CLASSES - 1)[:, None], 4, 1), r"event class 27 \(Mandolin\) has no videos"),
        # class 3 only ever in [BG, e]: with T = 2 no sequence can end on BG_x / END_x after a START.
        (np.array([[e, e] if e != 3 else [BACKGROUND, 3] for e in range(NUM_EVENT_CLASSES)]),
         r"event class 3 \(Fixed-wing aircraft, airplane\): its videos yield no valid 2-segment SMB state sequence"),
    ],
)
@pytest.mark.parametrize("backend", ["cpp", "python"])
def test_bad_labels(labels, message, backend):
    with pytest.raises(ValueError, match=message):
        smb_fusion(labels, per_class=2, backend=backend)


@pytest.mark.parametrize("backend", ["cpp", "python"])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_class": 0}, "per_class must be >= 1, got 0"),
        ({"seed": -1}, r"seed must be an integer in 0..2\*\*64-1, got -1"),
        ({"seed": 2**64}, r"seed must be an integer in 0..2\*\*64-1"),
        ({"seed": 1.5}, r"seed must be an integer in 0..2\*\*64-1, got 1.5"),
    ],
)
def test_bad_arguments(backend, kwargs, message):
    labels = np.repeat(np.arange(NUM_EVENT_CLASSES)[:, None], 4, 1)
    with pytest.raises(ValueError, match=message):
        smb_fusion(labels, **{"per_class": 2, **kwargs}, backend=backend)


def test_bad_backend_and_threads():
    labels = np.repeat(np.arange(NUM_EVENT_CLASSES)[:, None], 4, 1)
    with pytest.raises(ValueError, match="backend must be 'cpp' or 'python', got 'gpu'"):
        smb_fusion(labels, backend="gpu")
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        smb_fusion(labels, threads=0)
    with pytest.raises(ValueError, match=f"per_class {2**62} is too large: the output would not fit in memory"):
        smb_fusion(labels, per_class=2**62)
    many_threads = smb_fusion(labels, per_class=3, seed=5, threads=2**40)  # more threads than classes: capped
    np.testing.assert_array_equal(many_threads.labels, smb_fusion(labels, per_class=3, seed=5).labels)


def fused_set_statistics(labels):
    """Foreground share, share of videos with more than one event run, and event-run length histogram."""
    foreground = labels != BACKGROUND
    padded = np.pad(foreground, ((0, 0), (1, 1)))
    starts = np.argwhere(padded[:, 1:-1] & ~padded[:, :-2])
    ends = np.argwhere(padded[:, 1:-1] & ~padded[:, 2:])
    runs_per_video = np.bincount(starts[:, 0], minlength=len(labels))
    histogram = np.bincount(ends[:, 1] - starts[:, 1] + 1, minlength=labels.shape[1] + 1) / len(starts)
    return foreground.mean(), (runs_per_video > 1).mean(), histogram


def check_looks_like(train, source, capsys):
    """The fused set of `train` keeps its foreground share (within 5 points), holds one event run per video
    (at most 5 % with more) and keeps its event-length histogram (total-variation distance <= 0.15)."""
    fused = smb_fusion(train, per_class=250, seed=2024)
    train_share, train_multi, train_histogram = fused_set_statistics(train)
    share, multi, histogram = fused_set_statistics(fused.labels)
    distance = np.abs(histogram - train_histogram).sum() / 2
    with capsys.disabled():
        print(f"\n{source} labels: foreground share training {train_share:.3f}, fused {share:.3f}; videos with > 1 "
              f"event run: training {train_multi:.3f}, fused {multi:.3f}; event-length TV distance {distance:.3f}")
        print("event lengths 1..T, training: " + " ".join(f"{x:.3f}" for x in train_histogram[1:]))
        print("event lengths 1..T, fused:    " + " ".join(f"{x:.3f}" for x in histogram[1:]))
    assert abs(share - train_share) <= 0.05
    assert multi <= 0.05
    assert distance <= 0.15


def test_real_fused_set_looks_like_the_training_set(train_labels, capsys):
    check_looks_like(train_labels, "real", capsys)


def test_synthetic_fused_set_looks_like_the_training_set(capsys):
    synthetic = synthetic_labels(seed=0)
    check_looks_like(synthetic.labels[synthetic.splits["train"]].numpy(), "synthetic", capsys)
