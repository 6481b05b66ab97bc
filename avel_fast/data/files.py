"""Loader and validator of a directory in the real AVE format (docs/data.md#validation).

One code path serves both: `load_ave` stops at the first problem (`AVEFormatError`), `validate_ave_dir` runs
every check it can and returns a `ValidationReport` (what `avel-fast data check` prints).

Consistency rules between the video labels (`mil_labels.h5`, [V, 29]) and the segment labels:

* values are 0 or 1 and every row sets at least one column;
* every event class present on a segment is set in the row (else error);
* an event class set in the row with no segment of it is an *event of length 0* (the real file has one, video
  26): an `AVEFormatWarning`, not an error;
* column 28 (background) is informative only: the real file never sets it for event videos, a video with no
  event segment and no event class must set it (which the non-empty rule already demands);
* background-only videos (`labels_noisy.h5`) set column 28 and nothing else.

Splits: each index in 0..V-1, no index twice within or across splits; videos in no split give a warning.
Without `mil_labels.h5` the video labels are derived from the segment labels; without `labels.h5` the segment
labels are rebuilt from `Annotations.txt` (with a warning). Features may be stored as float16/32/64 and are
returned as float32 (visual: `visual_dtype`); `visual_feature.h5` is read once, in chunks of
`VISUAL_CHUNK_VIDEOS` videos, pooled per chunk when `pooled_visual=True`.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from avel_fast.constants import BACKGROUND, CLASS_NAMES, NUM_CLASSES, NUM_SEGMENTS, VISUAL_SHAPE
from avel_fast.data.annotations import SPLIT_KEY, AnnotationTable, parse_annotations, read_annotations, read_split
from avel_fast.data.dataset import SPLIT_NAMES, AVEData, pool_visual, video_labels_from_segments
from avel_fast.data.errors import AVEFormatError, AVEFormatWarning

DATA_KEY = "avadataset"
AUDIO_FILE = "audio_feature.h5"
VISUAL_FILE = "visual_feature.h5"
LABELS_FILE = "labels.h5"
CORRECTED_LABELS_FILES = ("right_labels.h5", "right_label.h5")
VIDEO_LABELS_FILE = "mil_labels.h5"
SPLIT_FILES = {name: f"{name}_order.h5" for name in SPLIT_NAMES}
BACKGROUND_AUDIO_FILE = "audio_feature_noisy.h5"
BACKGROUND_VISUAL_FILE = "visual_feature_noisy.h5"
BACKGROUND_LABELS_FILE = "labels_noisy.h5"
ANNOTATIONS_FILE = "Annotations.txt"
VISUAL_CHUNK_VIDEOS = 64
SETTINGS = ("sel", "wsel")


@dataclass
class ValidationReport:
    """Result of `validate_ave_dir`: checks that passed, errors (`AVEFormatError`) and warnings (text)."""

    root: Path
    checks: list[tuple[str, str]] = field(default_factory=list)  # (file, what was found fine)
    errors: list[AVEFormatError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


class _Dataset:
    """An h5 dataset opened for checking and chunked reading; raises `AVEFormatError` naming file and key."""

    def __init__(self, path: Path, key: str = DATA_KEY) -> None:
        self.path, self.key = path, key
        if not path.is_file():
            raise AVEFormatError(path, key, "file not found")
        try:
            self.file = h5py.File(path, "r")
        except OSError as err:
            raise AVEFormatError(path, key, f"not a readable HDF5 file ({err})") from None
        if not isinstance(self.file.get(key), h5py.Dataset):
            found = ", ".join(self.file.keys()) or "nothing"
            self.file.close()
            raise AVEFormatError(path, key, f"dataset missing (file has: {found})")
        self.data = self.file[key]

    def __enter__(self) -> _Dataset:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def fail(self, problem: str) -> AVEFormatError:
        return AVEFormatError(self.path, self.key, problem)

    def expect_shape(self, tail: tuple[int | None, ...], num_videos: int | None, what: str) -> int:
        """Check the shape is (V, *tail) with V == num_videos when given, a None in `tail` standing for any size
        >= 1 (the audio width D); returns V."""
        shape = self.data.shape
        want = ("V" if num_videos is None else num_videos, *("D" if size is None else size for size in tail))
        fits = len(shape) == len(want) and all(size == (expected or size) for size, expected in zip(shape[1:], tail))
        if not fits or 0 in shape[1:]:
            raise self.fail(f"shape {shape}, expected {what} ({', '.join(map(str, want))})")
        if num_videos is not None and shape[0] != num_videos:
            raise self.fail(f"shape {shape}: {shape[0]} videos, but the other files hold {num_videos}")
        return shape[0]

    def expect_dtype(self, kinds: str, expected: str) -> None:
        if self.data.dtype.kind not in kinds:
            raise self.fail(f"dtype {self.data.dtype}, expected {expected}")


def _read_features(path, tail, num_videos, what, keep: bool, pooled: bool = False, dtype=torch.float32):
    """Check a feature file (shape, float dtype, finiteness) chunk by chunk and, with `keep`, return its values.

    Returns (shape, tensor or None); the tensor has `dtype` and, with `pooled`, the 7x7 maps averaged per chunk.
    Chunks are read straight into the result when the stored dtype is the one asked for.
    """
    with _Dataset(path) as ds:
        num_videos = ds.expect_shape(tail, num_videos, what)
        ds.expect_dtype("f", "a floating type (float32 or float64)")
        shape, out = ds.data.shape, None
        if keep:
            out = torch.empty(shape[:2] + shape[-1:] if pooled else shape, dtype=dtype)
        direct = out is not None and not pooled and dtype in (torch.float32, torch.float16)
        direct = direct and ds.data.dtype == out.numpy().dtype
        for start in range(0, num_videos, VISUAL_CHUNK_VIDEOS):
            stop = min(start + VISUAL_CHUNK_VIDEOS, num_videos)
            if direct:
                ds.data.read_direct(out.numpy(), np.s_[start:stop], np.s_[start:stop])
                values = out[start:stop]
            else:
                chunk = ds.data[start:stop]
                values = torch.from_numpy(chunk.astype(chunk.dtype.newbyteorder("="), copy=False))  # native order
            if not torch.isfinite(values.sum(dtype=torch.float32)):  # a fast test; the exact one only if it fails
                non_finite = ~np.isfinite(values.numpy())
                if non_finite.any():
                    video, segment = _first(non_finite)[:2]
                    raise ds.fail(f"non-finite values (NaN or inf), first in video {start + video}, segment {segment}")
            if out is not None and not direct:
                out[start:stop] = pool_visual(values) if pooled else values
    return shape, out


def _read_onehot(path: Path, num_videos: int | None) -> np.ndarray:
    """Segment labels int64 [V, 10] from one-hot [V, 10, 29] rows."""
    with _Dataset(path) as ds:
        ds.expect_shape((NUM_SEGMENTS, NUM_CLASSES), num_videos, "one-hot segment labels")
        ds.expect_dtype("fiub", "a numeric type (float32)")
        onehot = ds.data[()]
        binary = (onehot == 0) | (onehot == 1)
        rows_ok = binary.all(axis=2) & (onehot.sum(axis=2) == 1)
        if not rows_ok.all():
            video, segment = _first(~rows_ok)
            raise ds.fail(
                f"{int((~rows_ok).sum())} label rows are not one-hot (first: video {video}, segment {segment}, "
                f"row {onehot[video, segment].tolist()})"
            )
        return onehot.argmax(axis=2).astype(np.int64)


def _read_video_labels(path: Path, num_videos: int | None, background_only: bool) -> np.ndarray:
    """Video labels float32 [V, 29]: binary, non-empty rows (only column 28 when `background_only`)."""
    with _Dataset(path) as ds:
        ds.expect_shape((NUM_CLASSES,), num_videos, "video labels")
        ds.expect_dtype("fiub", "a numeric type (float32)")
        labels = ds.data[()]
        binary = (labels == 0) | (labels == 1)
        if not binary.all():
            video, column = _first(~binary)
            raise ds.fail(f"values other than 0/1 (first: video {video}, column {column}: {labels[video, column]})")
        empty = labels.sum(axis=1) == 0
        if empty.any():
            raise ds.fail(f"{int(empty.sum())} videos have no class set (first: video {_first(empty)[0]})")
        if background_only:
            wrong = labels[:, :BACKGROUND].any(axis=1)
            if wrong.any():
                raise ds.fail(f"background-only video {_first(wrong)[0]} has an event class set")
        return labels.astype(np.float32)


def _check_video_labels(path: Path, video_labels: np.ndarray, segment_labels: np.ndarray, source: str):
    """Enforce the module's consistency rules; returns (video, class) of each event of length 0."""
    present = np.zeros_like(video_labels, dtype=bool)
    np.put_along_axis(present, segment_labels, True, axis=1)
    present[:, BACKGROUND] = False
    missing = present & (video_labels == 0)
    if missing.any():
        video, column = _first(missing)
        raise AVEFormatError(
            path, DATA_KEY,
            f"{int(missing.any(axis=1).sum())} videos have event segments of a class their video label lacks "
            f"(first: video {video}, class {column} on its segments in {source})",
        )
    zero_length = (video_labels[:, :BACKGROUND] == 1) & ~present[:, :BACKGROUND]
    return [(int(video), int(column)) for video, column in np.argwhere(zero_length)]


def _check_splits(root: Path, splits: dict[str, np.ndarray], num_videos: int) -> list[str]:
    """No index in two splits (AVEFormatError); returns a warning when some videos are in no split."""
    owner = np.full(num_videos, -1)
    names = list(splits)
    for position, name in enumerate(names):
        taken = owner[splits[name]] >= 0
        if taken.any():
            index = int(splits[name][taken][0])
            raise AVEFormatError(
                root / SPLIT_FILES[name], SPLIT_KEY,
                f"index {index} is also in {SPLIT_FILES[names[owner[index]]]} ({int(taken.sum())} shared indices)",
            )
        owner[splits[name]] = position
    unassigned = int((owner < 0).sum())
    return [f"{unassigned} of {num_videos} videos are in no split"] if unassigned else []


class _Run:
    """One pass over a directory: strict (raise the first error, `warnings.warn`) or collecting (fill a report).

    Each step records what passed, and returns None for what it could not read so later steps skip it.
    """

    def __init__(self, root: Path, strict: bool, keep: bool, pooled: bool = False, dtype=torch.float32) -> None:
        self.root, self.strict, self.keep, self.pooled, self.dtype = root, strict, keep, pooled, dtype
        self.report = ValidationReport(root)
        self.num_videos: int | None = None
        self.audio_dim: int | None = None
        self.table: AnnotationTable | None = None

    def attempt(self, passed: str | tuple[str, str] | None, check: Callable, path: Path, *args):
        """`check(path, *args)`; on success records (`path`'s name, `passed`) or the (file, what) given."""
        try:
            result = check(path, *args)
        except AVEFormatError as err:
            if self.strict:
                raise
            self.report.errors.append(err)
            return None
        if passed is not None:
            self.report.checks.append(passed if isinstance(passed, tuple) else (path.name, passed))
        return result

    def error(self, file: str, dataset: str, problem: str) -> None:
        self.attempt(None, self._raise, self.root / file, dataset, problem)

    @staticmethod
    def _raise(path: Path, dataset: str, problem: str) -> None:
        raise AVEFormatError(path, dataset, problem)

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)
        if self.strict:
            warnings.warn(message, AVEFormatWarning, stacklevel=2)

    def count(self, videos: int | None) -> None:
        if self.num_videos is None:
            self.num_videos = videos

    def audio(self, name: str, num_videos: int | None):
        """(V, float32 [V, 10, D] or None) of an audio feature file, or (None, None) when it failed. The width D
        is free (128 for VGGish, 502 for sound textures); the first audio file read fixes it for the others."""
        result = self.attempt(
            "shape, dtype, finite", _read_features, self.root / name, (NUM_SEGMENTS, self.audio_dim), num_videos,
            "audio features", self.keep,
        )
        if result is None:
            return None, None
        shape, audio = result
        self.audio_dim = self.audio_dim or shape[-1]
        return shape[0], audio

    def visual(self, name: str, num_videos: int | None):
        """(V, visual maps or pooled features or None) of a visual feature file, or (None, None) when it failed."""
        result = self.attempt(
            "shape, dtype, finite", _read_features, self.root / name, (NUM_SEGMENTS, *VISUAL_SHAPE), num_videos,
            "visual maps", self.keep, self.pooled, self.dtype,
        )
        return (result[0][0], result[1]) if result else (None, None)

    def annotations(self) -> None:
        if (self.root / ANNOTATIONS_FILE).is_file():
            table = self.attempt("well-formed event lines", parse_annotations, self.root / ANNOTATIONS_FILE)
            self.table = table.in_class_order(CLASS_NAMES) if table is not None else None
        if self.table is not None and self.num_videos is not None and len(self.table.class_index) != self.num_videos:
            lines = len(self.table.class_index)
            problem = f"{lines} event lines, but the feature files hold {self.num_videos} videos"
            self.error(ANNOTATIONS_FILE, "", problem)
            self.table = None

    def segment_labels(self, corrected: bool) -> tuple[str, np.ndarray | None]:
        """(source file, labels [V, 10] or None): original or corrected one-hot labels, or the annotations."""
        if corrected:
            name = next((n for n in CORRECTED_LABELS_FILES if (self.root / n).is_file()), None)
            if name is None:
                self.error(CORRECTED_LABELS_FILES[0], DATA_KEY, f"file not found (nor {CORRECTED_LABELS_FILES[1]})")
                return CORRECTED_LABELS_FILES[0], None
        elif (self.root / LABELS_FILE).is_file():
            name = LABELS_FILE
        elif self.table is not None:
            self.warn(f"{LABELS_FILE} absent: segment labels rebuilt from {ANNOTATIONS_FILE}")
            return ANNOTATIONS_FILE, self.table.segment_labels()
        else:
            problem = f"file not found (nor a valid {ANNOTATIONS_FILE} to rebuild the labels from)"
            self.error(LABELS_FILE, DATA_KEY, problem)
            return LABELS_FILE, None
        return name, self.attempt("one-hot segment labels", _read_onehot, self.root / name, self.num_videos)

    def video_labels(self, label_sources: list[tuple[str, np.ndarray | None]]) -> np.ndarray | None:
        """`mil_labels.h5` checked against each segment-label source; warns once per event of length 0."""
        path = self.root / VIDEO_LABELS_FILE
        zero_length: dict[int, list[str]] = {}
        video_labels = None
        if path.is_file():
            video_labels = self.attempt("binary, non-empty rows", _read_video_labels, path, self.num_videos, False)
        elif label_sources[0][1] is not None:
            self.report.checks.append((VIDEO_LABELS_FILE, "absent: video labels derived from the segment labels"))
        for source, segment_labels in label_sources:
            if video_labels is None or segment_labels is None:
                continue
            found = self.attempt(f"consistent with {source}", _check_video_labels, path, video_labels, segment_labels,
                                 source)
            for video, column in found or ():
                zero_length.setdefault(video, []).append(
                    f"{VIDEO_LABELS_FILE} sets class {column} ({CLASS_NAMES[column]}), no segment in {source} has it"
                )
        if self.table is not None:
            for video in self.table.zero_length_events():
                line = self.table.line_numbers[video]
                zero_length.setdefault(int(video), []).append(f"{ANNOTATIONS_FILE} line {line} has StartTime = EndTime")
        for video in sorted(zero_length):
            self.warn(f"video {video}: event of length 0 ({'; '.join(zero_length[video])})")
        return video_labels

    def splits(self) -> dict[str, np.ndarray]:
        splits = {}
        for name, file in SPLIT_FILES.items():
            order = self.attempt("indices in range, no repeats", read_split, self.root / file, self.num_videos)
            if order is not None:
                splits[name] = order
        if self.num_videos is not None and len(splits) == len(SPLIT_FILES):
            passed = (" ".join(SPLIT_FILES.values()), "disjoint")
            for message in self.attempt(passed, _check_splits, self.root, splits, self.num_videos) or ():
                self.warn(message)
        return splits

    def background(self) -> AVEData | None:
        count, audio = self.audio(BACKGROUND_AUDIO_FILE, None)
        counted, visual = self.visual(BACKGROUND_VISUAL_FILE, count)
        video_labels = self.attempt(
            "background-only video labels", _read_video_labels, self.root / BACKGROUND_LABELS_FILE,
            count if count is not None else counted, True,
        )
        if audio is None or visual is None or video_labels is None:
            return None
        return AVEData(
            audio=audio,
            visual=visual,
            labels=torch.full((audio.shape[0], NUM_SEGMENTS), BACKGROUND, dtype=torch.int64),
            video_labels=torch.from_numpy(video_labels),
        )


def _run(root, *, strict: bool, keep: bool, setting: str, corrected: bool, pooled=False, dtype=torch.float32):
    """Every step in order; returns the run and, when `keep` and nothing failed, the `AVEData`."""
    root = Path(root)
    run = _Run(root, strict, keep, pooled, dtype)
    if not root.is_dir():
        run.error("", "", "not a directory")
        return run, None
    count, audio = run.audio(AUDIO_FILE, None)
    run.count(count)
    count, visual = run.visual(VISUAL_FILE, run.num_videos)
    run.count(count)
    run.annotations()
    label_sources = [run.segment_labels(corrected)]
    if not strict and not corrected and any((root / name).is_file() for name in CORRECTED_LABELS_FILES):
        label_sources.append(run.segment_labels(True))
    labels = label_sources[0][1]
    run.count(labels.shape[0] if labels is not None else None)
    video_labels = run.video_labels(label_sources)
    splits = run.splits()
    background_files = (BACKGROUND_AUDIO_FILE, BACKGROUND_VISUAL_FILE, BACKGROUND_LABELS_FILE)
    wanted = setting == "wsel" or (not strict and any((root / name).is_file() for name in background_files))
    background = run.background() if wanted else None
    if not keep or run.report.errors:
        return run, None
    if video_labels is None:
        video_labels = video_labels_from_segments(torch.from_numpy(labels)).numpy()
    data = AVEData(
        audio=audio,
        visual=visual,
        labels=torch.from_numpy(labels),
        video_labels=torch.from_numpy(video_labels),
        splits={name: torch.from_numpy(order) for name, order in splits.items()},
        class_names=run.table.class_names if run.table is not None else CLASS_NAMES,
        background=background,
    )
    return run, data


def split_labels(root: str | Path, split: str = "train") -> np.ndarray:
    """Segment labels int64 ``[N, 10]`` of one split's videos, from ``Annotations.txt`` and ``{split}_order.h5``
    alone (no feature files needed; the zero-length event warns as in `read_annotations`)."""
    root = Path(root)
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLIT_FILES)}")
    labels, _ = read_annotations(root / ANNOTATIONS_FILE)
    return labels[read_split(root / SPLIT_FILES[split], len(labels))]


def load_segment_labels(path: str | Path, num_videos: int | None) -> np.ndarray:
    """Segment labels int64 ``[V, 10]`` of a label file in the layout of ``labels.h5`` (one-hot ``[V, 10, 29]``
    under ``avadataset``, e.g. PSP's corrected ``right_labels.h5``), checked as `load_ave` checks its own:
    `AVEFormatError` naming the file when it is missing, lacks the dataset, has another shape or, with
    `num_videos`, another number of videos, or holds a row that is not one-hot (NaN included)."""
    return _read_onehot(Path(path), num_videos)


def load_ave(
    root: str | Path,
    *,
    setting: str = "sel",
    corrected_labels: bool = False,
    pooled_visual: bool = False,
    visual_dtype: torch.dtype = torch.float32,
) -> AVEData:
    """Load and validate an AVE directory (docs/data.md#validation); raises `AVEFormatError` on the first problem.

    `setting="wsel"` also loads the background-only videos into `.background`. `corrected_labels=True` takes the
    segment labels from `right_labels.h5` (or `right_label.h5`) for every video. `pooled_visual=True` returns
    [V, T, 512] (float32 7x7 means, computed per chunk); `visual_dtype` is the storage dtype of `visual`.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r}: expected one of {', '.join(SETTINGS)}")
    _, data = _run(
        root, strict=True, keep=True, setting=setting, corrected=corrected_labels, pooled=pooled_visual,
        dtype=visual_dtype,
    )
    return data


def validate_ave_dir(root: str | Path) -> ValidationReport:
    """Every check of the loader on an AVE directory, collected into a report (nothing is kept in memory).

    The background-only files are checked when any of them is present; corrected labels when present.
    """
    run, _ = _run(root, strict=False, keep=False, setting="sel", corrected=False)
    return run.report
