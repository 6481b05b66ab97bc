"""`avel-fast report PATH`: figures and index.html of a run or a seed sweep (docs/cli.md#report)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from avel_fast.cli.train import _fail


def report_command(
    path: Path = typer.Argument(..., help="A run directory, or a sweep directory (summary.json and seed-<k>/)."),
) -> None:
    """Figures and an index.html of a run or a seed sweep, written to PATH/report/.

    Learning curves, confusion matrix, per-class accuracy and test-video timelines of each run; for a sweep also
    the spread of every test metric over the seeds. Needs matplotlib (pip install -e ".[report]" in a clone).
    """
    from avel_fast.report import build_report

    try:
        report = build_report(path)
    except (ValueError, OSError) as err:  # ReportError, TrainingError, AVEFormatError: ValueErrors naming the file
        _fail(err)
    console = Console()
    for skipped in report.skipped:
        console.print(f"[yellow]skipped:[/yellow] {escape(skipped)}", soft_wrap=True)
    figures = len(list(report.index.parent.rglob("*.png")))
    console.print(f"report: {escape(str(report.index))} ({figures} figures)", soft_wrap=True)
