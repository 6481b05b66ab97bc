"""Readers of the AVE annotation text file and split files (docs/data.md#files).

`Annotations.txt` has one line ``Category&YouTubeID&Quality&StartTime&EndTime`` per video (an optional header
line is skipped). The event occupies the one-second segments ``[StartTime, EndTime)``; every other segment is
background (index 28). Class indices follow the order of first appearance of the categories.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from avel_fast.constants import BACKGROUND, CLASS_NAMES, NUM_SEGMENTS
from avel_fast.data.errors import AVEFormatError, AVEFormatWarning

SPLIT_KEY = "order"


@dataclass(frozen=True)
class AnnotationTable:
    """The parsed lines of an `Annotations.txt`: one event per video."""

    class_index: np.ndarray  # int64 [V]
    start: np.ndarray  # int64 [V]
    end: np.ndarray  # int64 [V], start <= end
    youtube_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    line_numbers: np.ndarray  # int64 [V], 1-based line of each video in the file

    def segment_labels(self) -> np.ndarray:
        """int64 [V, 10]: the class on segments [start, end), background (28) elsewhere."""
        t = np.arange(NUM_SEGMENTS)
        inside = (t >= self.start[:, None]) & (t < self.end[:, None])
        return np.where(inside, self.class_index[:, None], BACKGROUND).astype(np.int64)

    def in_class_order(self, class_names: tuple[str, ...]) -> AnnotationTable:
        """The same events indexed by `class_names` when it contains every category, else unchanged.

        Keeps the AVE class indices for files holding a subset of the AVE classes in another order.
        """
        if not set(self.class_names) <= set(class_names):
            return self
        position = np.array([class_names.index(name) for name in self.class_names], dtype=np.int64)
        return replace(self, class_index=position[self.class_index], class_names=tuple(class_names))

    def zero_length_events(self) -> np.ndarray:
        """Indices of the videos whose event has StartTime == EndTime (no event segment)."""
        return np.flatnonzero(self.start == self.end)


def _as_int(text: str) -> int | None:
    """`text` as an integer, or None when it is not one."""
    try:
        return int(text)
    except ValueError:
        return None


def parse_annotations(path: str | Path) -> AnnotationTable:
    """Parse `Annotations.txt` strictly; raises `AVEFormatError` naming the line on the first malformed one."""
    path = Path(path)
    if not path.is_file():
        raise AVEFormatError(path, "", "file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise AVEFormatError(path, "", f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    names: dict[str, int] = {}
    rows: list[tuple[int, int, int, str, int]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("&")
        if len(fields) != 5:
            raise AVEFormatError(
                path, f"line {number}", f"expected 5 '&'-separated fields "
                f"Category&YouTubeID&Quality&StartTime&EndTime, got {len(fields)}: {line!r}"
            )
        category, youtube_id, _quality, start_text, end_text = (f.strip() for f in fields)
        if not rows and (start_text, end_text) == ("StartTime", "EndTime"):
            continue  # header line
        start, end = _as_int(start_text), _as_int(end_text)
        if start is None or end is None:
            problem = f"StartTime/EndTime {start_text!r}/{end_text!r} are not integers"
            raise AVEFormatError(path, f"line {number}", problem)
        if not 0 <= start <= end <= NUM_SEGMENTS:
            problem = f"event [{start}, {end}) is not within 0 <= StartTime <= EndTime <= {NUM_SEGMENTS}"
            raise AVEFormatError(path, f"line {number}", problem)
        if not category:
            raise AVEFormatError(path, f"line {number}", "empty Category")
        class_index = names.setdefault(category, len(names))
        if class_index >= BACKGROUND:
            problem = f"more than {BACKGROUND} event categories (extra: {category!r})"
            raise AVEFormatError(path, f"line {number}", problem)
        rows.append((class_index, start, end, youtube_id, number))
    if not rows:
        raise AVEFormatError(path, "", "no annotation lines")
    class_index, start, end, ids, numbers = zip(*rows)
    return AnnotationTable(
        class_index=np.array(class_index, dtype=np.int64),
        start=np.array(start, dtype=np.int64),
        end=np.array(end, dtype=np.int64),
        youtube_ids=tuple(ids),
        class_names=tuple(names),
        line_numbers=np.array(numbers, dtype=np.int64),
    )


def zero_length_message(table: AnnotationTable, video: int) -> str:
    """The warning text for the zero-length event of `video`, naming its line."""
    return (
        f"event of length 0 at line {table.line_numbers[video]} (video {video}, "
        f"{table.class_names[table.class_index[video]]!r}): all its segments are background"
    )


def read_annotations(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Segment labels int64 [V, 10] (background = 28) and the class names rebuilt from `Annotations.txt`.

    Classes take their AVE indices (`CLASS_NAMES`) when the file holds AVE categories only, as in `load_ave`;
    otherwise their order of first appearance. An event with StartTime == EndTime leaves its video all
    background and emits an `AVEFormatWarning`.
    """
    table = parse_annotations(path).in_class_order(CLASS_NAMES)
    for video in table.zero_length_events():
        warnings.warn(f"{path}: {zero_length_message(table, int(video))}", AVEFormatWarning, stacklevel=2)
    return table.segment_labels(), list(table.class_names)


def read_split(path: str | Path, num_videos: int | None = None) -> np.ndarray:
    """The int64 [N] video indices of a split file (`*_order.h5`, dataset ``order``).

    With `num_videos`, indices outside ``0..num_videos-1`` and repeated indices raise `AVEFormatError`.
    """
    path = Path(path)
    if not path.is_file():
        raise AVEFormatError(path, SPLIT_KEY, "file not found")
    try:
        with h5py.File(path, "r") as f:
            if SPLIT_KEY not in f:
                raise AVEFormatError(path, SPLIT_KEY, f"dataset missing (has: {', '.join(f.keys()) or 'nothing'})")
            dataset = f[SPLIT_KEY]
            if not isinstance(dataset, h5py.Dataset):
                raise AVEFormatError(path, SPLIT_KEY, "is a group, expected a dataset")
            if dataset.ndim != 1:
                raise AVEFormatError(path, SPLIT_KEY, f"shape {dataset.shape}, expected one dimension (N,)")
            if dataset.dtype.kind not in "iu":
                raise AVEFormatError(path, SPLIT_KEY, f"dtype {dataset.dtype}, expected an integer type (int64)")
            order = dataset[()].astype(np.int64)
    except OSError as err:
        raise AVEFormatError(path, SPLIT_KEY, f"not a readable HDF5 file ({err})") from None
    if num_videos is not None:
        outside = order[(order < 0) | (order >= num_videos)]
        if outside.size:
            raise AVEFormatError(
                path, SPLIT_KEY, f"{outside.size} indices outside 0..{num_videos - 1} (e.g. {int(outside[0])})"
            )
        values, counts = np.unique(order, return_counts=True)
        if (counts > 1).any():
            raise AVEFormatError(path, SPLIT_KEY, f"index {int(values[counts > 1][0])} appears more than once")
    return order
