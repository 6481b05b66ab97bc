"""Seed sweeps: summary.json = mean and sample std of every scalar test metric and of its variants."""
import json
import math
import statistics

import numpy as np
import pytest

from avel_fast.metrics import SCALAR_METRICS
from avel_fast.train.sweep import (
    format_mean_std,
    metric_label,
    read_summary,
    scalar_test_metrics,
    seed_dir,
    summarize,
    sweep_seeds,
    write_summary,
)
from avel_fast.train import TrainingError
from avel_fast.train.run_dir import write_json

VARIANTS = {"metrics": "", "b2ilc": "b2ilc/", "metrics_broadcast": "broadcast/"}
"""The metric variants of an EDRNet run in WSEL (`ModelFamily.metric_variants`)."""


def metrics(rng):
    return {name: float(rng.uniform(0.3, 0.9)) for name in SCALAR_METRICS} | {"num_segments": 40}


def fake_report(seed, *, b2ilc=True, broadcast=False, label_set=False):
    rng = np.random.default_rng(seed)
    report = {"split": "test", "epoch": 3 + seed, "val_accuracy": 0.5, "metrics": metrics(rng)}
    if b2ilc:
        report["b2ilc"] = metrics(rng)
    if broadcast:
        report["metrics_broadcast"] = metrics(rng)
    if label_set:
        label_set = {"file": "right_labels.h5", "metrics": metrics(rng), "b2ilc": metrics(rng)}
        report["label_sets"] = {"right_labels": label_set}
    return report


def write_runs(root, seeds, **variants):
    dirs = []
    for seed in seeds:
        run_dir = seed_dir(root, seed)
        run_dir.mkdir(parents=True)
        write_json(run_dir / "test_metrics.json", fake_report(seed, **variants))
        dirs.append(run_dir)
    return dirs


def test_summary_is_mean_and_sample_std_of_every_metric(tmp_path):
    seeds = sweep_seeds(4, 3)
    assert seeds == [4, 5, 6]
    dirs = write_runs(tmp_path, seeds, b2ilc=True, label_set=True)
    summary = summarize(dirs, seeds, VARIANTS)
    assert summary["seeds"] == [4, 5, 6] and summary["best_epochs"] == [7, 8, 9]
    prefixes = ("", "b2ilc/", "right_labels/", "right_labels/b2ilc/")
    expected_names = {f"{prefix}{name}" for prefix in prefixes for name in SCALAR_METRICS}
    assert set(summary["metrics"]) == expected_names
    reports = [fake_report(seed, b2ilc=True, label_set=True) for seed in seeds]
    for name, key, scores in [("accuracy", "metrics", None), ("b2ilc/ave_f1", "b2ilc", None),
                              ("right_labels/b2ilc/weighted_f1", "b2ilc", "right_labels")]:
        metric = name.rsplit("/", 1)[-1]
        values = [(report["label_sets"][scores] if scores else report)[key][metric] for report in reports]
        entry = summary["metrics"][name]
        assert entry["values"] == values
        assert entry["mean"] == pytest.approx(statistics.mean(values), rel=1e-12)
        assert entry["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)  # ddof = 1


def test_summary_file_round_trip_and_one_seed(tmp_path):
    dirs = write_runs(tmp_path, [0], b2ilc=False, broadcast=True)
    summary = summarize(dirs, [0], VARIANTS)
    assert set(summary["metrics"]) == set(SCALAR_METRICS) | {f"broadcast/{name}" for name in SCALAR_METRICS}
    assert math.isnan(summary["metrics"]["accuracy"]["std"])
    path = write_summary(tmp_path, summary)
    assert path.name == "summary.json" and [p.name for p in tmp_path.iterdir() if p.is_file()] == ["summary.json"]
    stored = json.loads(path.read_text())  # strict JSON: an undefined std is null
    assert stored["metrics"]["accuracy"]["std"] is None and set(stored) == {"seeds", "best_epochs", "metrics"}
    again = read_summary(tmp_path)
    assert math.isnan(again["metrics"]["accuracy"]["std"])
    assert again["metrics"]["accuracy"]["mean"] == summary["metrics"]["accuracy"]["mean"]


def test_an_undefined_value_makes_the_summary_undefined(tmp_path):
    dirs = write_runs(tmp_path, [0, 1])
    report = json.loads((dirs[1] / "test_metrics.json").read_text())
    report["metrics"]["ave_precision"] = None  # nan in the run: no event prediction
    write_json(dirs[1] / "test_metrics.json", report)
    summary = summarize(dirs, [0, 1], VARIANTS)
    entry = summary["metrics"]["ave_precision"]
    assert math.isnan(entry["mean"]) and math.isnan(entry["std"]) and math.isnan(entry["values"][1])
    assert not math.isnan(summary["metrics"]["accuracy"]["std"])


def test_refusals(tmp_path):
    dirs = write_runs(tmp_path / "a", [0]) + write_runs(tmp_path / "b", [1], b2ilc=False)
    with pytest.raises(TrainingError, match="seed-1: its test metrics differ from .*seed-0's.*b2ilc/accuracy"):
        summarize(dirs, [0, 1], VARIANTS)
    with pytest.raises(ValueError, match="2 run directories for 1 seeds"):
        summarize(dirs, [0], VARIANTS)
    (tmp_path / "c").mkdir()
    with pytest.raises(TrainingError, match="c: no test_metrics.json"):
        summarize([tmp_path / "c"], [0], VARIANTS)
    with pytest.raises(TrainingError, match="^--seeds must be at least 1, got 0$"):
        sweep_seeds(0, 0)


def test_scalar_test_metrics_names():
    values = scalar_test_metrics(fake_report(0, b2ilc=True, broadcast=True), VARIANTS)
    assert list(values)[:2] == ["accuracy", "weighted_f1"] and "broadcast/ave_f1" in values and len(values) == 24


def test_format_mean_std():
    assert format_mean_std(0.77123, 0.01234) == "0.7712 ± 0.0123"
    assert format_mean_std(0.77123, float("nan")) == "0.7712"
    assert format_mean_std(0.77123, None, digits=2) == "0.77"
    assert format_mean_std(None, None) == "nan" and format_mean_std(float("nan"), 0.1) == "nan"


def test_metric_labels():
    assert metric_label("accuracy") == "accuracy" and metric_label("b2ilc/ave_f1") == "AVE F1 (b2ilc)"
    assert metric_label("right_labels/broadcast/non_ave_recall") == "non-AVE recall (right_labels/broadcast)"
