"""The run directory (docs/training.md#run-directory) and its atomic writes.

``config.json`` (the resolved config, versions), ``metrics.jsonl`` (one line per epoch), ``best.pt`` /
``last.pt`` (checkpoints of plain tensors and containers, loadable with ``torch.load(weights_only=True)``)
and ``test_metrics.json``. Every file is written to a temporary name in the same directory and moved in
place with `os.replace`, so a killed run leaves either the old or the new file, never half of one.
"""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import numpy as np
import torch

from avel_fast.atomic import atomic_write
from avel_fast.train.config import TrainConfig, TrainingError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
TEST_METRICS_FILE = "test_metrics.json"


def json_safe(value):
    """`value` with numpy/torch scalars and arrays as Python lists/numbers and NaN/inf as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: Path, value) -> None:
    text = json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode()))


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda stream: torch.save(state, stream))


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    if not path.is_file():
        raise TrainingError(f"{path}: no such checkpoint")
    return torch.load(path, map_location=device, weights_only=True)


def versions() -> dict:
    from avel_fast import __version__

    return {
        "avel_fast": __version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(),
    }  # fmt: skip


def write_config(run_dir: Path, config: TrainConfig) -> None:
    write_json(run_dir / CONFIG_FILE, {"config": config.to_dict(), "versions": versions()})


def read_config(run_dir: Path, device: str | None = None) -> TrainConfig:
    """The config of a run directory, on `device` when given; `TrainingError` when `run_dir` is not a run."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise TrainingError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    try:
        values = json.loads(path.read_text())["config"]
        return TrainConfig.from_dict({**values, "device": device or values["device"]})
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise TrainingError(f"{path}: not a config written by avel-fast train ({err})") from None


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to train into a directory that already holds files (use --resume to continue a run), except a
    lone ``config.json``: a run stopped before its first epoch ended, which has nothing to resume."""
    if run_dir.exists() and (not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - {CONFIG_FILE}):
        raise TrainingError(f"--out {run_dir}: exists and is not empty (pass --resume to continue that run)")


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / METRICS_FILE, "a") as stream:
        stream.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of ``metrics.jsonl``; a last line cut short by a killed run is left out."""
    path = Path(run_dir) / METRICS_FILE
    lines = [line for line in path.read_text().splitlines() if line] if path.is_file() else []
    records = [json.loads(line) for line in lines[:-1]]
    try:
        records.extend(json.loads(line) for line in lines[-1:])
    except json.JSONDecodeError:
        pass
    return records


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Keep the lines of the first `epochs_done` epochs (a killed run may have logged an epoch it did not save)."""
    kept = [record for record in read_metrics(run_dir) if record["epoch"] <= epochs_done]
    text = "".join(json.dumps(record, allow_nan=False) + "\n" for record in kept)
    atomic_write(run_dir / METRICS_FILE, lambda stream: stream.write(text.encode()))
