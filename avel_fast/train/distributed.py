"""Data-parallel training over processes started by ``torchrun`` (docs/distributed.md).

Every process (rank) holds the whole resident dataset and a replica of the model wrapped in
`DistributedDataParallel` (gloo on the CPU, NCCL on CUDA, one GPU per process: ``cuda:LOCAL_RANK``). Each global
batch of ``--batch-size`` videos, in the order a single process uses, is cut into contiguous shares, one per rank
(`DistributedContext.share`); the loss of a share is weighted by its size so that DDP's average of the gradients
is the single-process gradient of every loss that is a mean over videos. Evaluation splits the rows the same way
and gathers the scores in order. Rank 0 alone reads and writes the run directory and reports progress; the
checkpoints it reads reach the others by broadcast (`DistributedContext.on_main`).

Without torchrun's environment (``WORLD_SIZE`` unset or 1) the context is a single process and nothing here
communicates.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from avel_fast.train.errors import TrainingError

if TYPE_CHECKING:
    from avel_fast.train.config import TrainConfig

TIMEOUT_ENV = "AVEL_FAST_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300
"""Seconds a collective may wait for the other ranks before the run fails (a rank that died or hangs)."""

_NO_BUFFER_SYNC = {
    "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else "broadcast_buffers": False
}  # fmt: skip
"""DDP's switch for the buffer broadcast before every forward (renamed in recent torch), off: the models' buffers
are constants; the one model with BatchNorm (the pretext network's small CNN) is refused under torchrun, and
`DistributedContext.wrap` would make it synchronous on CUDA."""


@dataclass(frozen=True)
class Share:
    """One rank's part of a global batch: `positions` in the batch and the weight of its loss.

    `count` is the number of videos it trains on; a rank whose share would be empty (a last batch with fewer
    videos than ranks) runs on the batch's first video with weight 0, so every rank still takes part in the
    gradient reduction.
    """

    positions: slice
    count: int
    weight: float


@dataclass(frozen=True)
class DistributedContext:
    """The rank of this process, the number of processes and this process's device."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def share(self, batch_size: int) -> Share:
        """This rank's contiguous share of a global batch of `batch_size` videos (sizes differ by at most one).

        Weight ``count · world_size / batch_size``: DDP averages gradients over the ranks, so the reduced
        gradient is the one of ``Σ_r count_r / batch_size · loss_r``, the global batch mean.
        """
        start = self.rank * batch_size // self.world_size
        stop = (self.rank + 1) * batch_size // self.world_size
        if start == stop:
            return Share(slice(0, 1), 0, 0.0)
        return Share(slice(start, stop), stop - start, (stop - start) * self.world_size / batch_size)

    def wrap(self, model: nn.Module) -> nn.Module:
        """`model` in `DistributedDataParallel` when there are several ranks (BatchNorm made synchronous on
        CUDA); `model` itself for a single process."""
        if not self.distributed:
            return model
        if torch.device(self.device).type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[torch.device(self.device)], **_NO_BUFFER_SYNC)
        return DistributedDataParallel(model, **_NO_BUFFER_SYNC)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over the ranks (in place; no copy for a single process)."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def row_block(self, rows: int, device: torch.device) -> torch.Tensor:
        """The rows this rank evaluates, on `device`: a contiguous block of ``⌈rows / world_size⌉`` indices, the
        last ones repeating row ``rows - 1`` when the blocks overrun (`gather_rows` drops them)."""
        block = -(-rows // self.world_size)
        return torch.arange(self.rank * block, (self.rank + 1) * block, device=device).clamp_(max=rows - 1)

    def gather_rows(self, local: torch.Tensor, rows: int) -> torch.Tensor:
        """The blocks of `row_block` from every rank, in rank order: the ``rows`` rows of the whole split."""
        if not self.distributed:
            return local[:rows]
        blocks = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(blocks, local.contiguous())
        return torch.cat(blocks)[:rows]

    def on_main(self, function: Callable[[], object]) -> object:
        """`function()` run on rank 0 alone; its result reaches every rank (CPU tensors and plain objects).

        A `TrainingError` raised by it is raised on every rank, with the same message.
        """
        if not self.distributed:
            return function()
        outcome: list = [None]
        if self.is_main:
            try:
                outcome = [("ok", function())]
            except TrainingError as err:
                outcome = [("error", str(err))]
        dist.broadcast_object_list(outcome, src=0)
        status, value = outcome[0]
        if status == "error":
            raise TrainingError(value)
        return value

    def all_objects(self, value: object) -> list:
        """`value` of every rank, in rank order (plain objects, CPU tensors)."""
        if not self.distributed:
            return [value]
        values: list = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """False in the processes torchrun started with ``RANK`` > 0 (they print nothing); usable before
    `distributed_context` has set the process group up."""
    return int(os.environ.get("RANK", "0")) == 0


PEER_LOST = ("Connection reset by peer", "Connection closed by peer")
"""What gloo says when a peer process has gone (killed, or stopped by its own error)."""


class JobStopped(RuntimeError):
    """SIGTERM under torchrun, which sends it to every process when one fails."""


def _stop(signum: int, frame: object) -> None:
    raise JobStopped("this process got SIGTERM, which torchrun sends to all when one fails")


def peer_failure(err: BaseException) -> bool:
    """Whether `err`, raised under torchrun, says that another rank has gone or stopped answering."""
    if not launched_by_torchrun():
        return False
    lost = isinstance(err, RuntimeError) and any(marker in str(err) for marker in PEER_LOST)
    return lost or isinstance(err, (dist.DistError, JobStopped))


def resume_command(model: str, run_dir: object) -> str:
    """The command that resumes the run in `run_dir`: under torchrun with the job's node and process counts."""
    launcher = "avel-fast"
    if launched_by_torchrun():
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        nodes = int(os.environ["WORLD_SIZE"]) // per_node
        launcher = f"torchrun{f' --nnodes={nodes}' if nodes > 1 else ''} --nproc-per-node={per_node} -m avel_fast"
    return f"{launcher} train {model} --resume --out {run_dir}"


def _timeout() -> timedelta:
    value = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise TrainingError(f"{TIMEOUT_ENV}={value!r}: expected a positive number of seconds")
    return timedelta(seconds=seconds)


@contextlib.contextmanager
def distributed_context(device: str) -> Iterator[DistributedContext]:
    """The context of this process for a run on `device`: under torchrun the process group (set up here unless
    the caller did, and then torn down here after a run that ended normally), ``cuda:LOCAL_RANK`` for a CUDA
    `device`, and SIGTERM raising `JobStopped` (ignored once an error is on its way out)."""
    if not launched_by_torchrun():
        yield DistributedContext(device=device)
        return
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=_timeout())
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)
    except BaseException:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # failing already: let the error line out before torchrun's kill
        raise
    signal.signal(signal.SIGTERM, previous)
    if owner:  # not after an error: a peer that died could keep the teardown waiting
        dist.barrier()  # rank 0 may still be writing the run directory: tear the group down together
        dist.destroy_process_group()


def localized(config: TrainConfig, context: DistributedContext) -> TrainConfig:
    """`config` on this rank's device (the stored config keeps the device the user asked for)."""
    return config if config.device == context.device else dataclasses.replace(config, device=context.device)
