"""`avel-fast data synth|check|states`: write synthetic AVE in the real h5 format, validate an AVE directory
(docs/cli.md), print the augmentation databases of a training split (docs/augmentations.md)."""
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

data_app = typer.Typer(
    help="AVE data: synthesize a dataset in the real h5 format, check a directory.", no_args_is_help=True
)


MIN_VIDEOS = 3  # one per split
TABLE_MAX_WIDTH = 1000


def _fail(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _check_at_least(option: str, value: int, low: int, why: str) -> None:
    """One ``error:`` line and exit 1 for a count below `low` (docs/cli.md: a range error is not a usage error)."""
    if value < low:
        _fail(f"{option} must be an integer >= {low}{why}, got {value}")


@data_app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Directory to create (must be absent or empty unless --force)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator."),
    videos: int = typer.Option(4143, "--videos", help="Number of event videos, at least 3 (AVE: 4143)."),
    background_videos: Optional[int] = typer.Option(
        None, "--background-videos", help="Background-only videos (default: 178 per 4143 event videos, at least 1)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty OUT_DIR."),
) -> None:
    """Write the synthetic AVE set (docs/data.md#synthetic) in the real AVE h5 format, atomically."""
    from avel_fast.data import write_synthetic_ave
    from avel_fast.data.synthetic import background_videos_for

    _check_at_least("--videos", videos, MIN_VIDEOS, " (one per split)")
    if background_videos is None:
        background_videos = background_videos_for(videos)
    _check_at_least("--background-videos", background_videos, 0, "")
    console = Console(stderr=True)
    total = videos + background_videos
    columns = (TextColumn("synthesizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("videos", total=total)
            write_synthetic_ave(
                out_dir,
                seed=seed,
                num_videos=videos,
                num_background_videos=background_videos,
                overwrite=force,
                progress=lambda n: progress.advance(task, n),
            )
    except (FileExistsError, OSError, ValueError) as err:
        _fail(str(err))
    console.print(f"wrote {videos} videos + {background_videos} background-only videos (seed {seed}) to {out_dir}")


@data_app.command("check")
def check(directory: Path = typer.Argument(..., help="Directory in the AVE format (docs/data.md#files).")) -> None:
    """Validate an AVE directory: every check as a report; exit code 1 when there are errors."""
    from avel_fast.data import validate_ave_dir

    report = validate_ave_dir(directory)
    console = Console()
    table = Table(title=f"AVE check: {directory}")
    for column in ("status", "file", "dataset", "detail"):
        table.add_column(column)
    for file, detail in report.checks:
        table.add_row("[green]ok[/green]", escape(file), "", escape(detail))
    for message in report.warnings:
        table.add_row("[yellow]warning[/yellow]", "", "", escape(message))
    for err in report.errors:
        file = Path(err.file).name or err.file
        table.add_row("[red]error[/red]", escape(file), escape(err.dataset), escape(err.problem))
    console.print(table)
    for err in report.errors:
        console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
    summary = f"{len(report.checks)} checks passed, {len(report.warnings)} warnings, {len(report.errors)} errors"
    console.print(("[red]FAILED[/red] " if report.errors else "[green]OK[/green] ") + summary)
    raise typer.Exit(1 if report.errors else 0)


def _training_labels(directory: Path | None, synthetic: bool, seed: int, videos: int):
    """Segment labels [N, T] of the training split: from `Annotations.txt` + `train_order.h5`, or synthetic."""
    if synthetic == (directory is not None):
        raise ValueError("give either an AVE directory or --synthetic (not both)")
    if synthetic:
        from avel_fast.data import synthetic_labels

        labels = synthetic_labels(seed, videos, 0)
        return labels.labels[labels.splits["train"]].numpy(), f"synthetic AVE (seed {seed}, {videos} videos)"
    from avel_fast.data import split_labels

    return split_labels(directory, "train"), str(directory)


@data_app.command("states")
def states(
    directory: Optional[Path] = typer.Argument(None, help="AVE directory (Annotations.txt and train_order.h5)."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Use the labels of the synthetic AVE set."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic set."),
    videos: int = typer.Option(4143, "--videos", help="Event videos of the synthetic set, at least 3."),
) -> None:
    """Sizes of the training split's SMB and Replicate databases, per class (docs/augmentations.md)."""
    from avel_fast.augment import PIECE_TYPE_NAMES, SMB_STATE_NAMES, ReplicaSampler, smb_database_sizes
    from avel_fast.constants import CLASS_NAMES
    from avel_fast.data import AVEFormatError, AVEFormatWarning

    _check_at_least("--videos", videos, MIN_VIDEOS, " (one per split)")
    console = Console()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AVEFormatWarning)
            labels, source = _training_labels(directory, synthetic, seed, videos)
    except (AVEFormatError, ValueError) as err:
        _fail(str(err))
    for message in dict.fromkeys(str(warning.message) for warning in caught):  # each distinct warning once
        console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)
    console.print(f"training split of {escape(source)}: {len(labels)} videos", soft_wrap=True)
    smb = smb_database_sizes(labels)
    replica = ReplicaSampler(labels).database_sizes()
    for title, names, columns in (
        ("SMB video fusion: instances per class and state", SMB_STATE_NAMES, smb.T),
        ("Replicate: entries per class and sub-event type", PIECE_TYPE_NAMES,
         [replica[name] for name in PIECE_TYPE_NAMES]),
    ):
        table = Table(title=title)
        table.add_column("class", no_wrap=True)
        for name in names:
            table.add_column(name, justify="right")
        for index, class_name in enumerate(CLASS_NAMES):
            table.add_row(class_name, *(str(int(column[index])) for column in columns))
        table.add_row("[bold]total[/bold]", *(f"[bold]{int(sum(column))}[/bold]" for column in columns))
        natural = Measurement.get(console, console.options.update_width(TABLE_MAX_WIDTH), table).maximum
        console.width = max(natural, console.width)  # full width, not truncated to the terminal
        console.print(table)
