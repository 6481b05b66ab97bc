"""`avel-fast train NAME`, one command per model family built from the registry and its options, and
`avel-fast eval RUN_DIR` (docs/cli.md#train, docs/cli.md#eval)."""
from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from avel_fast.constants import CLASS_NAMES
from avel_fast.data import AVEFormatError
from avel_fast.metrics import SCALAR_METRICS
from avel_fast.train import (
    FAMILIES,
    PlainTrainProgress,
    RichTrainProgress,
    TrainConfig,
    TrainingError,
    evaluate_run,
    family_of,
    resolve_config,
    resume_config,
    resume_sweep_config,
    train,
    train_seeds,
)
from avel_fast.train.distributed import is_main_process, resume_command
from avel_fast.train.options import value_type
from avel_fast.train.runner import interrupted_message
from avel_fast.train.sweep import format_mean_std, metric_label, report_columns

FILE_WIDTH = 400
"""Columns of the output when it goes to a file or a pipe (a terminal has its own width)."""
PATH_OPTIONS = ("data", "eval_labels")
"""Options naming a file or directory: resolved to an absolute path before they are stored."""


def output_console(quiet: bool = False) -> Console:
    """The console of a command: the terminal's width, or `FILE_WIDTH` columns when not a terminal."""
    console = Console(quiet=quiet)
    return console if console.is_terminal else Console(quiet=quiet, width=FILE_WIDTH)


def _value(value) -> str:
    return "nan" if value is None or value != value else f"{value:.4f}"


def scalar_table(title: str | None, columns: dict[str, dict]) -> Table:
    """One row per scalar metric (docs/metrics.md), one column per metrics dict."""
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for key, label in SCALAR_METRICS.items():
        if any(key in metrics for metrics in columns.values()):
            table.add_row(label, *(_value(metrics.get(key)) for metrics in columns.values()))
    return table


def per_class_table(metrics: dict, class_names) -> Table:
    """Accuracy (recall) and number of target segments of every class, background last."""
    table = Table(title="per class")
    for column in ("class", "accuracy", "segments"):
        table.add_column(column, justify="left" if column == "class" else "right")
    support = [sum(row) for row in metrics["confusion_matrix"].tolist()]
    names = [*class_names, "background"]
    for name, accuracy, count in zip(names, metrics["per_class_accuracy"].tolist(), support):
        table.add_row(name, _value(accuracy), str(count))
    return table


def summary_table(summary: dict) -> Table:
    """One row per metric of a sweep summary: mean ± sample std over the seeds, then each seed's value."""
    seeds = summary["seeds"]
    table = Table(title=f"test metrics over {len(seeds)} seeds (mean ± sample std; best epochs "
                        f"{', '.join(map(str, summary['best_epochs']))})")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    for seed in seeds:
        table.add_column(f"seed {seed}", justify="right")
    for name, entry in summary["metrics"].items():
        table.add_row(metric_label(name), format_mean_std(entry["mean"], entry["std"]), *map(_value, entry["values"]))
    return table


def _fail(err: Exception) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
    raise typer.Exit(1)


class TrainGroup(TyperGroup):
    """The commands of ``avel-fast train``; an unknown model is one ``error:`` line, like every bad request."""

    def resolve_command(self, ctx, args: list[str]):
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            _fail(TrainingError(f"unknown model {args[0]!r}: expected one of {', '.join(FAMILIES)}"))
        return super().resolve_command(ctx, args)


RUN_PARAMETERS = (
    ("out", Path, typer.Option(None, "--out", help="Run directory; default runs/<model>-<setting>-<time>.")),
    ("resume", bool, typer.Option(False, "--resume", help="Continue the run (or the sweep) in --out.")),
    ("seeds", Optional[int], typer.Option(
        None, "--seeds", help="Train seeds --seed .. --seed+N-1 into OUT/seed-<k>/, then OUT/summary.json."
    )),
)  # fmt: skip
"""The options of every train command that are not options of the run."""


def option_parameters(family) -> list[inspect.Parameter]:
    """The command-line options of `family`'s runs: the shared ones, then its own (`avel_fast.train.options`)."""
    parameters = []
    for owner in (TrainConfig, family.options_class):
        for spec in dataclasses.fields(owner):
            if not spec.metadata.get("command"):
                continue
            kind = Path if spec.name in PATH_OPTIONS else value_type(owner, spec.name)
            flag = spec.name.replace("_", "-")
            declaration = f"--{flag}/--no-{flag}" if kind is bool else f"--{flag}"
            default = typer.Option(None, declaration, help=spec.metadata["help"])
            parameters.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                annotation=Optional[kind]))  # fmt: skip
    return parameters


def train_command(family):
    """``avel-fast train NAME`` for `family`: its options and those of every run (`RUN_PARAMETERS`)."""
    parameters = option_parameters(family) + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, kind, default in RUN_PARAMETERS
    ]

    def command(**values) -> None:
        run_training(family.name, **values)

    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    command.__doc__ = (
        f"Train {family.title}: the best epoch on validation, its test metrics in test_metrics.json "
        "(docs/training.md)."
    )
    return command


train_app = typer.Typer(
    cls=TrainGroup, no_args_is_help=True,
    help="Train a model family: one command per family, with the shared options and its own (docs/training.md).",
)  # fmt: skip
for _family in FAMILIES.values():
    train_app.command(_family.name, short_help=f"Train {_family.title}.")(train_command(_family))


def run_training(model: str, *, out: Path | None, resume: bool, seeds: int | None, **values) -> None:
    """The body of ``avel-fast train MODEL`` (docs/cli.md#train)."""
    main = is_main_process()  # under torchrun rank 0 alone prints
    console = output_console(quiet=not main)
    setting, preset = values.pop("setting"), values.pop("preset")
    for name in PATH_OPTIONS:
        if values.get(name) is not None:
            values[name] = str(values[name].resolve())
    try:
        if seeds is not None and seeds < 1:
            raise TrainingError(f"--seeds must be at least 1, got {seeds}")
        lines = []
        if resume:
            if out is None:
                raise TrainingError("--resume needs --out RUN_DIR, the run to continue")
            stored = resume_config if seeds is None else resume_sweep_config
            config = stored(out, model, setting=setting, preset=preset, **values)
        else:
            config = resolve_config(model, preset=preset, setting=setting or "sel", **values)
            if preset is None:
                lines.append(f"no --preset given: using [bold]{config.preset}[/bold]" + (
                    " (no GPU found; --preset paper runs the paper recipe)" if config.preset == "quick" else ""
                ))  # fmt: skip
            out = out or Path("runs") / f"{model}-{config.setting}-{time.strftime('%Y%m%d-%H%M%S')}"
        what = "" if seeds is None else f" seeds {config.seed}..{config.seed + seeds - 1}"
        lines.append(
            f"{'resuming' if resume else 'training'} {config.model}{what} ({config.setting}, preset {config.preset}, "
            f"{config.data or 'synthetic data'}) on {config.device} into {out}"
        )
        header = ["\n".join(lines)]
        reporter = RichTrainProgress if console.is_terminal else PlainTrainProgress

        def progress():
            return reporter(console, header.pop() if header else None)

        try:
            if seeds is not None:
                summary = train_seeds(config, out, seeds, resume=resume, progress=progress)
            else:
                report = train(config, out, resume=resume, progress=progress())
        except KeyboardInterrupt:
            if seeds is not None:
                raise TrainingError(
                    f"interrupted; finished seeds are kept: resume with {resume_command(config.model, out)} "
                    f"--seeds {seeds}"
                ) from None
            raise TrainingError(interrupted_message(out, config)) from None
    except (TrainingError, AVEFormatError) as err:
        _fail(err)
    if not main:
        return
    if seeds is not None:
        console.print(summary_table(summary))
        console.print(f"sweep directory: {out} (summary.json)", soft_wrap=True)
        return
    # the title as a line of its own: a table's title wraps at the width of its (narrow) table
    console.print(f"best validation epoch {report['epoch']} (val acc {report['val_accuracy']:.4f})", soft_wrap=True)
    console.print(scalar_table(None, report_columns(report, family_of(model).metric_variants(config))))
    for section, values in report.get("summaries", {}).items():
        console.print(f"{section}: " + ", ".join(f"{name} {_value(value)}" for name, value in values.items()))
    console.print(f"run directory: {out}", soft_wrap=True)


def eval_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by avel-fast train."),
    split: str = typer.Option("test", "--split", help="train | val | test."),
    b2ilc: bool = typer.Option(False, "--b2ilc", help="Apply Bag-to-Instance Label Correction (docs/models.md#b2ilc)."),
    protocol: str = typer.Option("argmax", "--protocol", help="argmax | broadcast (docs/metrics.md#protocols)."),
    labels: Optional[Path] = typer.Option(
        None, "--labels", help="Score against this label file (layout of labels.h5) instead of the data's labels."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="Default: the run's device."),
) -> None:
    """Score the run's best-on-validation checkpoint on a split: every metric of docs/metrics.md; writes the
    split's scores and classes to RUN_DIR/<split>_predictions.h5."""
    try:
        config, metrics = evaluate_run(
            run_dir, split=split, use_b2ilc=b2ilc, device=device, protocol=protocol, labels=labels
        )
    except (TrainingError, AVEFormatError) as err:
        _fail(err)
    console = output_console()
    console.print(
        f"{config.model} {config.setting}, checkpoint of epoch {metrics['epoch']}, {split} split, protocol "
        f"{protocol}{' + B2ILC' if b2ilc else ''}, labels {metrics['labels']}", soft_wrap=True
    )  # fmt: skip
    console.print(scalar_table(f"{split} metrics", {split: metrics}))
    console.print(per_class_table(metrics, CLASS_NAMES))
    console.print(f"predictions: {metrics['predictions']}", soft_wrap=True)
