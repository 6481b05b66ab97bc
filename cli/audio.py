"""`avel-fast audio textures|mfcc|clusters`: sound summaries of WAV files and their k-means pretext targets
(`docs/cli.md#audio`, `docs/audio.md`)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from avel_fast.cli.train import _fail

audio_app = typer.Typer(
    help="Ambient sound: texture statistics or MFCC of WAV files, k-means / PCA-code pretext targets.",
    no_args_is_help=True,
)

IN_HELP = "A WAV file or a directory of them (mono mix of the channels, any sample rate)."
OUT_HELP = "Output h5 file (written atomically; an existing file needs --force)."
PER_SEGMENT_HELP = "One 3.75 s window per one-second segment of a 10 s AVE clip: [V, 10, D]."
DTYPES = ("float32", "float64")


def _summaries(kind: str, source: Path, out: Path, per_segment: bool, method: str, dtype: str,
               device: Optional[str], force: bool) -> None:
    import numpy as np
    import torch

    from avel_fast.audio import SoundFeatures, mfcc_vector, read_wav, segment_windows, texture_statistics, wav_files
    from avel_fast.audio import write_features

    console = Console(stderr=True)
    try:
        if dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
        if out.exists() and not force:
            raise FileExistsError(f"{out}: exists (replace it with --force)")
        files = wav_files(source)
        options = {"dtype": getattr(torch, dtype), "device": device}
        if kind == "textures":
            options["method"] = method

        def summarise(path: Path) -> np.ndarray:
            summary = texture_statistics if kind == "textures" else mfcc_vector
            try:
                samples, rate = read_wav(path)  # its errors name the file
                try:
                    clips = segment_windows(samples, rate) if per_segment else samples
                    return summary(clips, rate, **options).cpu().numpy()
                except ValueError as err:
                    raise ValueError(f"{path}: {err}") from None
            except (MemoryError, RuntimeError) as err:  # numpy's _ArrayMemoryError, torch's allocator
                reason = (str(err).strip() or type(err).__name__).splitlines()[0]
                raise ValueError(f"{path}: out of memory or another resource ({reason})") from None

        rows = []
        columns = (TextColumn(kind), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            for path in progress.track(files, description=kind):
                rows.append(summarise(path))
        if len({row.shape for row in rows}) > 1:
            raise ValueError(f"{source}: clips of different lengths give MFCC of different sizes (use --per-segment)")
        features = SoundFeatures(np.stack(rows), tuple(path.name for path in files), kind,
                                 method if kind == "textures" else "librosa")
        write_features(out, features)
    except (FileExistsError, FileNotFoundError, ImportError, OSError, ValueError) as err:
        _fail(err)
    console.print(f"wrote {kind} {tuple(features.features.shape)} of {len(files)} files to {out}")


@audio_app.command("textures")
def textures(
    source: Path = typer.Argument(..., help=IN_HELP),
    out: Path = typer.Argument(..., help=OUT_HELP),
    per_segment: bool = typer.Option(False, "--per-segment", help=PER_SEGMENT_HELP),
    method: str = typer.Option("exact", "--method", help="exact | decimated (about 3x faster on CPU, within 5e-3)."),
    dtype: str = typer.Option("float32", "--dtype", help="Compute dtype: float32 | float64."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N; default cpu."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT."),
) -> None:
    """The 502 sound-texture statistics of each file (`docs/audio.md#textures`)."""
    _summaries("textures", source, out, per_segment, method, dtype, device, force)


@audio_app.command("mfcc")
def mfcc(
    source: Path = typer.Argument(..., help=IN_HELP),
    out: Path = typer.Argument(..., help=OUT_HELP),
    per_segment: bool = typer.Option(False, "--per-segment", help=PER_SEGMENT_HELP),
    dtype: str = typer.Option("float32", "--dtype", help="Compute dtype: float32 | float64."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N; default cpu."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT."),
) -> None:
    """Flattened librosa-default MFCC (20 x T) of each file (`docs/audio.md#mfcc`)."""
    _summaries("mfcc", source, out, per_segment, "exact", dtype, device, force)


@audio_app.command("clusters")
def clusters(
    features_path: Path = typer.Argument(..., help="Features h5 written by `avel-fast audio textures|mfcc`."),
    out: Path = typer.Argument(..., help=OUT_HELP),
    k: int = typer.Option(15, "--k", min=1, help="Number of k-means clusters (the seed paper: 15)."),
    codes: Optional[int] = typer.Option(None, "--codes", min=1, help="Also write this many PCA sign bits."),
    seed: int = typer.Option(0, "--seed", help="Seed of the k-means++ initialisation."),
    n_init: int = typer.Option(3, "--n-init", min=1, help="k-means runs; the lowest inertia is kept."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OUT."),
) -> None:
    """k-means clusters (and PCA codes) of z-scored sound features (`docs/audio.md#targets`)."""
    import torch

    from avel_fast.audio import ClusterTargets, EmptyClusterWarning, kmeans, pca_components, read_features
    from avel_fast.audio import sign_codes, standardize, write_targets

    try:
        if out.exists() and not force:
            raise FileExistsError(f"{out}: exists (replace it with --force)")
        data = read_features(features_path)
        rows = torch.from_numpy(data.features).reshape(-1, data.features.shape[-1])
        if k > rows.shape[0]:
            raise ValueError(f"--k {k} exceeds the {rows.shape[0]} feature rows of {features_path}")
        mean, std = standardize(rows)
        z = (rows - mean) / std
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EmptyClusterWarning)
            try:
                result = kmeans(z, k, n_init=n_init, seed=seed)
            except ValueError as err:
                raise ValueError(f"{features_path}: {err}") from None
        code_bits = components = None
        if codes is not None:
            pca_mean, components = pca_components(z, codes)
            code_bits = sign_codes(z, pca_mean, components).reshape(*data.features.shape[:-1], codes).numpy()
            components = components.numpy()
        targets = ClusterTargets(
            labels=result.labels.reshape(data.features.shape[:-1]).numpy(),
            centers=result.centers.numpy(), mean=mean.numpy(), std=std.numpy(), seed=seed,
            inertia=result.inertia, codes=code_bits, components=components,
        )
        write_targets(out, targets)
    except (FileExistsError, FileNotFoundError, ImportError, OSError, ValueError) as err:
        _fail(err)
    sizes = torch.bincount(result.labels, minlength=k)
    console = Console(stderr=True)
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {escape(str(warning.message))}", soft_wrap=True)
    console.print(
        f"{k} clusters of {rows.shape[0]} rows (sizes {int(sizes.min())}..{int(sizes.max())}, inertia "
        f"{result.inertia:.4g})" + (f", {codes}-bit codes" if codes else "") + f" -> {escape(str(out))}"
    )
