"""HTML reports of a run or of a seed sweep: PNG figures and an ``index.html`` showing them with the key
numbers (docs/cli.md#report).

A run directory gets learning curves (training loss, validation accuracy and learning rate per epoch, from
``metrics.jsonl``), the 29x29 confusion matrix and per-class accuracy of its test metrics, and timelines of a few
test videos (ground truth against prediction, one coloured cell per segment, from ``test_predictions.h5`` and
the labels of the run's data; skipped, and said so, when those cannot be read). A sweep directory
(``summary.json`` and ``seed-<k>/``) gets the per-seed spread of every metric (each on its own scale), the
mean ± std table and one such run report per seed. matplotlib is imported on use only (the ``report`` extra);
without it `build_report` raises `ReportError` saying how to install it.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avel_fast.constants import BACKGROUND, CLASS_NAMES, NUM_CLASSES
from avel_fast.metrics import SCALAR_METRICS
from avel_fast.predictions import (
    PROTOCOL_METRICS,
    dataset_segment_labels,
    predictions_file,
    read_predictions,
    score_predictions,
)
from avel_fast.train.sweep import (
    SUMMARY_FILE,
    format_mean_std,
    metric_label,
    read_summary,
    read_test_report,
    report_columns,
    seed_dir,
)
from avel_fast.train.families import family_of
from avel_fast.train.run_dir import TEST_METRICS_FILE, read_config, read_metrics

REPORT_DIR = "report"
INDEX_FILE = "index.html"
INSTALL_HINT = (
    "avel-fast report draws its figures with matplotlib: pip install -e \".[report]\" in your avel_fast clone "
    "(pip install 'avel_fast[report]' where avel_fast comes from a package index)"
)
TIMELINE_VIDEOS = 6
DPI = 110
CELL_PADDING_PX = 4
ACCURACY_LABEL_ROOM = 0.22
"""Room on the per-class accuracy axis past 1 for the label of a full bar."""
SPREAD_COLUMNS = 4
SPREAD_MARGIN = 0.15
SPREAD_FLAT_MARGIN = 0.01
"""The spread panels' y-margin: a share of the drawn range, or this much around a metric equal on every seed."""
SHORT_NAMES = (*(name.split(",")[0] for name in CLASS_NAMES), "background")
BACKGROUND_COLOUR = "#e4e4e4"
WRONG_COLOUR = "#d62728"
TAB20_SKIPPED = (6, 7, 14, 15)
TAB20B_EXTRA = (0, 2, 4, 6, 8, 10, 16, 18, 1, 5, 9, 17)
"""The 28 event colours: tab20 without its reds (taken by wrong segments) and greys (by background), then 12
colours of tab20b, none of them red."""
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
.meta { color: #555; } img { max-width: 100%; border: 1px solid #eee; } figure { margin: 1em 0; }
figcaption { color: #555; font-size: 0.9em; } .note { color: #8a5a00; }
table { border-collapse: collapse; margin: 0.6em 0; } th, td { padding: 0.25em 0.8em; border: 1px solid #ddd; }
th { background: #f4f4f4; } td.number { text-align: right; font-family: ui-monospace, monospace; }
.seeds { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1em; }
"""


class ReportError(ValueError):
    """A report cannot be made: matplotlib missing, or a path that is neither a run nor a sweep directory."""


@dataclass(frozen=True)
class Report:
    """A written report: its ``index.html`` and what was skipped (one line each, naming the run and why)."""

    index: Path
    skipped: list[str]


def _figure_class():
    """matplotlib's `Figure` (no pyplot, no display needed); `ReportError` with the install hint without it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError(INSTALL_HINT) from None
    return Figure


def is_sweep_dir(path: str | Path) -> bool:
    """A directory of ``avel-fast train --seeds``: ``summary.json`` and ``seed-<k>/`` run directories."""
    path = Path(path)
    return (path / SUMMARY_FILE).is_file() and any(path.glob("seed-*/"))


def build_report(path: str | Path) -> Report:
    """Write ``PATH/report/`` for a run or a sweep directory: its ``index.html`` and the parts skipped (the
    test-video timelines of a run whose data has moved)."""
    figure = _figure_class()
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such directory")
    if is_sweep_dir(path):
        return _sweep_report(figure, path, path / REPORT_DIR)
    return _run_report(figure, path, path / REPORT_DIR)


# ---------------------------------------------------------------------------------------------- figures


def _save(fig, out_dir: Path, name: str) -> str:
    fig.savefig(out_dir / name, dpi=DPI)
    return name


def _learning_curves(figure, records: list[dict]):
    """Loss, accuracy and learning rate per epoch: integer epoch ticks (one epoch included), the learning rate
    on an axis from 0 without an offset (a flat schedule is a flat line, not noise magnified)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [record["epoch"] for record in records]
    val = [math.nan if record["val"]["accuracy"] is None else record["val"]["accuracy"] for record in records]
    best = [record["epoch"] for record in records if record["best"]]
    lr = [record["lr"] for record in records]
    fig = figure(figsize=(12, 3.4), layout="constrained")
    loss_axes, accuracy_axes, lr_axes = fig.subplots(1, 3)
    loss_axes.plot(epochs, [record["train_loss"] for record in records], marker="o", markersize=3)
    loss_axes.set(title="training loss")
    accuracy_axes.plot(epochs, val, marker="o", markersize=3, label="validation")
    accuracy_axes.plot(epochs, [record["train_accuracy"] for record in records], linestyle="--", label="training")
    if best:
        accuracy_axes.axvline(best[-1], color="#999", linestyle=":", label=f"selected (epoch {best[-1]})")
    accuracy_axes.set(title="segment accuracy", ylim=(0, 1))
    accuracy_axes.legend(loc="best", fontsize="small")
    lr_axes.plot(epochs, lr, marker="o", markersize=3, color="tab:green")
    lr_axes.set(title="learning rate (last step of the epoch)", ylim=(0, 1.1 * max(lr)))
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useOffset=False)
    for axes in (loss_axes, accuracy_axes, lr_axes):
        axes.set(xlabel="epoch", xlim=(min(epochs) - 0.5, max(epochs) + 0.5))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes.grid(alpha=0.3)
    return fig


def _confusion_matrix(figure, confusion: np.ndarray):
    support = confusion.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        fractions = np.where(support > 0, confusion / support, np.nan)
    from matplotlib import colormaps

    fig = figure(figsize=(10, 9), layout="constrained")
    axes = fig.subplots()
    image = axes.imshow(fractions, cmap=colormaps["Blues"].with_extremes(bad="#f2f2f2"), vmin=0, vmax=1)
    ticks = np.arange(NUM_CLASSES)
    axes.set_xticks(ticks, SHORT_NAMES, rotation=90, fontsize=8)
    axes.set_yticks(ticks, SHORT_NAMES, fontsize=8)
    axes.set(xlabel="predicted class", ylabel="target class",
             title="test confusion matrix (each row divided by its target segments; grey: no target segment)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="fraction of the target class's segments")
    return fig


def _per_class_accuracy(figure, accuracy: np.ndarray, support: np.ndarray):
    """One bar per class; each label in black just right of its bar, on the white background (the axis runs on
    past 1 to leave room after a full bar)."""
    fig = figure(figsize=(9, 8), layout="constrained")
    axes = fig.subplots()
    rows = np.arange(NUM_CLASSES)
    widths = np.nan_to_num(accuracy)
    axes.barh(rows, widths, color=["tab:blue"] * BACKGROUND + ["#888"])
    for row, width, count in zip(rows, widths, support):
        text = "no test segment" if count == 0 else f"{width:.2f} (n={count})"
        axes.text(width + 0.01, row, text, va="center", fontsize=7, color="black")
    axes.set_yticks(rows, SHORT_NAMES, fontsize=8)
    axes.set_xticks(np.linspace(0, 1, 6))
    axes.invert_yaxis()
    axes.set(xlim=(0, 1 + ACCURACY_LABEL_ROOM), xlabel="accuracy (recall) on the class's test segments",
             title="per-class accuracy")
    axes.grid(axis="x", alpha=0.3)
    return fig


def _class_colours():
    from matplotlib import colormaps

    light_and_dark = [colour for index, colour in enumerate(colormaps["tab20"].colors) if index not in TAB20_SKIPPED]
    extra = [colormaps["tab20b"].colors[index] for index in TAB20B_EXTRA]
    return [*light_and_dark, *extra, BACKGROUND_COLOUR]


def _is_dark(colour) -> bool:
    from matplotlib.colors import to_rgb

    red, green, blue = to_rgb(colour)
    return 0.299 * red + 0.587 * green + 0.114 * blue < 0.5


def _label_candidates(cls: int) -> list[str]:
    """A cell's label, longest first: the class name, the name on two lines, the class number."""
    name = SHORT_NAMES[cls]
    spaces = [index for index, char in enumerate(name) if char == " "]
    candidates = [name]
    if spaces:
        middle = min(spaces, key=lambda index: abs(2 * index - len(name)))
        candidates.append(f"{name[:middle]}\n{name[middle + 1:]}")
    return [*candidates, str(cls)]


def _fit_labels(fig, cells: list) -> None:
    """Give each (cell, text) pair the longest label candidate that fits inside the cell once the layout is
    done; the class number otherwise (the legend names it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    for cell, text, candidates in cells:
        box = cell.get_window_extent(renderer)
        for candidate in candidates:
            text.set_text(candidate)
            extent = text.get_window_extent(renderer)
            if extent.width <= box.width - CELL_PADDING_PX and extent.height <= box.height - CELL_PADDING_PX:
                break


def _timelines(figure, pred: np.ndarray, target: np.ndarray, video_index: np.ndarray):
    """Ground truth above prediction for a few test videos, evenly spread over the split; each cell shows its
    class name where it fits (the class number otherwise)."""
    from matplotlib.patches import Patch, Rectangle

    colours = _class_colours()
    chosen = np.unique(np.linspace(0, len(pred) - 1, min(TIMELINE_VIDEOS, len(pred))).round().astype(int))
    segments = pred.shape[1]
    fig = figure(figsize=(11, 1.15 * len(chosen) + 1.9), dpi=DPI, layout="constrained")
    axes = fig.subplots()
    cells = []
    for position, row in enumerate(chosen):
        top = 3 * (len(chosen) - 1 - position)
        correct = int((pred[row] == target[row]).sum())
        axes.text(-0.2, top + 2.25, f"video {video_index[row]}: {correct}/{segments} segments right",
                  fontsize=9, ha="left", va="bottom")
        for offset, classes, name in ((1, target[row], "truth"), (0, pred[row], "prediction")):
            axes.text(-0.3, top + offset + 0.45, name, ha="right", va="center", fontsize=8)
            for t, cls in enumerate(classes):
                wrong = offset == 0 and cls != target[row][t]
                cell = axes.add_patch(Rectangle((t, top + offset), 0.96, 0.9, facecolor=colours[cls],
                                                edgecolor=WRONG_COLOUR if wrong else "white",
                                                linewidth=2 if wrong else 0.5))
                text = axes.text(t + 0.48, top + offset + 0.45, "", ha="center", va="center", fontsize=6.5,
                                 color="white" if _is_dark(colours[cls]) else "black", linespacing=1.0)
                cells.append((cell, text, _label_candidates(int(cls))))
    shown = sorted(set(pred[chosen].ravel()) | set(target[chosen].ravel()))
    handles = [Patch(facecolor=colours[cls], label=f"{cls} {SHORT_NAMES[cls]}") for cls in shown]
    handles.append(Patch(facecolor="white", edgecolor=WRONG_COLOUR, linewidth=2, label="wrong segment"))
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    axes.set(xlim=(-2.2, segments), ylim=(-0.2, 3 * len(chosen)), title="test videos: one cell per one-second segment")
    axes.set_xticks(np.arange(segments) + 0.48, [str(t) for t in range(segments)], fontsize=8)
    axes.set_xlabel("segment (second of the video)", fontsize=9)
    axes.set_yticks([])
    for side in ("left", "right", "top"):
        axes.spines[side].set_visible(False)
    _fit_labels(fig, cells)
    return fig


def _finite(values) -> np.ndarray:
    return np.array([math.nan if value is None else value for value in values], dtype=np.float64)


def _spread_limits(values: np.ndarray, mean: float, std: float) -> tuple[float, float]:
    """y-limits of one metric's panel: its seeds' values and mean ± std with a margin, however close they are."""
    ends = values[np.isfinite(values)]
    if math.isfinite(mean) and math.isfinite(std):
        ends = np.concatenate([ends, [mean - std, mean + std]])
    low, high = float(ends.min()), float(ends.max())
    margin = SPREAD_MARGIN * (high - low) if high > low else SPREAD_FLAT_MARGIN
    return low - margin, high + margin


def _mean_std_line(entry: dict, seeds: list[int]) -> str:
    """``0.7712 ± 0.0123``, or which seeds leave the mean undefined (a metric with no value there)."""
    if entry["mean"] is not None and math.isfinite(entry["mean"]):
        return format_mean_std(entry["mean"], entry["std"])
    missing = [str(seed) for seed, value in zip(seeds, _finite(entry["values"])) if not math.isfinite(value)]
    return f"mean undefined: no value for seed{'s' if len(missing) > 1 else ''} {', '.join(missing)}"


def _spread(figure, summary: dict):
    """One panel per metric on its own y-scale: each seed's value (dot), the mean (line) and ± std (grey band),
    with the mean ± std written in the panel's title."""
    seeds = summary["seeds"]
    names = list(summary["metrics"])
    rows = -(-len(names) // SPREAD_COLUMNS)
    fig = figure(figsize=(12, 2.5 * rows + 0.5), layout="constrained")
    panels = np.atleast_1d(fig.subplots(rows, SPREAD_COLUMNS, squeeze=False)).ravel()
    positions = np.arange(len(seeds))
    for axes, name in zip(panels, names):
        entry = summary["metrics"][name]
        values, mean, std = _finite(entry["values"]), *_finite([entry["mean"], entry["std"]])
        axes.set_title(f"{metric_label(name)}\n{_mean_std_line(entry, seeds)}", fontsize=9)
        axes.set_xticks(positions, [str(seed) for seed in seeds], fontsize=8)
        axes.set_xlim(-0.6, len(seeds) - 0.4)
        axes.tick_params(axis="y", labelsize=8)
        if not np.isfinite(values).any():
            axes.text(0.5, 0.5, "undefined for every seed", transform=axes.transAxes, ha="center", va="center",
                      fontsize=8, color="#555")
            axes.set_yticks([])
            continue
        if math.isfinite(mean):
            if math.isfinite(std):
                axes.axhspan(mean - std, mean + std, color="#ddd", zorder=1)
            axes.axhline(mean, color="black", linewidth=1.2, zorder=2)
        axes.scatter(positions, values, s=22, color="tab:blue", zorder=3)
        axes.set_ylim(*_spread_limits(values, mean, std))
        axes.ticklabel_format(axis="y", useOffset=False)
        axes.grid(axis="y", alpha=0.3)
    for axes in panels[len(names):]:
        axes.set_visible(False)
    fig.supxlabel("seed", fontsize=9)
    fig.suptitle("test metrics per seed: dots, mean (line) ± std (grey band); each metric on its own scale")
    return fig


# ---------------------------------------------------------------------------------------------- html


def _number(value) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of a name column followed by number columns (right-aligned); every cell escaped."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td class=\"number\">{html.escape(v)}</td>" for v in values)
        + "</tr>"
        for name, *values in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure_html(source: str, caption: str) -> str:
    return (f"<figure><img src=\"{html.escape(source)}\" alt=\"{html.escape(caption)}\">"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _metrics_table(columns: dict[str, dict[str, float]]) -> str:
    rows = [[label, *(_number(values[key]) for values in columns.values())] for key, label in SCALAR_METRICS.items()]
    return _table(["metric", *columns], rows)


def _run_report(figure, run_dir: Path, out_dir: Path, up_link: str | None = None) -> Report:
    config = read_config(run_dir, device="cpu")  # the values only: a CUDA run is reported anywhere
    if family_of(config.model).eval_note:
        raise ReportError(f"{run_dir}: {family_of(config.model).eval_note}")
    records = read_metrics(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = config.data or f"synthetic AVE (data seed {config.data_seed}, {config.synthetic_videos} videos)"
    parts = [f"<p><a href=\"{html.escape(up_link)}\">&larr; sweep</a></p>" if up_link else "",
             f"<h1>{html.escape(run_dir.resolve().name)}</h1>",
             f"<p class=\"meta\">{html.escape(config.model)} · {html.escape(config.setting)} · preset "
             f"{html.escape(config.preset)} · seed {config.seed} · {config.epochs} epochs · {html.escape(data)}</p>"]
    test_file = run_dir / TEST_METRICS_FILE
    report = read_test_report(run_dir) if test_file.is_file() else None
    if report is not None:
        parts.append(f"<h2>Test metrics</h2><p>checkpoint of epoch <b>{report['epoch']}</b> (best validation "
                     f"accuracy {_number(report['val_accuracy'])}), scored on the test split</p>")
        parts.append(_metrics_table(report_columns(report, family_of(config.model).metric_variants(config))))
    else:
        parts.append(f"<p class=\"note\">no {TEST_METRICS_FILE}: the run has not finished.</p>")
    if records:
        name = _save(_learning_curves(figure, records), out_dir, "learning_curves.png")
        parts.append("<h2>Learning curves</h2>" + _figure_html(name, "per epoch, from metrics.jsonl"))
    if report is not None:
        metrics = report["metrics"]
        confusion = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
        accuracy = np.array([math.nan if value is None else value for value in metrics["per_class_accuracy"]])
        name = _save(_confusion_matrix(figure, confusion), out_dir, "confusion_matrix.png")
        parts.append("<h2>Classes</h2>" + _figure_html(name, "rows: target class, columns: predicted class"))
        name = _save(_per_class_accuracy(figure, accuracy, confusion.sum(axis=1)), out_dir, "per_class_accuracy.png")
        parts.append(_figure_html(name, "background in grey; n = test segments of the class"))
    section, skipped = _timeline_section(figure, run_dir, config, report, out_dir)
    parts.append(section)
    index = out_dir / INDEX_FILE
    index.write_text(_page(f"avel-fast report: {run_dir.resolve().name}", "\n".join(parts)))
    return Report(index, skipped)


def _timeline_section(figure, run_dir: Path, config, report: dict | None, out_dir: Path) -> tuple[str, list[str]]:
    """The test-video section and what it had to skip: it needs the labels of the run's data, which may have
    moved since training; everything else of the report is drawn without them."""
    path = run_dir / predictions_file("test")
    if not path.is_file():
        return f"<h2>Test videos</h2><p class=\"note\">no {path.name} in this run: no timelines.</p>", []
    predictions = read_predictions(path)
    try:
        labels = dataset_segment_labels(config.data, config.data_seed, config.synthetic_videos)
    except (OSError, ValueError) as err:  # AVEFormatError: a ValueError naming the missing or broken file
        skipped = f"test-video timelines of {run_dir}: the labels of its data cannot be read ({err})"
        return (f"<h2>Test videos</h2><p class=\"note\">skipped: the timelines and the accuracy check need the "
                f"labels of the run's data, which cannot be read: {html.escape(str(err))}</p>"), [skipped]
    recomputed = score_predictions(predictions, labels)
    target = labels[predictions.video_index]
    name = _save(_timelines(figure, predictions.pred, target, predictions.video_index), out_dir, "timelines.png")
    check = ""
    reported = (report or {}).get(PROTOCOL_METRICS[predictions.protocol])
    if reported is not None:
        agrees = math.isclose(recomputed["accuracy"], reported["accuracy"], rel_tol=1e-9)
        check = " (equal to test_metrics.json)" if agrees else " (<b>differs from test_metrics.json</b>)"
    caption = "ground truth (upper row) and prediction (lower row); wrong segments outlined red"
    return (f"<h2>Test videos</h2><p>accuracy recomputed from {path.name} (protocol {predictions.protocol}) and "
            f"the labels of the data: {_number(recomputed['accuracy'])}{check}</p>" + _figure_html(name, caption)), []


def _sweep_report(figure, sweep_dir: Path, out_dir: Path) -> Report:
    summary = read_summary(sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = summary["seeds"]
    header = ["metric", "mean ± std", *(f"seed {seed}" for seed in seeds)]
    rows = [
        [metric_label(name), format_mean_std(entry["mean"], entry["std"]), *map(_number, entry["values"])]
        for name, entry in summary["metrics"].items()
    ]
    spread = _save(_spread(figure, summary), out_dir, "spread.png")
    parts = [f"<h1>{html.escape(sweep_dir.resolve().name)}</h1>",
             f"<p class=\"meta\">{len(seeds)} seeds ({', '.join(map(str, seeds))}); best epochs "
             f"{', '.join(map(str, summary['best_epochs']))}; std = sample standard deviation (ddof = 1)</p>",
             "<h2>Test metrics over seeds</h2>", _table(header, rows),
             _figure_html(spread, "one panel per metric, each on its own scale: one dot per seed; black line: mean; "
                                  "grey band: ± std"),
             "<h2>Seeds</h2><div class=\"seeds\">"]
    skipped = []
    for seed, epoch in zip(seeds, summary["best_epochs"]):
        run_dir = seed_dir(sweep_dir, seed)
        if not run_dir.is_dir():
            raise ReportError(f"{sweep_dir}: {SUMMARY_FILE} lists seed {seed} but {run_dir.name}/ is missing")
        skipped += _run_report(figure, run_dir, out_dir / run_dir.name, up_link=f"../{INDEX_FILE}").skipped
        accuracy = summary["metrics"]["accuracy"]["values"][seeds.index(seed)]
        parts.append(f"<section><h3><a href=\"{run_dir.name}/{INDEX_FILE}\">seed {seed}</a></h3>"
                     f"<p>best epoch {epoch}, test accuracy {_number(accuracy)}</p>"
                     + (_figure_html(f"{run_dir.name}/learning_curves.png", f"seed {seed}: learning curves")
                        if (out_dir / run_dir.name / "learning_curves.png").is_file() else "") + "</section>")
    parts.append("</div>")
    index = out_dir / INDEX_FILE
    index.write_text(_page(f"avel-fast report: {sweep_dir.resolve().name}", "\n".join(parts)))
    return Report(index, skipped)
