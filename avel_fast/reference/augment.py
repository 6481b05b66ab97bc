"""Pure-Python twin of the native sampler `avel_fast._sampler` (docs/augmentations.md): same algorithms, same generator
(`avel_fast._rng.SplitMix64`), same draws in the same order, hence identical output for a seed.

Labels are int64 ``[V, T]``: ``0..27`` event classes, ``28`` background (docs/data.md#contract). Below, "FG of class e"
means label ``e`` and "BG" means label 28; a segment of another event class is neither.

SMB video fusion (EDRNet Algorithm 1 and Table 1; `docs/augmentations.md#smb`)
-------------------------------------------------------------------------------
A state machine writes a T-segment state sequence for event class e; each state is then filled with a random
instance of that state from class e's training videos. The transitions are drawn with the frequencies of the
training labels' own state sequences, so the fused set looks like the training set (share of foreground,
one event per video, event lengths) instead of drifting to short events and background as uniform choice does.

1. Databases. For every video v (ascending) and segment t (ascending), with ``e`` ranging over the event
   classes present in v, store the flat index ``v*T + t`` of the first extracted segment in (e, state):
   BG_1 ``[BG]`` at t; BG_2 ``[BG, BG]`` at t, t+1; START_1 ``[FG]`` at t = 0; START_2 ``[BG, FG]`` at t, t+1;
   CONTINUE_1 ``FG, [FG], FG`` at t-1..t+1; CONTINUE_2 ``FG, [FG, FG], FG`` at t-1..t+2; END_1 ``[FG]`` at
   t = T-1; END_2 ``[FG, BG]`` at t, t+1. So a video whose FG runs have several classes feeds each run to its
   own class, and its BG segments to every class it contains.
2. Transition counts, pooled over the classes (per class, ~120 AVE videos are too sparse for 2*9*T*8 cells).
   A video whose FG segments form one run [a, b] of one class, b > a, has one canonical state sequence:
   START_1 at 0 if a = 0, else a BG stretch over 0..a-2 and START_2 at a-1; a CONTINUE stretch over
   a+1..b-1; END_1 at b if b = T-1, else END_2 at b and a BG stretch over b+2..T-1. A stretch of n segments is
   n // 2 two-segment states, then a one-segment state if n is odd. Each state s at position p of it adds 1
   to ``counts[h][prev][p][s]``, with prev the state before it (BEGIN for the first) and h = 1 when a START
   precedes s. Other videos (no event, several runs or classes, a one-segment run) add nothing.
3. Feasibility. ``good[h][s][p]``: state s may start at segment p, when a START was (h=1) or was not (h=0)
   already placed, and the sequence can still be completed: (e, s) is non-empty, p + len(s) <= T, START_1 only
   at p = 0, END_1 only at p = T-1, and with q = p + len(s), h' = h or s is a START: if q = T then s is BG_x,
   END_1 or END_2 and h' = 1, else some successor s' of s has ``good[h'][s'][q]``. Successors
   ``SMB_SUCCESSORS[h'][s]``: BEGIN -> BG_1, BG_2, START_1, START_2; BG_x before the event (h' = 0) -> BG_1,
   BG_2, START_2; START_x and CONTINUE_x -> CONTINUE_1, CONTINUE_2, END_1, END_2; END_2 and BG_x after the
   event (h' = 1) -> BG_1, BG_2; END_1 -> none. A START is followed by at least one END (never by BG or another
   START), each contributing one FG segment, and no START follows the END, so every output holds exactly one
   FG run, of class e and >= 2 segments long.
4. Errors. Classes are checked in ascending order before anything is drawn: a class absent from the labels
   or one with no ``good[0][s][0]`` for a successor s of BEGIN is an error naming the class.
5. Generation. Class e draws from its own stream ``SplitMix64(derive_seed(seed, e))`` its ``per_class``
   videos, written to rows ``e*per_class ..``. For each video: from prev = BEGIN, p = 0, h = 0, while p < T:
   list the successors s of prev (in state order) with ``good[h][s][p]``, weigh each by
   ``counts[h][prev][p][s] + 1`` (add-one smoothing: every feasible transition keeps a chance, and without
   counts the choice is uniform), draw ``r = below(total weight)`` and take the first s whose cumulative
   weight exceeds r; p += len(s), h |= s is a START, prev = s. Then, for each chosen state in order, take
   entry ``below(size)`` of (e, s); its segments k = 0..len(s)-1 fill positions p+k with video ``entry // T``,
   segment ``entry % T + k``, that segment's source label, and the state code.

Replicate (DPNet §3.4 and Algorithm 1, docs/augmentations.md#replicate)
--------------------------------------------------
1. Decomposition of a video into sub-events covering its T segments, over its FG runs [a, b] (class c,
   n = b - a + 1) from left to right: start = ``[BG, FG]`` at a-1, a (variant "border") when segment a-1 is BG
   and not already taken by the previous run's end, else ``[FG]`` at a ("open": the video starts in the event,
   or the run follows another class or a one-segment gap); if n >= 3, continue = a+1..b-1; if n >= 2, end =
   ``[FG, BG]`` at b, b+1 ("border") when b+1 is BG, else ``[FG]`` at b ("open"). A one-segment run is its
   start only. The segments left over (all BG) form background pieces, of the video's first event class
   (-1 for a video without events).
2. Databases, keyed by (type, class, length), entries ``v*T + first`` ascending: every start and end piece of
   every video; every window of lengths 1..L of every continue piece (length L); every window of every
   maximal BG run of a video, once for each event class the video contains.
3. Plan of video v (built once; pieces in position order). A start or end piece is one draw from its key. A
   continue or background piece of length L is cut greedily into chunks of length m = the longest window
   another video offers for (type, class) (all shorter windows then exist too): min(m, remaining) each; if no
   other video offers one, one chunk of length L. A draw excludes video v's own entries ``[lo, hi)`` of the
   key (samples come from another video) unless v holds all of them, then it draws among all. A background
   piece of a video without events is kept as it is (no draw).
4. Sampling. Batch row i (video v) uses the stream ``SplitMix64(derive_seed(seed, i))``: for each draw of v's
   plan, ``r = below(size - (hi - lo))``, ``r += hi - lo`` if ``r >= lo``; entry r of the key gives video
   ``entry // T`` and segments ``entry % T + k`` for the chunk's positions. The replica has exactly v's labels.
"""
from __future__ import annotations

import bisect
import operator

import numpy as np

from avel_fast._rng import SplitMix64, derive_seed
from avel_fast.constants import BACKGROUND, CLASS_NAMES, NUM_EVENT_CLASSES

# SMB states (Table 1), in the order used for successor lists and database layout.
BG_1, BG_2, START_1, START_2, CONTINUE_1, CONTINUE_2, END_1, END_2 = range(8)
SMB_STATE_NAMES = ("BG_1", "BG_2", "START_1", "START_2", "CONTINUE_1", "CONTINUE_2", "END_1", "END_2")
SMB_STATE_LENGTHS = (1, 2, 1, 2, 1, 2, 1, 2)
NUM_SMB_STATES = 8
_BEGIN = NUM_SMB_STATES
_STARTS = (START_1, START_2)
_TERMINAL = (BG_1, BG_2, END_1, END_2)
_BEFORE_EVENT = (BG_1, BG_2, START_2)
_INSIDE_EVENT = (CONTINUE_1, CONTINUE_2, END_1, END_2)
_AFTER_EVENT = (BG_1, BG_2)
# SMB_SUCCESSORS[started][state], started = a START is at or before `state` (so 0 for BEGIN, 1 inside the event).
SMB_SUCCESSORS = (
    (_BEFORE_EVENT, _BEFORE_EVENT, (), (), (), (), (), (), (BG_1, BG_2, START_1, START_2)),
    (_AFTER_EVENT, _AFTER_EVENT, _INSIDE_EVENT, _INSIDE_EVENT, _INSIDE_EVENT, _INSIDE_EVENT, (), _AFTER_EVENT, ()),
)

# Replicate sub-event types.
START_BORDER, START_OPEN, END_BORDER, END_OPEN, CONTINUE, BACKGROUND_RUN = range(6)
PIECE_TYPE_NAMES = ("start_border", "start_open", "end_border", "end_open", "continue", "background")

MAX_SEED = 2**64 - 1


def check_seed(seed) -> int:
    """The seed as a Python int; a ValueError unless it is an integer in 0..2**64-1."""
    try:
        value = operator.index(seed)
    except TypeError:
        raise ValueError(f"seed must be an integer in 0..2**64-1, got {seed!r}") from None
    if isinstance(seed, bool) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"seed must be an integer in 0..2**64-1, got {seed!r}")
    return value


def integer_array(values, name: str, ndim: int, rank_message: str) -> np.ndarray:
    """`values` as C-contiguous int64 after checking it holds integers (any dtype when empty) and has rank
    `ndim`."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu" and array.size:
        raise ValueError(f"{name} must be an integer array, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name}{rank_message}{array.ndim}")
    return np.ascontiguousarray(array, dtype=np.int64)


def check_labels(labels) -> np.ndarray:
    """Validated labels as C-contiguous int64 ``[V, T]`` (integer dtype, rank 2, T >= 2, values 0..28)."""
    array = integer_array(labels, "labels", 2, " must have rank 2 [videos, segments], got rank ")
    if array.shape[1] < 2:
        raise ValueError(f"labels must have at least 2 segments per video, got {array.shape[1]}")
    bad = np.flatnonzero((array < 0) | (array > BACKGROUND))
    if bad.size:
        v, t = divmod(int(bad[0]), array.shape[1])
        raise ValueError(f"labels must be in 0..28 (28 = background), got {array[v, t]} at [{v}, {t}]")
    return array


def event_classes(row: list[int]) -> list[int]:
    """The event classes present in one label row, ascending."""
    return sorted({label for label in row if label != BACKGROUND})


def check_batch(batch_video_idx, num_videos: int) -> list[int]:
    """Validated batch video indices (integer, 1-D, each in 0..num_videos-1) as a list."""
    array = integer_array(batch_video_idx, "batch_video_idx", 1, " must be 1-D, got rank ")
    bad = np.flatnonzero((array < 0) | (array >= num_videos))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"batch_video_idx must be in 0..{num_videos - 1}, got {array[i]} at position {i}")
    return array.tolist()


def _check_per_class(per_class) -> int:
    value = operator.index(per_class)
    if value < 1:
        raise ValueError(f"per_class must be >= 1, got {value}")
    return value


# ---------------------------------------------------------------------------------------------- SMB fusion


def _smb_databases(rows: list[list[int]], num_segments: int) -> tuple[list[list[list[int]]], list[bool]]:
    """Per (event class, state) the ascending flat indices of extracted instances (step 1), and class presence."""
    T = num_segments
    databases = [[[] for _ in range(NUM_SMB_STATES)] for _ in range(NUM_EVENT_CLASSES)]
    present = [False] * NUM_EVENT_CLASSES
    for v, row in enumerate(rows):
        classes = event_classes(row)
        for e in classes:
            present[e] = True
        for t in range(T):
            flat = v * T + t
            label = row[t]
            nxt = row[t + 1] if t + 1 < T else None
            if label == BACKGROUND:
                for e in classes:
                    databases[e][BG_1].append(flat)
                    if nxt == BACKGROUND:
                        databases[e][BG_2].append(flat)
                if nxt is not None and nxt != BACKGROUND:
                    databases[nxt][START_2].append(flat)
                continue
            db = databases[label]
            if t == 0:
                db[START_1].append(flat)
            if 0 < t < T - 1 and row[t - 1] == label and nxt == label:
                db[CONTINUE_1].append(flat)
            if 0 < t < T - 2 and row[t - 1] == label and nxt == label and row[t + 2] == label:
                db[CONTINUE_2].append(flat)
            if t == T - 1:
                db[END_1].append(flat)
            if nxt == BACKGROUND:
                db[END_2].append(flat)
    return databases, present


def _add_stretch(states: list[tuple[int, int]], two: int, one: int, first: int, stop: int) -> None:
    """Cover segments first..stop-1 with two-segment states `two`, then `one` if the count is odd (step 2)."""
    for p in range(first, stop - 1, 2):
        states.append((two, p))
    if (stop - first) % 2:
        states.append((one, stop - 1))


def _smb_decomposition(row: list[int]) -> list[tuple[int, int]] | None:
    """The canonical ``(state, position)`` sequence of a video with one event run of >= 2 segments (step 2),
    else None."""
    T = len(row)
    event = [t for t, label in enumerate(row) if label != BACKGROUND]
    if len(event) < 2 or event[-1] - event[0] + 1 != len(event) or len({row[t] for t in event}) > 1:
        return None
    a, b = event[0], event[-1]
    states = []
    if a == 0:
        states.append((START_1, 0))
    else:
        _add_stretch(states, BG_2, BG_1, 0, a - 1)
        states.append((START_2, a - 1))
    _add_stretch(states, CONTINUE_2, CONTINUE_1, a + 1, b)
    if b == T - 1:
        states.append((END_1, b))
    else:
        states.append((END_2, b))
        _add_stretch(states, BG_2, BG_1, b + 2, T)
    return states


def _smb_transition_counts(rows: list[list[int]], num_segments: int) -> list[list[list[list[int]]]]:
    """``counts[h][prev][p][s]`` of step 2, pooled over all videos."""
    counts = [[[[0] * NUM_SMB_STATES for _ in range(num_segments)] for _ in range(NUM_SMB_STATES + 1)]
              for _ in range(2)]
    for row in rows:
        decomposition = _smb_decomposition(row)
        if decomposition is None:
            continue
        prev, h = _BEGIN, 0
        for s, p in decomposition:
            counts[h][prev][p][s] += 1
            prev, h = s, 1 if (h or s in _STARTS) else 0
    return counts


def _smb_feasibility(sizes: list[int], num_segments: int) -> list[list[list[bool]]]:
    """``good[h][s][p]`` of step 3 for one class, given its database sizes per state."""
    T = num_segments
    good = [[[False] * (T + 1) for _ in range(NUM_SMB_STATES)] for _ in range(2)]
    for p in range(T - 1, -1, -1):
        for h in range(2):
            for s in range(NUM_SMB_STATES):
                q = p + SMB_STATE_LENGTHS[s]
                if sizes[s] == 0 or q > T or (s == START_1 and p != 0) or (s == END_1 and q != T):
                    continue
                started = 1 if (h or s in _STARTS) else 0
                if q == T:
                    good[h][s][p] = bool(started) and s in _TERMINAL
                else:
                    good[h][s][p] = any(good[started][n][q] for n in SMB_SUCCESSORS[started][s])
    return good


def smb_database_sizes(labels) -> np.ndarray:
    """Number of instances per (event class, state), int64 ``[28, 8]`` (states in `SMB_STATE_NAMES` order)."""
    array = check_labels(labels)
    databases, _ = _smb_databases(array.tolist(), array.shape[1])
    return np.array([[len(db) for db in per_class] for per_class in databases], dtype=np.int64)


def smb_transition_counts(labels) -> np.ndarray:
    """Transition counts of step 2, int64 ``[2, 9, T, 8]``: [a START precedes, previous state (8 = BEGIN),
    position, state]."""
    array = check_labels(labels)
    return np.array(_smb_transition_counts(array.tolist(), array.shape[1]), dtype=np.int64)


def smb_fusion(labels, per_class: int = 250, seed: int = 0):
    """SMB video fusion (steps 1-5 above).

    Returns ``(video_idx, segment_idx, labels, states)``, each int64 ``[28*per_class, T]``.
    """
    array = check_labels(labels)
    per_class = _check_per_class(per_class)
    seed = check_seed(seed)
    rows = array.tolist()
    T = array.shape[1]
    databases, present = _smb_databases(rows, T)
    counts = _smb_transition_counts(rows, T)
    tables = []
    for e in range(NUM_EVENT_CLASSES):
        if not present[e]:
            raise ValueError(
                f"event class {e} ({CLASS_NAMES[e]}) has no videos in labels: SMB fusion needs every event class"
            )
        good = _smb_feasibility([len(db) for db in databases[e]], T)
        if not any(good[0][s][0] for s in SMB_SUCCESSORS[0][_BEGIN]):
            raise ValueError(
                f"event class {e} ({CLASS_NAMES[e]}): its videos yield no valid {T}-segment SMB state sequence"
            )
        tables.append(good)

    M = NUM_EVENT_CLASSES * per_class
    out_video = [[0] * T for _ in range(M)]
    out_segment = [[0] * T for _ in range(M)]
    out_label = [[0] * T for _ in range(M)]
    out_state = [[0] * T for _ in range(M)]
    for e in range(NUM_EVENT_CLASSES):
        rng = SplitMix64(derive_seed(seed, e))
        good = tables[e]
        for i in range(per_class):
            row = e * per_class + i
            chosen = []
            prev, p, h = _BEGIN, 0, 0
            while p < T:
                candidates = [s for s in SMB_SUCCESSORS[h][prev] if good[h][s][p]]
                weights = [counts[h][prev][p][s] + 1 for s in candidates]
                r = rng.below(sum(weights))
                for s, weight in zip(candidates, weights):
                    if r < weight:
                        break
                    r -= weight
                chosen.append((s, p))
                p += SMB_STATE_LENGTHS[s]
                h = 1 if (h or s in _STARTS) else 0
                prev = s
            for s, p in chosen:
                db = databases[e][s]
                src_video, src_segment = divmod(db[rng.below(len(db))], T)
                for k in range(SMB_STATE_LENGTHS[s]):
                    out_video[row][p + k] = src_video
                    out_segment[row][p + k] = src_segment + k
                    out_label[row][p + k] = rows[src_video][src_segment + k]
                    out_state[row][p + k] = s
    return tuple(np.array(x, dtype=np.int64).reshape(M, T) for x in (out_video, out_segment, out_label, out_state))


# ------------------------------------------------------------------------------------------------ Replicate


def decompose(row: list[int]) -> list[tuple[int, int, int, int]]:
    """Sub-events ``(type, class, first, length)`` of one label sequence in position order (step 1)."""
    T = len(row)
    taken = [False] * T
    pieces = []
    first_class = -1
    a = 0
    while a < T:
        c = row[a]
        b = a
        while b + 1 < T and row[b + 1] == c:
            b += 1
        if c != BACKGROUND:
            if first_class < 0:
                first_class = c
            if a > 0 and row[a - 1] == BACKGROUND and not taken[a - 1]:
                pieces.append((START_BORDER, c, a - 1, 2))
                taken[a - 1] = True
            else:
                pieces.append((START_OPEN, c, a, 1))
            taken[a] = True
            n = b - a + 1
            if n >= 3:
                pieces.append((CONTINUE, c, a + 1, n - 2))
                for t in range(a + 1, b):
                    taken[t] = True
            if n >= 2:
                taken[b] = True
                if b + 1 < T and row[b + 1] == BACKGROUND:
                    pieces.append((END_BORDER, c, b, 2))
                    taken[b + 1] = True
                else:
                    pieces.append((END_OPEN, c, b, 1))
        a = b + 1
    t = 0
    while t < T:
        if taken[t]:
            t += 1
            continue
        u = t
        while u < T and not taken[u]:
            u += 1
        pieces.append((BACKGROUND_RUN, first_class, t, u - t))
        t = u
    pieces.sort(key=lambda piece: piece[2])
    return pieces


class ReplicaSampler:
    """Replica sampler over the training labels (steps 1-3 at construction, step 4 in `sample`)."""

    def __init__(self, labels) -> None:
        array = check_labels(labels)
        self.num_videos, self.num_segments = array.shape
        T = self.num_segments
        self._entries: dict[tuple[int, int, int], list[int]] = {}
        rows = array.tolist()
        decompositions = [decompose(row) for row in rows]
        for v, (row, pieces) in enumerate(zip(rows, decompositions)):
            for kind, c, first, length in pieces:
                if kind == CONTINUE:
                    for window in range(1, length + 1):
                        for s in range(first, first + length - window + 1):
                            self._add((CONTINUE, c, window), v * T + s)
                elif kind != BACKGROUND_RUN:
                    self._add((kind, c, length), v * T + first)
            classes = event_classes(row)
            t = 0
            while t < T:
                if row[t] != BACKGROUND:
                    t += 1
                    continue
                u = t
                while u < T and row[u] == BACKGROUND:
                    u += 1
                for c in classes:
                    for window in range(1, u - t + 1):
                        for s in range(t, u - window + 1):
                            self._add((BACKGROUND_RUN, c, window), v * T + s)
                t = u
        self._plans = [self._plan(v, pieces) for v, pieces in enumerate(decompositions)]

    def _add(self, key: tuple[int, int, int], flat: int) -> None:
        self._entries.setdefault(key, []).append(flat)

    def _own_range(self, key: tuple[int, int, int], v: int) -> tuple[list[int], int, int]:
        entries = self._entries.get(key, [])
        T = self.num_segments
        return entries, bisect.bisect_left(entries, v * T), bisect.bisect_left(entries, (v + 1) * T)

    def _draw(self, key: tuple[int, int, int], v: int, dst: int, length: int) -> tuple:
        entries, lo, hi = self._own_range(key, v)
        if hi - lo == len(entries):
            lo = hi = 0
        return (dst, length, entries, lo, hi)

    def _plan(self, v: int, pieces: list[tuple[int, int, int, int]]) -> list[tuple]:
        """Step 3: the draws ``(dst, length, entries, lo, hi)`` of video v (``entries=None``: keep)."""
        plan = []
        for kind, c, first, length in pieces:
            if kind in (CONTINUE, BACKGROUND_RUN):
                if c < 0:
                    plan.append((first, length, None, 0, 0))
                    continue
                longest = 0
                for window in range(length, 0, -1):
                    entries, lo, hi = self._own_range((kind, c, window), v)
                    if len(entries) > hi - lo:
                        longest = window
                        break
                chunk = longest if longest else length
                dst, remaining = first, length
                while remaining:
                    size = min(chunk, remaining)
                    plan.append(self._draw((kind, c, size), v, dst, size))
                    dst += size
                    remaining -= size
            else:
                plan.append(self._draw((kind, c, length), v, first, length))
        return plan

    def database_sizes(self) -> dict[str, np.ndarray]:
        """Entries per sub-event type and event class (all lengths together), int64 ``[28]`` each."""
        sizes = {name: np.zeros(NUM_EVENT_CLASSES, dtype=np.int64) for name in PIECE_TYPE_NAMES}
        for (kind, c, _), entries in self._entries.items():
            sizes[PIECE_TYPE_NAMES[kind]][c] += len(entries)
        return sizes

    def sample(self, batch_video_idx, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Step 4: one replica per batch row, ``(video_idx, segment_idx)`` int64 ``[B, T]``."""
        batch = check_batch(batch_video_idx, self.num_videos)
        seed = check_seed(seed)
        T = self.num_segments
        out_video = [[0] * T for _ in batch]
        out_segment = [[0] * T for _ in batch]
        for i, v in enumerate(batch):
            rng = SplitMix64(derive_seed(seed, i))
            for dst, length, entries, lo, hi in self._plans[v]:
                if entries is None:
                    src_video, src_segment = v, dst
                else:
                    r = rng.below(len(entries) - (hi - lo))
                    if r >= lo:
                        r += hi - lo
                    src_video, src_segment = divmod(entries[r], T)
                for k in range(length):
                    out_video[i][dst + k] = src_video
                    out_segment[i][dst + k] = src_segment + k
        shape = (len(batch), T)
        return (
            np.array(out_video, dtype=np.int64).reshape(shape),
            np.array(out_segment, dtype=np.int64).reshape(shape),
        )
