"""A run that cannot go on: divergence, out of memory, a full disk, a lost torchrun process
(docs/training.md#failures).

Each ends in a `RunFailed`, one line saying what happened, what to change and what is left of the run directory:
resumable from its ``last.pt`` (written atomically, so the last finished epoch), or removed when no epoch
finished (`settled_on_failure`). Divergence is watched on the device (`DivergenceWatch`), so a training step
still reads nothing back.
"""
from __future__ import annotations

import contextlib
import errno
import math
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from avel_fast.train.config import TrainConfig
from avel_fast.train.errors import TrainingError
from avel_fast.train.distributed import PEER_LOST, DistributedContext, is_main_process, peer_failure, resume_command
from avel_fast.train.run_dir import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    METRICS_FILE,
    RESUME_KEYS,
    load_checkpoint,
)

NO_STEP = math.inf
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class RunFailed(TrainingError):
    """A run stopped by `cause`; `advice` says what to change, `state` what is left of the run directory."""

    def __init__(self, cause: str, advice: str, state: str = "") -> None:
        self.cause, self.advice, self.state = cause, advice, state
        super().__init__("; ".join(part for part in (cause, advice, state) if part))


class DivergenceWatch:
    """The first step of an epoch whose loss or updated weights are not finite (a non-finite gradient makes the
    weights so; weights beyond ~1e19 overflow their float32 2-norm and count too), kept on the device as ``[step,
    loss, sum of the weights' 2-norms]`` (step ∞ while all are finite) and read with the running figures
    (`check`)."""

    def __init__(self, device: torch.device) -> None:
        self.state = torch.full((3,), NO_STEP, dtype=torch.float64, device=device)

    @torch.no_grad()
    def observe(self, step: int, loss: torch.Tensor, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Record `step` if it is the first whose `loss` or `parameters` (after the optimizer step) are not
        finite."""
        weights = torch.stack(torch._foreach_norm(list(parameters), 2)).sum()  # one fused kernel on CUDA
        values = torch.stack((loss.double().reshape(()), weights.double()))
        first = values.isfinite().all().logical_not() & self.state[0].isinf()
        self.state = torch.where(first, torch.cat((values.new_full((1,), step), values)), self.state)

    def check(self, epoch: int, family, config: TrainConfig, context: DistributedContext) -> None:
        """`RunFailed` naming the first non-finite step of `epoch` (0-based) over every rank (waits for the
        device), with the options of `config` (`family`'s too) to lower."""
        states = context.gather_rows(self.state.view(1, 3), context.world_size).tolist()
        step, loss, weights = min(states, key=lambda state: state[0])
        if step == NO_STEP:
            return
        updated = "" if math.isfinite(weights) or not math.isfinite(loss) else f", weight norm {weights:g} after it"
        names = ("lr", *family.failure_options(config, "divergence"))
        raise RunFailed(
            f"training diverged at epoch {epoch + 1}, step {int(step) + 1} (loss {loss:.4g}{updated})",
            f"train again with a lower {lower_options(config, names)}",
        )


def lower_options(config: TrainConfig, names: tuple[str, ...]) -> str:
    """The options `names` of `config` with their values, as advice: ``--lr (now 0.001) or --dim (now 768)``."""
    values = config.flat()
    return " or ".join(f"--{name.replace('_', '-')} (now {values[name]:g})" for name in names)


def resource_failure(err: BaseException, family, config: TrainConfig) -> RunFailed | None:
    """`err` as a `RunFailed` when it is out of memory, a full disk or a lost torchrun process; else None."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in text
    ):
        names = ("batch_size", *family.failure_options(config, "memory"))
        return RunFailed(f"out of memory on {config.device}", f"train with a smaller {lower_options(config, names)}")
    if isinstance(err, OSError) and err.errno in FULL_DISK:
        return RunFailed(f"cannot write the run directory: {err.strerror}", "free space on its disk")
    if peer_failure(err):
        detail = next((marker for marker in PEER_LOST if marker in text), text[:120])
        return RunFailed(f"a process of the torchrun job stopped ({detail})", "torchrun's report below names it")
    return None


def resume_hint(run_dir: Path, family, config: TrainConfig) -> tuple[int | None, str] | None:
    """What ``--resume`` continues in `run_dir`: the epoch its ``last.pt`` holds (None for a label-refinement
    pipeline past its first stage) and the hint naming the command; None when there is nothing to resume."""
    command = resume_command(config.model, run_dir)
    if (run_dir / LAST_FILE).is_file():
        saved = load_checkpoint(run_dir / LAST_FILE, keys=RESUME_KEYS)["epoch"]
        return saved, f"{run_dir / LAST_FILE} holds epoch {saved}: resume with {command}"
    return (None, f"resume with {command}") if family.resumable(run_dir) else None


def run_dir_state(run_dir: Path, family, config: TrainConfig, created: bool) -> str:
    """What a failed run leaves: its resume hint, or nothing (the run directory, or the files this run wrote when
    the directory was there before, removed)."""
    hint = resume_hint(run_dir, family, config)
    if hint is not None:
        return hint[1]
    if not run_dir.exists():
        return "no epoch had finished: nothing was written"
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return f"no epoch had finished: removed {run_dir}"
    for name in (CONFIG_FILE, METRICS_FILE, BEST_FILE):
        (run_dir / name).unlink(missing_ok=True)
    return f"no epoch had finished: removed the run's files from {run_dir}"


@contextlib.contextmanager
def settled_on_failure(run_dir: Path, family, config: TrainConfig) -> Iterator[None]:
    """Turn a divergence, out of memory, a full disk or a lost torchrun process inside the block into a
    `RunFailed` that says what is left of `run_dir` (rank 0 alone looks at it and removes it)."""
    created = not run_dir.exists()
    try:
        yield
    except (RunFailed, RuntimeError, MemoryError, OSError) as err:
        # a RunFailed: of a stage of the family's recipe too
        failure = err if isinstance(err, RunFailed) else resource_failure(err, family, config)
        if failure is None:
            raise
        if is_main_process():
            failure = RunFailed(failure.cause, failure.advice, run_dir_state(run_dir, family, config, created))
        raise failure from None
