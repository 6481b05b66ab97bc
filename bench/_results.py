"""The one results file of a `gpu_run.py` run (``bench/results/<gpu>.json``), rewritten whole and atomically
after every row, so a run cut short still leaves everything it measured (docs/fast-path.md#gpu-run).

Layout: pytest-benchmark's (``machine_info``, ``benchmarks``: what `speedup_table.py` reads) plus ``rows`` (every
test or check with its stage, outcome and seconds), ``smoke``, ``paper_epoch``, ``stages`` and ``estimate``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from avel_fast.atomic import atomic_write

RESULTS_ENV = "AVEL_FAST_RESULTS"
"""The results file a `gpu_run.py` stage adds to (set by the driver for its subprocesses)."""


def update(path: str | Path, change: Callable[[dict], None]) -> dict:
    """Read the results at `path` (empty when absent), apply `change` in place and write them back."""
    path = Path(path)
    results = json.loads(path.read_text()) if path.is_file() else {}
    change(results)
    text = (json.dumps(results, indent=2) + "\n").encode()
    atomic_write(path, lambda stream: stream.write(text))
    return results


def results_path() -> Path | None:
    value = os.environ.get(RESULTS_ENV)
    return Path(value) if value else None
