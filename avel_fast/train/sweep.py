"""Several seeds of one configuration: their run directories and the summary of their test metrics
(docs/metrics.md#seeds).

A sweep directory (`avel_fast.train.seeds.train_seeds`, ``avel-fast train --seeds``) holds one run directory
per seed, ``seed-<k>/``, and ``summary.json``::

    {"seeds": [...], "best_epochs": [...], "metrics": {name: {"mean": m, "std": s, "values": [...]}}}

with one entry per scalar test metric of the runs (`scalar_test_metrics`, over the family's metric variants,
`ModelFamily.metric_variants`). ``std`` is the sample standard
deviation (ddof = 1): undefined for one seed, so ``nan`` in Python and ``null`` in the file. A metric that is
``nan`` in one run (e.g. a precision with no prediction of its kind) makes its mean and std ``nan``: nothing is
left out silently.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avel_fast.metrics import SCALAR_METRICS
from avel_fast.train.errors import TrainingError
from avel_fast.train.run_dir import TEST_METRICS_FILE, write_json

SUMMARY_FILE = "summary.json"
LABEL_SETS_KEY = "label_sets"
"""Key of ``test_metrics.json`` holding the scores against other label sets, ``{name: {variant key: metrics}}``;
their names in a summary are prefixed ``<name>/`` (``right_labels/accuracy``, ``right_labels/b2ilc/accuracy``)."""


def seed_dir(sweep_dir: str | Path, seed: int) -> Path:
    """The run directory of `seed` in a sweep directory."""
    return Path(sweep_dir) / f"seed-{seed}"


def sweep_seeds(seed: int, num_seeds: int) -> list[int]:
    """The seeds ``seed .. seed + num_seeds - 1`` of ``--seeds num_seeds``."""
    if num_seeds < 1:
        raise TrainingError(f"--seeds must be at least 1, got {num_seeds}")
    return list(range(seed, seed + num_seeds))


def _value(value) -> float:
    return float("nan") if value is None else float(value)


def scalar_test_metrics(report: dict, variants: dict[str, str]) -> dict[str, float]:
    """Every scalar metric of a ``test_metrics.json`` report by summary name: ``accuracy`` (the plain
    protocol), ``b2ilc/accuracy``, ``broadcast/accuracy``, ``<label set>/accuracy``, ... (JSON nulls as nan;
    a family with other metrics, e.g. the pretext network's target accuracy, has only those it reports).
    `variants`: the report keys holding a metrics dict and their prefix in a summary (`ModelFamily.metric_variants`)."""
    values = {}
    sources = [("", report), *((f"{name}/", scores) for name, scores in report.get(LABEL_SETS_KEY, {}).items())]
    for prefix, scores in sources:
        for key, variant in variants.items():
            if key in scores:
                metrics = scores[key]
                values.update({
                    f"{prefix}{variant}{name}": _value(metrics[name]) for name in SCALAR_METRICS if name in metrics
                })
    return values


def report_columns(report: dict, variants: dict[str, str]) -> dict[str, dict[str, float]]:
    """The scalar metrics of a ``test_metrics.json`` report by table column: ``test``, ``test b2ilc``, ``test
    broadcast``, ``test right_labels``, ``test right_labels/b2ilc``... (the summary names without the metric)."""
    columns: dict[str, dict[str, float]] = {}
    for name, value in scalar_test_metrics(report, variants).items():
        prefix, _, metric = name.rpartition("/")
        columns.setdefault(f"test {prefix}" if prefix else "test", {})[metric] = value
    return columns


def read_test_report(run_dir: str | Path) -> dict:
    """The ``test_metrics.json`` of a run; `TrainingError` when the run has none (it did not finish)."""
    path = Path(run_dir) / TEST_METRICS_FILE
    if not path.is_file():
        raise TrainingError(f"{run_dir}: no {TEST_METRICS_FILE} (the run has not finished)")
    return _read_json(path)


def _read_json(path: Path) -> dict:
    """The JSON object in `path`; `TrainingError` naming the file when it is not one."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrainingError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(value, dict):
        raise TrainingError(f"{path}: expected a JSON object")
    return value


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; nan for one value)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def summarize(run_dirs: Sequence[str | Path], seeds: Sequence[int], variants: dict[str, str]) -> dict:
    """The summary (module docstring) of the finished runs `run_dirs` of `seeds`, in that order (`variants` as in
    `scalar_test_metrics`)."""
    if len(run_dirs) != len(seeds) or not run_dirs:
        raise ValueError(f"{len(run_dirs)} run directories for {len(seeds)} seeds: expected one per seed, at least 1")
    reports = [read_test_report(run_dir) for run_dir in run_dirs]
    per_run = [scalar_test_metrics(report, variants) for report in reports]
    for run_dir, values in zip(run_dirs, per_run):
        if values.keys() != per_run[0].keys():
            differ = sorted(values.keys() ^ per_run[0].keys())
            raise TrainingError(f"{run_dir}: its test metrics differ from {run_dirs[0]}'s ({', '.join(differ)})")
    metrics = {}
    for name in per_run[0]:
        values = [values[name] for values in per_run]
        mean, std = mean_std(values)
        metrics[name] = {"mean": mean, "std": std, "values": values}
    return {"seeds": list(seeds), "best_epochs": [report["epoch"] for report in reports], "metrics": metrics}


def write_summary(sweep_dir: str | Path, summary: dict) -> Path:
    """Write ``summary.json`` atomically into `sweep_dir` (nan as null); returns its path."""
    path = Path(sweep_dir) / SUMMARY_FILE
    write_json(path, summary)
    return path


def read_summary(sweep_dir: str | Path) -> dict:
    """The ``summary.json`` of a sweep directory, nulls back to nan."""
    summary = _read_json(Path(sweep_dir) / SUMMARY_FILE)
    for entry in summary["metrics"].values():
        entry["mean"], entry["std"] = _value(entry["mean"]), _value(entry["std"])
        entry["values"] = [_value(value) for value in entry["values"]]
    return summary


def metric_label(name: str) -> str:
    """How tables label a summary metric name: ``b2ilc/ave_f1`` -> ``AVE F1 (b2ilc)``."""
    prefix, _, metric = name.rpartition("/")
    return f"{SCALAR_METRICS[metric]} ({prefix})" if prefix else SCALAR_METRICS[metric]


def format_mean_std(mean: float | None, std: float | None, digits: int = 4) -> str:
    """``"0.7712 ± 0.0123"``; the mean alone when the std is undefined (one seed); ``"nan"`` for no mean."""
    mean, std = _value(mean), _value(std)
    if math.isnan(mean):
        return "nan"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
