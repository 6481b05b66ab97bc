"""The run directory (docs/training.md#run-directory) and its atomic writes.

``config.json`` (the resolved config, versions, the machine), ``metrics.jsonl`` (one line per epoch),
``best.pt`` / ``last.pt`` (checkpoints of plain tensors and containers, loadable with
``torch.load(weights_only=True)``) and ``test_metrics.json``. Every file is written to a temporary name in the
same directory and moved in place with `os.replace`, so a killed run leaves either the old or the new file, never
half of one.
"""
from __future__ import annotations

import json
import math
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from avel_fast import __version__
from avel_fast.atomic import atomic_write
from avel_fast.train.config import TrainConfig
from avel_fast.train.errors import TrainingError

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


MODEL_KEYS = ("model", "feature_stats", "epoch", "val_accuracy", "config")
"""What every checkpoint holds (``best.pt``); ``last.pt`` adds `RESUME_KEYS`."""
RESUME_KEYS = (*MODEL_KEYS, "optimizer", "rng", "best_accuracy", "best_epoch")


def _first_sentence(err: BaseException, limit: int = 120) -> str:
    text = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_checkpoint(path: Path, device: str | torch.device = "cpu", keys: tuple[str, ...] = MODEL_KEYS) -> dict:
    """The checkpoint at `path`; `TrainingError` naming the file when it is missing, unreadable (truncated,
    corrupt, not written by ``torch.save``) or lacks one of `keys`."""
    if not path.is_file():
        raise TrainingError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        problem = _first_sentence(err)
        raise TrainingError(f"{path}: not a readable checkpoint, truncated or corrupt ({problem})") from None
    missing = [key for key in keys if key not in checkpoint] if isinstance(checkpoint, dict) else list(keys)
    if missing:
        raise TrainingError(f"{path}: not a checkpoint written by avel-fast train (no {', '.join(missing)})")
    return checkpoint


def load_model_state(model: torch.nn.Module, checkpoint: dict, path: Path, config: TrainConfig) -> None:
    """Load the checkpoint's weights into `model`; `TrainingError` naming the file, both models and the
    mismatch when the weights belong to another model or width."""
    stored, expected = checkpoint["model"], model.state_dict()
    if not isinstance(stored, dict):
        raise TrainingError(f"{path}: 'model' holds a {type(stored).__name__}, not a state dict")
    missing = [name for name in expected if name not in stored]
    unexpected = [name for name in stored if name not in expected]
    reshaped = [name for name in expected if name in stored and stored[name].shape != expected[name].shape]
    if missing or unexpected or reshaped:
        origin = checkpoint["config"] if isinstance(checkpoint["config"], dict) else {}
        origin = {**origin, **(origin.get("options") or {})}
        counts = ", ".join(
            f"{len(names)} {what}" for names, what in
            ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if names
        )
        example = (
            f"{reshaped[0]} is {tuple(stored[reshaped[0]].shape)} there, {tuple(expected[reshaped[0]].shape)} here"
            if reshaped else f"e.g. {(missing or unexpected)[0]}"
        )
        raise TrainingError(
            f"{path}: weights of {origin.get('model', '?')} with dim {origin.get('dim', '?')} do not fit this "
            f"run's {config.model} with dim {config.flat().get('dim', '?')} (tensors: {counts}; {example})"
        )
    model.load_state_dict(stored)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, `platform.processor` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(config: TrainConfig) -> dict:
    """What else decides the exact numbers of a run: CPU model, torch threads, the GPU when used
    (docs/training.md#determinism)."""
    device = torch.device(config.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu": cpu_model(), "threads": torch.get_num_threads(), "gpu": gpu}


def versions() -> dict:
    return {
        "avel_fast": __version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(),
    }  # fmt: skip


def write_config(run_dir: Path, config: TrainConfig) -> None:
    write_json(
        run_dir / CONFIG_FILE, {"config": config.to_dict(), "versions": versions(), "machine": machine(config)}
    )


def read_config(run_dir: Path, device: str | None = None) -> TrainConfig:
    """The config of a run directory, on `device` when given; `TrainingError` when `run_dir` is not a run."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise TrainingError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    try:
        values = json.loads(path.read_text())["config"]
        values = {**values, "device": device or values["device"]}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise TrainingError(f"{path}: not a config written by avel-fast train ({err})") from None
    try:
        return TrainConfig.from_dict(values)
    except (TrainingError, TypeError) as err:
        raise TrainingError(f"{path}: the stored config is refused: {err}") from None


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to train into a directory that already holds files (use --resume to continue a run), except those
    of a run stopped before its first ``last.pt`` (``config.json``, ``metrics.jsonl``, ``best.pt``), which has
    nothing to resume and is trained again from the start."""
    restartable = {CONFIG_FILE, METRICS_FILE, BEST_FILE}
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir() if not p.name.startswith(".")} - restartable:
        raise TrainingError(f"--out {run_dir}: exists and is not empty (pass --resume to continue that run)")


def check_writable(run_dir: Path) -> None:
    """`TrainingError` when `run_dir` cannot be created or written: a file in its path, or a directory that
    refuses a new file (permissions, read-only file system). Writes nothing that stays."""
    base = run_dir.absolute()
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        where = "" if base == run_dir.absolute() else f"{base} "
        raise TrainingError(f"--out {run_dir}: {where}is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as err:
        raise TrainingError(f"--out {run_dir}: cannot write in {base} ({err.strerror or err})") from None


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
