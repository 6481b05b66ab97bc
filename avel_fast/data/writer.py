"""Writers of the real AVE h5 format (docs/data.md#files), atomic: a directory appears complete or not at all.

Files written: `audio_feature.h5`, `visual_feature.h5` (float32, or float16 when the maps are stored so),
`labels.h5` (one-hot float32 [V, 10, 29]), `mil_labels.h5`, the three `*_order.h5`, the `*_noisy.h5` trio
when there are background-only videos, and `Annotations.txt` when every video is one contiguous event of its
single video class (as in AVE; an event of length 0 is written as StartTime = EndTime = 0). `load_ave` reads
back exactly what was written.
"""
from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np
import torch

from avel_fast.constants import AUDIO_DIM, BACKGROUND, CLASS_NAMES, NUM_CLASSES, NUM_SEGMENTS, VISUAL_SHAPE
from avel_fast.data.annotations import SPLIT_KEY
from avel_fast.data.dataset import AVEData
from avel_fast.data.files import (
    ANNOTATIONS_FILE,
    AUDIO_FILE,
    BACKGROUND_AUDIO_FILE,
    BACKGROUND_LABELS_FILE,
    BACKGROUND_VISUAL_FILE,
    DATA_KEY,
    LABELS_FILE,
    SPLIT_FILES,
    VIDEO_LABELS_FILE,
    VISUAL_CHUNK_VIDEOS,
    VISUAL_FILE,
)
from avel_fast.data.synthetic import (
    NUM_VIDEOS,
    SyntheticConfig,
    synthetic_feature_chunks,
    synthetic_labels,
)

FeatureChunks = Iterable[tuple[int, np.ndarray, np.ndarray]]  # (first video, audio, visual)


def _replace_directory(out_dir: Path, overwrite: bool, build: Callable[[Path], None]) -> Path:
    """Build into a hidden sibling directory, then rename it to `out_dir` (replacing it when allowed)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not overwrite:
            raise FileExistsError(f"{out_dir}: directory is not empty (overwrite it with overwrite=True / --force)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}.partial"
    partial.mkdir()  # the mode the umask gives a new directory (tempfile.mkdtemp would make it 0700)
    try:
        build(partial)
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}.old"
            out_dir.rename(old)
            partial.rename(out_dir)
            shutil.rmtree(old)
        else:
            partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def _write_array(path: Path, array: np.ndarray, key: str = DATA_KEY) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=array)


def _write_features(directory: Path, names: tuple[str, str], num_videos: int, visual_dtype, chunks: FeatureChunks,
                    progress: Callable[[int], None] | None = None, audio_dim: int = AUDIO_DIM) -> None:
    audio_name, visual_name = names
    with h5py.File(directory / audio_name, "w") as audio_file, h5py.File(directory / visual_name, "w") as visual_file:
        audio = audio_file.create_dataset(DATA_KEY, (num_videos, NUM_SEGMENTS, audio_dim), dtype=np.float32)
        visual = visual_file.create_dataset(DATA_KEY, (num_videos, NUM_SEGMENTS, *VISUAL_SHAPE), dtype=visual_dtype)
        for start, audio_chunk, visual_chunk in chunks:
            stop = start + audio_chunk.shape[0]
            audio[start:stop] = audio_chunk
            visual[start:stop] = visual_chunk
            if progress is not None:
                progress(audio_chunk.shape[0])


def annotation_lines(labels: np.ndarray, video_labels: np.ndarray, class_names) -> list[str] | None:
    """`Annotations.txt` lines for segment labels [V, 10], or None when a video is not one contiguous event."""
    lines = []
    for video, (row, classes) in enumerate(zip(labels, video_labels[:, :BACKGROUND])):
        (event_classes,) = np.nonzero(classes)
        (segments,) = np.nonzero(row != BACKGROUND)
        if len(event_classes) != 1 or (row[segments] != event_classes[0]).any():
            return None
        if len(segments) and segments[-1] - segments[0] + 1 != len(segments):
            return None
        start, end = (int(segments[0]), int(segments[-1]) + 1) if len(segments) else (0, 0)
        lines.append(f"{class_names[event_classes[0]]}&video{video:05d}&good&{start}&{end}")
    return lines


def _write_labels(directory: Path, labels: np.ndarray, video_labels: np.ndarray, splits: dict, class_names) -> None:
    _write_array(directory / LABELS_FILE, np.eye(NUM_CLASSES, dtype=np.float32)[labels])
    _write_array(directory / VIDEO_LABELS_FILE, video_labels.astype(np.float32))
    for name, file in SPLIT_FILES.items():
        _write_array(directory / file, np.asarray(splits[name], dtype=np.int64), key=SPLIT_KEY)
    lines = annotation_lines(labels, video_labels, class_names)
    if lines is not None:
        (directory / ANNOTATIONS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _check_background(background: AVEData) -> None:
    only_background = torch.zeros(NUM_CLASSES)
    only_background[BACKGROUND] = 1.0
    if (background.labels != BACKGROUND).any() or not (background.video_labels == only_background).all():
        raise ValueError("AVEData.background: background-only videos must have every segment and video label = 28")


def _tensor_chunks(data: AVEData, visual_dtype) -> FeatureChunks:
    for start in range(0, len(data), VISUAL_CHUNK_VIDEOS):
        stop = start + VISUAL_CHUNK_VIDEOS
        visual = data.visual[start:stop]
        visual = visual if visual.dtype == torch.float16 else visual.float()
        yield start, data.audio[start:stop].float().numpy(), visual.numpy().astype(visual_dtype, copy=False)


def write_ave(data: AVEData, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write `data` (with its background-only videos) in the real AVE format; returns the directory.

    Needs the 7x7 visual maps and the three splits; float16 maps are stored as float16, others as float32.
    """
    if data.visual_pooled:
        raise ValueError("write_ave: pooled visual features [V, T, 512] cannot be written in the AVE format (7x7 maps)")
    missing = [name for name in SPLIT_FILES if name not in data.splits]
    if missing:
        raise ValueError(f"write_ave: data has no {', '.join(missing)} split")
    if data.background is not None:
        _check_background(data.background)
    visual_dtype = np.float16 if data.visual.dtype == torch.float16 else np.float32

    def build(directory: Path) -> None:
        chunks = _tensor_chunks(data, visual_dtype)
        _write_features(directory, (AUDIO_FILE, VISUAL_FILE), len(data), visual_dtype, chunks, audio_dim=data.audio_dim)
        splits = {name: index.numpy() for name, index in data.splits.items()}
        _write_labels(directory, data.labels.numpy(), data.video_labels.numpy(), splits, data.class_names)
        if data.background is not None:
            background = data.background
            _write_features(directory, (BACKGROUND_AUDIO_FILE, BACKGROUND_VISUAL_FILE), len(background), visual_dtype,
                            _tensor_chunks(background, visual_dtype), audio_dim=background.audio_dim)
            _write_array(directory / BACKGROUND_LABELS_FILE, background.video_labels.numpy().astype(np.float32))

    return _replace_directory(Path(out_dir), overwrite, build)


def write_synthetic_ave(
    out_dir: str | Path,
    *,
    seed: int = 0,
    num_videos: int = NUM_VIDEOS,
    num_background_videos: int | None = None,
    config: SyntheticConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Generate `synthetic_ave(seed, ...)` chunk by chunk straight into the AVE format (float32 maps).

    Never holds more than one chunk of features; `progress(n)` is called after each chunk of n videos. Writes
    `background_videos_for(num_videos)` background-only videos unless `num_background_videos` is given.
    """
    labels = synthetic_labels(seed, num_videos, num_background_videos, config=config)

    def chunks(background: bool) -> FeatureChunks:
        for start, audio, visual in synthetic_feature_chunks(seed, labels, background=background, config=config):
            yield start, audio.numpy(), visual.numpy()

    def build(directory: Path) -> None:
        _write_features(directory, (AUDIO_FILE, VISUAL_FILE), num_videos, np.float32, chunks(False), progress)
        splits = {name: index.numpy() for name, index in labels.splits.items()}
        _write_labels(directory, labels.labels.numpy(), labels.video_labels.numpy(), splits, CLASS_NAMES)
        if labels.background is not None:
            names = (BACKGROUND_AUDIO_FILE, BACKGROUND_VISUAL_FILE)
            _write_features(directory, names, len(labels.background), np.float32, chunks(True), progress)
            _write_array(directory / BACKGROUND_LABELS_FILE, labels.background.video_labels.numpy())

    return _replace_directory(Path(out_dir), overwrite, build)
