"""`avel-fast train MODEL` and `avel-fast eval RUN_DIR` (docs/cli.md)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from avel_fast.constants import CLASS_NAMES


def _value(value) -> str:
    return "nan" if value is None or value != value else f"{value:.4f}"


def scalar_table(title: str, columns: dict[str, dict]) -> Table:
    """One row per scalar metric (docs/metrics.md), one column per metrics dict."""
    from avel_fast.metrics import SCALAR_METRICS

    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for key, label in SCALAR_METRICS.items():
        table.add_row(label, *(_value(metrics[key]) for metrics in columns.values()))
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


def _fail(err: Exception) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
    raise typer.Exit(1)


def train_command(
    model: str = typer.Argument(..., help="The model family: dpnet or edrnet."),
    data: Optional[Path] = typer.Option(None, "--data", help="AVE directory (docs/data.md); default: synthetic AVE."),
    setting: Optional[str] = typer.Option(None, "--setting", help="sel (supervised, default) or wsel (weakly)."),
    preset: Optional[str] = typer.Option(
        None, "--preset", help="paper | quick | smoke; default paper with a GPU, quick without."
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Videos per mini-batch."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Base learning rate (the schedule multiplies it)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adamw | adam | sgd."),
    cycle: Optional[int] = typer.Option(None, "--cycle", help="Epochs per cosine cycle (paper 20)."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Model width (paper 768)."),
    visual_channels: Optional[int] = typer.Option(None, "--visual-channels", help="EDRNet 3x3 conv width."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="DPNet: RGCT dropout (default 0.2)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the run (init, order, augmentations)."),
    data_seed: Optional[int] = typer.Option(None, "--data-seed", help="Seed of the synthetic data."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N; default cuda when present."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | tf32 (CUDA) | bf16 (autocast)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="fast (avel_fast.models) | reference."),
    standardize: Optional[bool] = typer.Option(
        None, "--standardize/--no-standardize",
        help="Z-score features with training-set statistics (default: off for paper, on for quick and smoke).",
    ),
    replicate: Optional[bool] = typer.Option(None, "--replicate/--no-replicate", help="DPNet: one replica per video."),
    link: Optional[bool] = typer.Option(None, "--link/--no-link", help="DPNet: link originals and replicas."),
    lss: Optional[bool] = typer.Option(None, "--lss/--no-lss", help="EDRNet: Land-Shore-Sea loss."),
    lss_weight: Optional[float] = typer.Option(None, "--lss-weight", help="EDRNet: λ₂ of the LSS loss."),
    smb: Optional[bool] = typer.Option(None, "--smb/--no-smb", help="EDRNet: add SMB-fused videos."),
    smb_per_class: Optional[int] = typer.Option(None, "--smb-per-class", help="EDRNet: fused videos per class."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory; default runs/<model>-<setting>-<time>."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
) -> None:
    """Train a model: the best epoch on validation, its test metrics in test_metrics.json (docs/training.md)."""
    from avel_fast.data import AVEFormatError
    from avel_fast.train import RichTrainProgress, TrainingError, resolve_config, resume_config, train
    from avel_fast.train.engine import interrupted_message

    console = Console()
    options = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer, cycle=cycle,
        dim=dim, visual_channels=visual_channels, dropout=dropout, seed=seed, data_seed=data_seed, device=device,
        precision=precision, backend=backend, standardize=standardize, replicate=replicate, link=link, lss=lss,
        lss_weight=lss_weight, smb=smb, smb_per_class=smb_per_class,
        data=str(data.resolve()) if data is not None else None,
    )  # fmt: skip
    try:
        if resume:
            if out is None:
                raise TrainingError("--resume needs --out RUN_DIR, the run to continue")
            config = resume_config(out, model=model, setting=setting, preset=preset, **options)
        else:
            config = resolve_config(model, preset=preset, setting=setting or "sel", **options)
            if preset is None:
                console.print(f"no --preset given: using [bold]{config.preset}[/bold]" + (
                    " (no GPU found; --preset paper runs the paper recipe)" if config.preset == "quick" else ""
                ))  # fmt: skip
            out = out or Path("runs") / f"{model}-{config.setting}-{time.strftime('%Y%m%d-%H%M%S')}"
        console.print(
            f"{'resuming' if resume else 'training'} {config.model} ({config.setting}, preset {config.preset}, "
            f"{config.data or 'synthetic AVE'}) on {config.device} into {out}"
        )
        try:
            report = train(config, out, resume=resume, progress=RichTrainProgress(console))
        except KeyboardInterrupt:
            raise TrainingError(interrupted_message(out, config)) from None
    except (TrainingError, AVEFormatError) as err:
        _fail(err)
    columns = {"test": report["metrics"]}
    if "b2ilc" in report:
        columns["test + B2ILC"] = report["b2ilc"]
    title = f"best validation epoch {report['epoch']} (val acc {report['val_accuracy']:.4f})"
    console.print(scalar_table(title, columns))
    console.print(f"run directory: {out}")


def eval_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by avel-fast train."),
    split: str = typer.Option("test", "--split", help="train | val | test."),
    b2ilc: bool = typer.Option(False, "--b2ilc", help="Apply Bag-to-Instance Label Correction (docs/models.md#b2ilc)."),
    device: Optional[str] = typer.Option(None, "--device", help="Default: the run's device."),
) -> None:
    """Score the run's best-on-validation checkpoint on a split: every metric of docs/metrics.md."""
    from avel_fast.data import AVEFormatError
    from avel_fast.train import TrainingError, evaluate_run

    try:
        config, metrics = evaluate_run(run_dir, split=split, use_b2ilc=b2ilc, device=device)
    except (TrainingError, AVEFormatError) as err:
        _fail(err)
    console = Console()
    title = f"{config.model} {config.setting}, epoch {metrics['epoch']}, {split}" + (" + B2ILC" if b2ilc else "")
    console.print(scalar_table(title, {split: metrics}))
    console.print(per_class_table(metrics, CLASS_NAMES))
