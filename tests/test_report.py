"""`avel-fast report`: figures and index.html of real smoke runs and of a two-seed sweep; a run whose data has
moved; matplotlib missing; the figures as a reader sees them (checked on their matplotlib objects)."""
import json
import math
import re
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avel_fast.cli.main import app
from avel_fast.constants import BACKGROUND, NUM_CLASSES
from avel_fast.predictions import dataset_segment_labels, read_predictions, score_predictions, write_predictions
from avel_fast.report import (
    INSTALL_HINT,
    SHORT_NAMES,
    ReportError,
    _learning_curves,
    _per_class_accuracy,
    _spread,
    _timelines,
    build_report,
    is_sweep_dir,
)
from avel_fast.train.sweep import format_mean_std, read_summary, seed_dir
from avel_fast.train import resolve_config, train_seeds
from avel_fast.train.run_dir import read_config

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402  (after the skip: the report extra may be absent)

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_FIGURES = ("learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png", "timelines.png")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two smoke DPNet seeds trained into a sweep directory (their predictions and summary.json)."""
    root = tmp_path_factory.mktemp("sweep") / "sweep"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train_seeds(resolve_config("dpnet", preset="smoke", device="cpu", seed=3), root, 2)
    torch.set_num_threads(threads)
    return root


def assert_png(path):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, path
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0, path


def referenced_images(index):
    return re.findall(r'<img src="([^"]+)"', index.read_text())


def test_predictions_of_a_real_run_give_its_test_metrics(sweep):
    run_dir = seed_dir(sweep, 3)
    config = read_config(run_dir)
    labels = dataset_segment_labels(None, config.data_seed, config.synthetic_videos)
    recomputed = score_predictions(read_predictions(run_dir / "test_predictions.h5"), labels)
    summary = read_summary(sweep)
    assert recomputed["accuracy"] == summary["metrics"]["accuracy"]["values"][0]


def test_sweep_report_through_the_cli(sweep):
    assert is_sweep_dir(sweep) and not is_sweep_dir(seed_dir(sweep, 3))
    result = runner.invoke(app, ["report", str(sweep)])
    assert result.exit_code == 0, result.output
    index = sweep / "report" / "index.html"
    assert str(index) in result.output.replace("\n", "")
    images = referenced_images(index)
    assert images[0] == "spread.png" and set(images[1:]) == {"seed-3/learning_curves.png", "seed-4/learning_curves.png"}
    for image in images:
        assert_png(index.parent / image)
    text = index.read_text()
    accuracy = read_summary(sweep)["metrics"]["accuracy"]
    assert f"{accuracy['mean']:.4f} ± {accuracy['std']:.4f}" in text
    for seed in (3, 4):
        seed_index = index.parent / f"seed-{seed}" / "index.html"
        assert f'href="seed-{seed}/index.html"' in text and 'href="../index.html"' in seed_index.read_text()
        assert sorted(referenced_images(seed_index)) == sorted(RUN_FIGURES)
        for name in RUN_FIGURES:
            assert_png(seed_index.parent / name)
        seed_text = seed_index.read_text()
        assert "dpnet" in seed_text and "weighted F1" in seed_text and "(equal to test_metrics.json)" in seed_text


def copy_run(sweep, run_dir, names):
    run_dir.mkdir()
    for name in names:
        (run_dir / name).write_bytes((seed_dir(sweep, 3) / name).read_bytes())
    return run_dir


def test_predictions_that_disagree_with_the_test_metrics_are_flagged(tmp_path, sweep):
    run_dir = copy_run(sweep, tmp_path / "run", ("config.json", "metrics.jsonl", "test_metrics.json"))
    saved = read_predictions(seed_dir(sweep, 3) / "test_predictions.h5")
    config = read_config(run_dir)
    labels = dataset_segment_labels(None, config.data_seed, config.synthetic_videos)[saved.video_index]
    write_predictions(run_dir / "test_predictions.h5", saved.video_index, labels, saved.scores)
    text = build_report(run_dir).index.read_text()
    assert "labels of the data: 1.0000 (<b>differs from test_metrics.json</b>)" in text


def test_a_run_without_predictions_or_test_metrics(tmp_path, sweep):
    run_dir = copy_run(sweep, tmp_path / "run", ("config.json", "metrics.jsonl"))
    index = build_report(run_dir).index
    assert referenced_images(index) == ["learning_curves.png"]
    assert "no test_metrics.json" in index.read_text() and "no test_predictions.h5" in index.read_text()


def test_a_corrupt_test_metrics_file_is_a_clean_error(tmp_path, sweep):
    run_dir = copy_run(sweep, tmp_path / "run", ("config.json", "metrics.jsonl", "test_metrics.json"))
    (run_dir / "test_metrics.json").write_text('{"split": "te')
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 1 and "test_metrics.json: not a readable JSON file" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CUDA run reported on a machine without CUDA")
def test_a_cuda_run_is_reported_on_a_machine_without_cuda(tmp_path, sweep):
    run_dir = copy_run(sweep, tmp_path / "run", ("config.json", "metrics.jsonl", "test_metrics.json"))
    stored = json.loads((run_dir / "config.json").read_text())
    stored["config"]["device"] = "cuda"
    (run_dir / "config.json").write_text(json.dumps(stored))
    assert "learning_curves.png" in referenced_images(build_report(run_dir).index)


def test_not_a_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "not a run directory" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no such directory" in result.output


def test_without_matplotlib(monkeypatch, tmp_path):
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ReportError, match=re.escape(INSTALL_HINT)):
        build_report(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and 'pip install -e ".[report]" in your avel_fast clone' in result.output
    assert not (tmp_path / "report").exists()


def test_help_shows_the_report_extra():
    result = runner.invoke(app, ["report", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and 'pip install -e ".[report]"' in result.output


def test_a_run_whose_data_has_moved_gets_every_figure_but_the_timelines(tmp_path, sweep):
    names = ("config.json", "metrics.jsonl", "test_metrics.json", "test_predictions.h5")
    run_dir = copy_run(sweep, tmp_path / "run", names)
    stored = json.loads((run_dir / "config.json").read_text())
    stored["config"]["data"] = str(tmp_path / "moved")
    (run_dir / "config.json").write_text(json.dumps(stored))
    result = runner.invoke(app, ["report", str(run_dir)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert f"skipped: test-video timelines of {run_dir}" in result.output and "Annotations.txt" in result.output
    index = run_dir / "report" / "index.html"
    assert referenced_images(index) == ["learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png"]
    assert "skipped: the timelines and the accuracy check need the labels" in index.read_text()


def records(epochs, lr):
    return [dict(epoch=epoch, train_loss=1.0 / epoch, train_accuracy=0.5, val={"accuracy": 0.4}, best=epoch == 1,
                 lr=value) for epoch, value in zip(epochs, lr)]


def test_learning_curves_of_one_epoch_have_integer_ticks():
    fig = _learning_curves(Figure, records([1], [1.4e-4]))
    fig.draw_without_rendering()
    for axes in fig.axes:
        low, high = axes.get_xlim()
        ticks = [tick for tick in axes.get_xticks() if low <= tick <= high]
        assert ticks == [1.0], ticks


def test_a_flat_learning_rate_has_no_axis_offset():
    flat = [1e-3, float(np.float32(1e-3)), 1e-3]  # a constant rate, once rounded through float32
    fig = _learning_curves(Figure, records([1, 2, 3], flat))
    fig.draw_without_rendering()
    lr_axes = fig.axes[2]
    assert lr_axes.get_ylim()[0] == 0 and "+" not in lr_axes.yaxis.get_offset_text().get_text()


def test_per_class_accuracy_labels_stand_on_white_right_of_their_bars():
    accuracy = np.full(NUM_CLASSES, math.nan)
    accuracy[:4] = (1.0, 0.97, 0.83, 0.2)
    accuracy[BACKGROUND] = 0.9
    support = np.where(np.isnan(accuracy), 0, 10)
    fig = _per_class_accuracy(Figure, accuracy, support)
    axes = fig.axes[0]
    widths = [bar.get_width() for bar in axes.patches]
    assert len(axes.texts) == NUM_CLASSES
    for text, width in zip(axes.texts, widths):
        x, _ = text.get_position()
        assert x > width and text.get_color() == "black", (text.get_text(), x, width)
    assert axes.get_xlim()[1] > 1.15  # room for "1.00 (n=10)" after a full bar


def test_timelines_name_the_classes_in_their_cells_and_label_the_x_axis():
    target = np.full((2, 10), BACKGROUND)
    target[0, 2:6] = 2  # Bark
    target[1, :] = 3  # Fixed-wing aircraft
    pred = np.full((2, 10), 12)  # Shofar
    fig = _timelines(Figure, pred, target, np.array([5, 9]))
    axes = fig.axes[0]
    labels = [text.get_text() for text in axes.texts if text.get_fontsize() < 7]
    assert len(labels) == 2 * 2 * 10
    assert {label.replace("\n", " ") for label in labels} == {"Bark", "background", "Fixed-wing aircraft", "Shofar"}
    assert axes.get_xlabel() == "segment (second of the video)"
    assert SHORT_NAMES[BACKGROUND] == "background"


def entry(values):
    finite = [value for value in values if value is not None]
    if len(finite) < len(values):
        return {"mean": None, "std": None, "values": values}
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)), "values": values}


def test_the_seed_spread_gives_each_metric_a_scale_that_shows_it_and_writes_mean_and_std():
    metrics = {"accuracy": [0.812, 0.815, 0.809], "weighted_f1": [0.301, 0.297, 0.305], "ave_f1": [0.5, 0.5, 0.5],
               "ave_precision": [0.4, None, 0.6]}
    summary = {"seeds": [0, 1, 2], "metrics": {name: entry(values) for name, values in metrics.items()}}
    fig = _spread(Figure, summary)
    panels = {axes.get_title().split("\n")[0]: axes for axes in fig.axes if axes.get_visible()}
    assert set(panels) == {"accuracy", "weighted F1", "AVE F1", "AVE precision"}
    for label, name in (("accuracy", "accuracy"), ("weighted F1", "weighted_f1"), ("AVE F1", "ave_f1")):
        axes, values = panels[label], metrics[name]
        low, high = axes.get_ylim()
        assert low < min(values) and max(values) < high and high - low < 0.05, (label, low, high)
        mean_std = format_mean_std(summary["metrics"][name]["mean"], summary["metrics"][name]["std"])
        assert axes.get_title().split("\n")[1] == mean_std
    assert panels["AVE precision"].get_title().split("\n")[1] == "mean undefined: no value for seed 1"
