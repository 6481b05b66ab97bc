"""A directory of (image, sound) pairs for the pretext task (`docs/audio.md#pair-directory`).

Layout: ``DIR/<name>.png`` (or ``.jpg`` / ``.jpeg``) with ``DIR/<name>.wav`` for every example, all images of one
size (RGB; grey or RGBA images are converted), the sounds of any sample rate and length; optionally
``DIR/labels.csv`` with one ``name,label`` line per example (a header line ``name,label`` is allowed): the scene
labels the linear probe is fitted on. Images are read with Pillow, sounds with `avel_fast.audio.read_wav`.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avel_fast.audio import read_wav
from avel_fast.audio.files import WAV_SUFFIXES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class ScenePairs:
    names: tuple[str, ...]
    images: np.ndarray
    """float32 [N, 3, H, W] in [0, 1]."""
    waveforms: tuple[np.ndarray, ...]
    """Mono float32 samples of each example's sound."""
    sample_rates: tuple[int, ...]
    labels: np.ndarray | None
    """int64 [N] scene of each example (index into `label_names`), or None without ``labels.csv``."""
    label_names: tuple[str, ...]


def _files_by_stem(directory: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in files:
                raise ValueError(f"{path}: a second file for {path.stem!r} (also {files[path.stem].name})")
            files[path.stem] = path
    return files


def _read_image(path: Path) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as err:
        raise ImportError("reading images needs Pillow: pip install 'avel_fast[audio]'") from err
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    return pixels.transpose(2, 0, 1)


def _read_labels(path: Path, names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    by_name: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as stream:
        for line_number, row in enumerate(csv.reader(stream), 1):
            if not row or (line_number == 1 and [cell.strip() for cell in row] == ["name", "label"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path} line {line_number}: expected 'name,label', got {','.join(row)!r}")
            name, label = row[0].strip(), row[1].strip()
            if name not in names:
                raise ValueError(f"{path} line {line_number}: no image/sound pair named {name!r}")
            if name in by_name:
                raise ValueError(f"{path} line {line_number}: {name!r} is labelled twice")
            by_name[name] = label
    unlabelled = [name for name in names if name not in by_name]
    if unlabelled:
        raise ValueError(f"{path}: no label for {len(unlabelled)} pair(s), first {unlabelled[0]!r}")
    label_names = tuple(sorted(set(by_name.values())))
    index = {label: position for position, label in enumerate(label_names)}
    return np.array([index[by_name[name]] for name in names], dtype=np.int64), label_names


def read_pairs(directory: str | Path) -> ScenePairs:
    """Read and check a pair directory (module docstring); ValueError naming the file at fault."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: no such directory")
    images, sounds = _files_by_stem(directory, IMAGE_SUFFIXES), _files_by_stem(directory, WAV_SUFFIXES)
    if not images:
        raise ValueError(f"{directory}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    for stem, path in images.items():
        if stem not in sounds:
            raise ValueError(f"{path}: no sound {stem}.wav beside it")
    for stem, path in sounds.items():
        if stem not in images:
            raise ValueError(f"{path}: no image {stem}.png beside it")
    names = tuple(images)
    pixels = []
    for name in names:
        pixels.append(_read_image(images[name]))
        if pixels[-1].shape != pixels[0].shape:
            height, width = pixels[-1].shape[1:]
            raise ValueError(
                f"{images[name]}: {width}x{height} pixels, but {images[names[0]].name} has "
                f"{pixels[0].shape[2]}x{pixels[0].shape[1]}: every image must have the same size"
            )
    waveforms, rates = zip(*(read_wav(sounds[name]) for name in names))
    labels, label_names = (None, ()) if not (directory / LABELS_FILE).is_file() else _read_labels(
        directory / LABELS_FILE, names
    )
    return ScenePairs(names, np.stack(pixels), tuple(waveforms), tuple(rates), labels, label_names)
