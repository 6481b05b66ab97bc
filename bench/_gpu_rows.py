"""pytest plugin of `gpu_run.py` (``-p _gpu_rows``; docs/fast-path.md#gpu-run): runs the selected benchmarks in
the order the driver gives, skips those already in the results and, once the stage's deadline has passed, the
rest; after every test adds its row (and its benchmark, as pytest-benchmark would write it) to the results.

Environment: ``AVEL_FAST_RESULTS`` (the results file), ``AVEL_FAST_STAGE`` (the stage name),
``AVEL_FAST_DEADLINE`` (Unix time after which no test starts), ``AVEL_FAST_ORDER`` (JSON list of substrings:
tests run in the order of the first one their id contains, the others last, in collection order).
"""
from __future__ import annotations

import json
import os
import time

import pytest

import _results

STAGE = os.environ.get("AVEL_FAST_STAGE", "benchmarks")
DEADLINE = float(os.environ.get("AVEL_FAST_DEADLINE", "inf"))
ORDER = json.loads(os.environ.get("AVEL_FAST_ORDER", "[]"))


def _rank(nodeid: str) -> int:
    return next((index for index, pattern in enumerate(ORDER) if pattern in nodeid), len(ORDER))


def pytest_collection_modifyitems(config, items):
    path = _results.results_path()
    done = set()
    if path is not None and path.is_file():
        done = {row["test"] for row in json.loads(path.read_text()).get("rows", [])}
    kept = [item for item in items if item.nodeid not in done]
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid in done])
    items[:] = sorted(kept, key=lambda item: _rank(item.nodeid))


def pytest_runtest_setup(item):
    if time.time() >= DEADLINE:
        pytest.skip("time budget spent (bench/gpu.sh --budget-s)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _record(item, report)


def _record(item, report) -> None:
    path = _results.results_path()
    if path is None:
        return
    fixture = item.funcargs.get("benchmark") if hasattr(item, "funcargs") else None
    stats = getattr(fixture, "stats", None) if report.passed else None
    skipped = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else None
    row = {"test": item.nodeid, "stage": STAGE, "outcome": report.outcome, "seconds": round(report.duration, 3)}
    if skipped:
        row["reason"] = skipped
    elif report.failed:
        row["error"] = str(report.longrepr)[-2000:]

    def add(results: dict) -> None:
        results.setdefault("rows", []).append(row)
        if stats is not None:
            results.setdefault("benchmarks", []).append(stats.as_dict(include_data=False))

    _results.update(path, add)
