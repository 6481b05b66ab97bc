"""WAV input and the h5 files of sound features and pretext targets, written atomically (`docs/audio.md#files`).

Features file: dataset `avadataset` (the AVE key, so a per-segment [V, 10, D] file can replace
`audio_feature.h5`), float32 [V, D] or [V, T, D]; dataset `names` (source file of each row, UTF-8); attributes
`kind` ("textures" | "mfcc") and `method`. Targets file: `labels` int64 [V] or [V, T], `centers` [K, D] in
z-scored units, `mean` / `std` [D] (the z-scoring), optionally `codes` uint8 [..., bits] and `components`
[bits, D]; attributes `k`, `seed`, `inertia`.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from avel_fast.data.files import DATA_KEY

FEATURE_KINDS = ("textures", "mfcc")
WAV_SUFFIXES = (".wav", ".wave")


@dataclass(frozen=True)
class SoundFeatures:
    features: np.ndarray
    """float32 [V, D] or [V, T, D]."""
    names: tuple[str, ...]
    """Source file of each row."""
    kind: str
    method: str


@dataclass(frozen=True)
class ClusterTargets:
    labels: np.ndarray
    """int64 [V] or [V, T]: the k-means cluster of each row."""
    centers: np.ndarray
    """float32 [K, D], in z-scored units."""
    mean: np.ndarray
    std: np.ndarray
    seed: int
    inertia: float
    codes: np.ndarray | None = None
    """uint8 [..., bits] PCA sign codes, when asked for."""
    components: np.ndarray | None = None


def wav_files(path: str | Path) -> list[Path]:
    """`path` itself when it is a file, else the WAV files directly in the directory, sorted by name."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in WAV_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no .wav files in the directory")
    return files


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 full-scale samples [S], sample rate) of a sound file; channels are averaged."""
    try:
        import soundfile
    except ImportError as err:
        raise ImportError("reading WAV files needs soundfile: pip install 'avel_fast[audio]'") from err
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError as err:  # soundfile.LibsndfileError is a RuntimeError
        raise ValueError(f"{path}: not a readable sound file ({err})") from None
    if samples.shape[0] == 0:
        raise ValueError(f"{path}: the file has no samples")
    return samples.mean(axis=1), int(rate)


def _atomic_h5(path: str | Path, build: Callable[[h5py.File], None]) -> Path:
    """Write an h5 file next to `path`, then rename it over `path`: nothing half-written on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        with h5py.File(partial, "w") as f:
            build(f)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path


def _string_dataset(f: h5py.File, key: str, values) -> None:
    f.create_dataset(key, data=np.array(list(values), dtype=object), dtype=h5py.string_dtype())


def write_features(path: str | Path, data: SoundFeatures) -> Path:
    """Write sound features (`docs/audio.md#files`) atomically after checking them."""
    _check_features(path, data.features, data.names, data.kind)
    features = np.asarray(data.features, dtype=np.float32)

    def build(f: h5py.File) -> None:
        f.create_dataset(DATA_KEY, data=features)
        _string_dataset(f, "names", data.names)
        f.attrs.update(kind=data.kind, method=data.method)

    return _atomic_h5(path, build)


def _check_features(path, features, names, kind) -> None:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"{path}: kind must be one of {FEATURE_KINDS}, got {kind!r}")
    if features.ndim not in (2, 3) or not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"{path}: {DATA_KEY} must be float [V, D] or [V, T, D], got {features.dtype} {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{path}: {DATA_KEY} contains NaN or inf")
    if len(names) != features.shape[0]:
        raise ValueError(f"{path}: {len(names)} names for {features.shape[0]} feature rows")


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise ValueError(f"{path}: not an HDF5 file") from None


def _dataset(f: h5py.File, path, key: str) -> np.ndarray:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise ValueError(f"{path}: dataset {key!r} missing")
    return f[key][()]


def read_features(path: str | Path) -> SoundFeatures:
    """Read and validate a features file written by `write_features` (or `avel-fast audio textures|mfcc`)."""
    with _open(path) as f:
        features = _dataset(f, path, DATA_KEY)
        names = tuple(name.decode() if isinstance(name, bytes) else str(name) for name in _dataset(f, path, "names"))
        kind, method = str(f.attrs.get("kind", "")), str(f.attrs.get("method", ""))
    _check_features(path, features, names, kind)
    return SoundFeatures(features.astype(np.float32, copy=False), names, kind, method)


def write_targets(path: str | Path, targets: ClusterTargets) -> Path:
    """Write cluster (and optional code) targets atomically."""
    def build(f: h5py.File) -> None:
        for key in ("labels", "centers", "mean", "std", "codes", "components"):
            value = getattr(targets, key)
            if value is not None:
                f.create_dataset(key, data=value)
        f.attrs.update(k=targets.centers.shape[0], seed=targets.seed, inertia=targets.inertia)

    _check_targets(path, targets)
    return _atomic_h5(path, build)


def _check_targets(path, targets: ClusterTargets) -> None:
    k, dim = targets.centers.shape
    if targets.mean.shape != (dim,) or targets.std.shape != (dim,):
        raise ValueError(f"{path}: mean/std must be [{dim}] like the centres' width")
    labels = targets.labels
    if not np.issubdtype(labels.dtype, np.integer) or labels.size and not 0 <= labels.min() <= labels.max() < k:
        raise ValueError(f"{path}: labels must be integers in [0, {k})")
    if targets.codes is not None and targets.codes.shape[:-1] != labels.shape:
        raise ValueError(f"{path}: codes {targets.codes.shape} do not match labels {labels.shape}")


def read_targets(path: str | Path) -> ClusterTargets:
    """Read and validate a targets file written by `write_targets` (or `avel-fast audio clusters`)."""
    with _open(path) as f:
        arrays = {key: _dataset(f, path, key) for key in ("labels", "centers", "mean", "std")}
        optional = {key: f[key][()] if key in f else None for key in ("codes", "components")}
        seed, inertia = int(f.attrs.get("seed", 0)), float(f.attrs.get("inertia", np.nan))
    targets = ClusterTargets(**arrays, seed=seed, inertia=inertia, **optional)
    if targets.centers.ndim != 2:
        raise ValueError(f"{path}: centers must be [K, D], got {targets.centers.shape}")
    _check_targets(path, targets)
    return targets
