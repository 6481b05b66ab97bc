"""`avel-fast report PATH`: figures and index.html of a run or a seed sweep (docs/cli.md#report)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from avel_fast.cli.train import _fail


def report_command(
    path: Path = typer.Argument(..., help="A run directory, or a sweep directory (summary.json and seed-<k>/)."),
) -> None:
    """Write PATH/report/: learning curves, confusion matrix, per-class accuracy, test-video timelines (and for a
    sweep the spread over seeds) in PNG files shown by PATH/report/index.html. Needs matplotlib (extra `report`)."""
    from avel_fast.data import AVEFormatError
    from avel_fast.report import ReportError, build_report
    from avel_fast.train import TrainingError

    try:
        index = build_report(path)
    except (ReportError, TrainingError, AVEFormatError) as err:
        _fail(err)
    figures = len(list(index.parent.rglob("*.png")))
    Console().print(f"report: {index} ({figures} figures)", soft_wrap=True)
