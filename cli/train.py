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
    from avel_fast.train.sweep import format_mean_std, metric_label

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


def train_command(
    model: str = typer.Argument(..., help="The model family: dpnet, edrnet, ave (AVE baseline), psp or pretext."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="AVE directory (docs/data.md), pretext: (image, WAV) pairs; default: synthetic data."
    ),
    setting: Optional[str] = typer.Option(None, "--setting", help="sel (supervised, default) or wsel (weakly)."),
    preset: Optional[str] = typer.Option(
        None, "--preset", help="paper | quick | smoke; default paper with a GPU, quick without."
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (--refine: of the last stage)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Videos (pretext: image/sound pairs) per mini-batch, over all processes."
    ),
    lr: Optional[float] = typer.Option(None, "--lr", help="Base learning rate (the schedule multiplies it)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adamw | adam | sgd."),
    cycle: Optional[int] = typer.Option(None, "--cycle", help="Epochs per cosine cycle (paper 20)."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Model width (paper 768)."),
    visual_channels: Optional[int] = typer.Option(None, "--visual-channels", help="EDRNet 3x3 conv width."),
    dropout: Optional[float] = typer.Option(
        None, "--dropout", help="DPNet: RGCT dropout (default 0.2); PSP: its dropout (default 0.1)."
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the run (init, order, augmentations)."),
    data_seed: Optional[int] = typer.Option(
        None, "--data-seed", help="Seed of the synthetic data (pretext: also of its train/val/test split)."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N; default cuda when present."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | tf32 (CUDA) | bf16 (autocast)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="fast (avel_fast.models) | reference."),
    compile_model: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    cuda_graphs: Optional[bool] = typer.Option(
        None, "--cuda-graphs/--no-cuda-graphs", help="CUDA only: compile and replay the steps as CUDA graphs."
    ),
    standardize: Optional[bool] = typer.Option(
        None, "--standardize/--no-standardize",
        help="Z-score features with training-set statistics (DPNet/EDRNet: off for paper, on for quick and smoke; "
        "AVE/PSP: off).",
    ),
    replicate: Optional[bool] = typer.Option(None, "--replicate/--no-replicate", help="DPNet: one replica per video."),
    link: Optional[bool] = typer.Option(None, "--link/--no-link", help="DPNet: link originals and replicas."),
    lss: Optional[bool] = typer.Option(None, "--lss/--no-lss", help="EDRNet: Land-Shore-Sea loss."),
    lss_weight: Optional[float] = typer.Option(None, "--lss-weight", help="EDRNet: λ₂ of the LSS loss."),
    smb: Optional[bool] = typer.Option(None, "--smb/--no-smb", help="EDRNet: add SMB-fused videos."),
    smb_per_class: Optional[int] = typer.Option(None, "--smb-per-class", help="EDRNet: fused videos per class."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="PSP affinity pruning threshold (default 0.099 sel, 0.095 wsel)."
    ),
    aux: Optional[bool] = typer.Option(
        None, "--aux/--no-aux", help="AVE/PSP wsel: add the auxiliary objective L_A (step 1 of --refine a+lr)."
    ),
    refine: Optional[str] = typer.Option(
        None, "--refine", help="AVE/PSP wsel: none | lr | a+lr | dummy | pl (label refinement, docs/weak.md)."
    ),
    window: Optional[int] = typer.Option(None, "--window", help="Label refinement: segments per window N (4)."),
    stride: Optional[int] = typer.Option(None, "--stride", help="Label refinement: window stride s (2)."),
    tau: Optional[float] = typer.Option(None, "--tau", help="Label refinement: window-label threshold τ (0.05)."),
    step1_epochs: Optional[int] = typer.Option(
        None, "--step1-epochs", help="Label refinement: epochs of step 1 (--epochs: the last stage)."
    ),
    features: Optional[str] = typer.Option(None, "--features", help="pretext: sound summary, textures | mfcc."),
    targets: Optional[str] = typer.Option(None, "--targets", help="pretext: cluster (k-means) | bits (PCA signs)."),
    k: Optional[int] = typer.Option(None, "--k", help="pretext: clusters or bits (15; smoke preset 6)."),
    visual_net: Optional[str] = typer.Option(None, "--visual-net", help="pretext: alexnet | small (preset's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory; default runs/<model>-<setting>-<time>."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run (or the sweep) in --out."),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", min=1, help="Train seeds --seed .. --seed+N-1 into OUT/seed-<k>/, then OUT/summary.json."
    ),
    eval_labels: Optional[Path] = typer.Option(
        None, "--eval-labels", help="Also score the test split against this label file (layout of labels.h5)."
    ),
) -> None:
    """Train a model: the best epoch on validation, its test metrics in test_metrics.json (docs/training.md)."""
    from avel_fast.data import AVEFormatError
    from avel_fast.train import (
        RichTrainProgress,
        TrainingError,
        resolve_config,
        resume_config,
        resume_sweep_config,
        train,
        train_seeds,
    )
    from avel_fast.train.distributed import is_main_process, resume_command
    from avel_fast.train.engine import interrupted_message
    from avel_fast.train.sweep import report_columns

    console = Console(quiet=not is_main_process())  # under torchrun rank 0 alone prints
    options = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer, cycle=cycle,
        dim=dim, visual_channels=visual_channels, dropout=dropout, seed=seed, data_seed=data_seed, device=device,
        precision=precision, backend=backend, standardize=standardize, replicate=replicate, link=link, lss=lss,
        lss_weight=lss_weight, smb=smb, smb_per_class=smb_per_class, compile=compile_model, cuda_graphs=cuda_graphs,
        threshold=threshold, aux=aux, refine=refine, window=window, stride=stride, tau=tau, step1_epochs=step1_epochs,
        features=features, targets=targets, k=k, visual_net=visual_net,
        data=str(data.resolve()) if data is not None else None,
        eval_labels=str(eval_labels.resolve()) if eval_labels is not None else None,
    )  # fmt: skip
    try:
        if resume:
            if out is None:
                raise TrainingError("--resume needs --out RUN_DIR, the run to continue")
            stored = resume_config if seeds is None else resume_sweep_config
            config = stored(out, model=model, setting=setting, preset=preset, **options)
        else:
            config = resolve_config(model, preset=preset, setting=setting or "sel", **options)
            if preset is None:
                console.print(f"no --preset given: using [bold]{config.preset}[/bold]" + (
                    " (no GPU found; --preset paper runs the paper recipe)" if config.preset == "quick" else ""
                ))  # fmt: skip
            out = out or Path("runs") / f"{model}-{config.setting}-{time.strftime('%Y%m%d-%H%M%S')}"
        what = "" if seeds is None else f" seeds {config.seed}..{config.seed + seeds - 1}"
        console.print(
            f"{'resuming' if resume else 'training'} {config.model}{what} ({config.setting}, preset {config.preset}, "
            f"{config.data or 'synthetic data'}) on {config.device} into {out}"
        )
        try:
            if seeds is not None:
                summary = train_seeds(config, out, seeds, resume=resume, progress=lambda: RichTrainProgress(console))
            else:
                report = train(config, out, resume=resume, progress=RichTrainProgress(console))
        except KeyboardInterrupt:
            if seeds is not None:
                raise TrainingError(
                    f"interrupted; finished seeds are kept: resume with {resume_command(config.model, out)} "
                    f"--seeds {seeds}"
                ) from None
            raise TrainingError(interrupted_message(out, config)) from None
    except (TrainingError, AVEFormatError) as err:
        _fail(err)
    if not is_main_process():
        return
    if seeds is not None:
        console.print(summary_table(summary))
        console.print(f"sweep directory: {out} (summary.json)")
        return
    title = f"best validation epoch {report['epoch']} (val acc {report['val_accuracy']:.4f})"
    console.print(scalar_table(title, report_columns(report)))
    for section, values in report.get("summaries", {}).items():
        console.print(f"{section}: " + ", ".join(f"{name} {_value(value)}" for name, value in values.items()))
    console.print(f"run directory: {out}")


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
    from avel_fast.data import AVEFormatError
    from avel_fast.train import TrainingError, evaluate_run

    try:
        config, metrics = evaluate_run(
            run_dir, split=split, use_b2ilc=b2ilc, device=device, protocol=protocol, labels=labels
        )
    except (TrainingError, AVEFormatError) as err:
        _fail(err)
    console = Console()
    console.print(
        f"{config.model} {config.setting}, checkpoint of epoch {metrics['epoch']}, {split} split, protocol "
        f"{protocol}{' + B2ILC' if b2ilc else ''}, labels {metrics['labels']}", soft_wrap=True
    )  # fmt: skip
    console.print(scalar_table(f"{split} metrics", {split: metrics}))
    console.print(per_class_table(metrics, CLASS_NAMES))
    console.print(f"predictions: {metrics['predictions']}", soft_wrap=True)
