"""The training loop, the same for every family, SEL and WSEL (docs/training.md#engine). It knows no family by
name: `fit` is given the family object and calls its hooks (`avel_fast.train.families.base.ModelFamily`).

Per iteration: a batch of the resident training set in the order seeded by ``(seed, epoch)``, the learning rate
of the family's schedule, the optimizer of the config and the family's objective. After each epoch: the family's
metrics on validation (selection on their ``accuracy``), ``metrics.jsonl``, ``best.pt`` when the validation
accuracy improves (strictly: the earliest best epoch wins) and ``last.pt``. At the end: the family's test report
of the best-on-validation checkpoint in ``test_metrics.json`` with its raw scores in ``test_predictions.h5``
(docs/metrics.md#saved-predictions), then what the family writes after it (`ModelFamily.finish`). Test never takes
part in selection.

Determinism (docs/training.md#determinism): torch, numpy and Python are seeded with the run seed before the
model is built and PyTorch's deterministic algorithms are switched on; ``last.pt`` holds the model, optimizer and
torch RNG states (of every rank) after each epoch, so a resumed run continues exactly where a killed run stopped
(the only random state the loop consumes is torch's, for dropout).

Under ``torchrun`` the same loop runs data-parallel (`avel_fast.train.distributed`). A training step reads
nothing back from the device: the batch order is drawn on the host and copied once per epoch, the losses and
accuracies add up on the device and are read every `PROGRESS_EVERY` steps and at the end of the epoch
(docs/distributed.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avel_fast.metrics import SCALAR_METRICS
from avel_fast.predictions import predictions_file, write_predictions
from avel_fast.train.config import TrainConfig
from avel_fast.train.distributed import DistributedContext, distributed_context, localized
from avel_fast.train.errors import TrainingError
from avel_fast.train.failures import DivergenceWatch
from avel_fast.train.progress import TrainProgress
from avel_fast.train.run_dir import (
    BEST_FILE,
    LAST_FILE,
    RESUME_KEYS,
    TEST_METRICS_FILE,
    append_metrics,
    check_new_run_dir,
    check_writable,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
    truncate_metrics,
    write_config,
    write_json,
)
from avel_fast.train.runtime import configure_precision, make_deterministic, seed_everything

PROGRESS_EVERY = 10
"""Training steps between two readings of the running loss and accuracy (each reading waits for the device)."""


@dataclass(frozen=True)
class TrainBatch:
    """One rank's share of a global training batch: the dataset's batch of the share's rows (its fields read as
    this object's, e.g. ``audio``), and on the host the dataset rows of the whole global batch with the positions
    of the share in it."""

    rows: object  # the dataset's batch (`avel_fast.data.Batch` or the family's own row type)
    global_index: np.ndarray  # int64 [B]
    positions: slice

    def __getattr__(self, name: str):
        return getattr(self.rows, name)


@dataclass(frozen=True)
class StepOutput:
    """The loss of one training step and the segment logits and labels its accuracy is measured on."""

    loss: torch.Tensor
    logits: torch.Tensor  # [M, T, C]
    labels: torch.Tensor  # int64 [M, T]


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay), Adam or SGD with Nesterov momentum 0.9 (L2 weight decay)."""
    params, lr, decay = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr, weight_decay=decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr, weight_decay=decay)
    return torch.optim.SGD(params, lr, momentum=0.9, nesterov=True, weight_decay=decay)


def scalar_metrics(metrics: dict) -> dict:
    return {name: metrics[name] for name in SCALAR_METRICS if name in metrics}


def fitted_config(family, config: TrainConfig, train) -> TrainConfig:
    """`config` with the values its training data fixes (`ModelFamily.data_values`: the audio width); data
    that disagrees with a value already stored (a resumed or evaluated run) is refused."""
    values = family.data_values(train)
    stored_values = config.flat()
    for name, value in values.items():
        stored = stored_values[name]
        if stored is not None and stored != value:
            raise TrainingError(
                f"the data has {name.replace('_', ' ')} {value}, but the run was trained with {stored} "
                f"({config.data or 'synthetic'})"
            )
    return config.replace(**values)


def rng_state(device: str) -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def restore_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), torch.device(device))


def trained_module(model: nn.Module, config: TrainConfig, context: DistributedContext) -> nn.Module:
    """What the training steps call: `model` (in `DistributedDataParallel` under torchrun), compiled with
    ``compile``, and with ``cuda_graphs`` compiled in torch.compile's "reduce-overhead" mode (CUDA graphs; one
    process only, `avel_fast.train.config.validate`)."""
    module = context.wrap(model)
    if config.cuda_graphs:
        return torch.compile(module, mode="reduce-overhead")
    return torch.compile(module) if config.compile else module


def on_device(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The host tensor `index` on `device`, copied from pinned memory without waiting for CUDA."""
    return index.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else index.to(device)


class EpochTrainer:
    """The training iterations of the module docstring, one epoch per `run`, on this rank's shares."""

    def __init__(
        self,
        family,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data,
        config: TrainConfig,
        progress: TrainProgress,
        context: DistributedContext | None = None,
    ) -> None:
        self.family, self.model, self.optimizer, self.data = family, model, optimizer, data
        self.config, self.progress = config, progress
        self.context = context or DistributedContext(device=config.device)
        self.schedule = family.schedule(config)
        self.steps = data.train.num_batches(config.batch_size, drop_last=family.drop_last)
        if self.steps == 0:
            raise TrainingError(
                f"--batch-size {config.batch_size} is larger than the training set ({len(data.train)} videos): "
                f"{config.model} drops the last partial batch, so an epoch would have no step"
            )
        self.objective = family.objective(trained_module(model, config, self.context), data, config)

    def learning_rate(self, epoch: int, step: int) -> float:
        return self.config.lr * self.schedule.multiplier(epoch, step, self.steps)

    def run(self, epoch: int) -> tuple[float, float, float]:
        """Train one epoch; returns the mean loss, the segment accuracy of the training forward passes (with
        replicas; in WSEL against the segment labels, for information only) and the last learning rate."""
        self.model.train()
        train, batch_size = self.data.train, self.config.batch_size
        host_order = train.order(seed=self.config.seed, epoch=epoch, device="cpu")
        order, host_order = on_device(host_order, train.device), host_order.numpy()
        totals = torch.zeros(3, dtype=torch.float64, device=train.device)
        watch, reported = DivergenceWatch(train.device), 0
        for step in range(self.steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            lr = self.learning_rate(epoch, step)
            self.step(epoch, step, lr, host_order[rows], order[rows], totals, watch)
            if (step + 1) % PROGRESS_EVERY == 0 or step + 1 == self.steps:
                loss, accuracy = self.running_figures(totals, min(rows.stop, len(train)))
                watch.check(epoch, self.family, self.config, self.context)
                self.progress.step(epoch, self.config.epochs, loss, accuracy, steps=step + 1 - reported)
                reported = step + 1
        return loss, accuracy, lr

    def step(
        self,
        epoch: int,
        step: int,
        lr: float,
        global_index: np.ndarray,
        rows: torch.Tensor,
        totals: torch.Tensor,
        watch: DivergenceWatch,
    ) -> None:
        """One optimizer step on this rank's share of the global batch (`global_index` on the host, `rows` on
        the device); adds loss·videos, correct segments and segments of the share to `totals` on the device and
        shows the loss and the updated weights to `watch`."""
        share = self.context.share(len(global_index))
        batch = TrainBatch(self.data.train.rows(rows[share.positions]), global_index, share.positions)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.config.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        output = self.objective(batch, epoch, step)
        self.optimizer.zero_grad(set_to_none=True)
        (output.loss * share.weight).backward()
        self.optimizer.step()
        watch.observe(step, output.loss, self.model.parameters())
        if share.count:  # a borrowed video (weight 0) counts nowhere
            totals[0] += output.loss.detach() * share.count
            totals[1] += (output.logits.detach().argmax(dim=-1) == output.labels).sum()
            totals[2] += output.labels.numel()

    def running_figures(self, totals: torch.Tensor, videos: int) -> tuple[float, float]:
        """Mean loss and segment accuracy of the epoch's first `videos` videos, over every rank (waits for the
        device)."""
        loss, correct, segments = self.context.all_reduce_sum(totals.clone()).tolist()
        return loss / videos, correct / segments


def _checkpoint_model(model: nn.Module, data, config: TrainConfig, epoch: int, val_accuracy: float) -> dict:
    """The model, the standardization its inputs need, and where it comes from."""
    stats = data.stats.as_dict() if data.stats is not None else None
    return {
        "model": model.state_dict(), "feature_stats": stats, "epoch": epoch, "val_accuracy": val_accuracy,
        "config": config.to_dict(),
    }  # fmt: skip


def _check_run_dir(run_dir: Path, resume: bool, checked: bool) -> None:
    """`checked`: a stage of a recipe, whose run directory the recipe has checked."""
    if resume and not (run_dir / LAST_FILE).is_file():
        raise TrainingError(f"--resume: {run_dir} has no {LAST_FILE} to continue from")
    check_writable(run_dir)
    if not resume and not checked:
        check_new_run_dir(run_dir)


def _open_run_dir(run_dir: Path, config: TrainConfig, resume: bool) -> dict | None:
    """The ``last.pt`` of a resumed run (on the CPU); a new run's directory and ``config.json``."""
    if resume:
        return load_checkpoint(run_dir / LAST_FILE, "cpu", RESUME_KEYS)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    truncate_metrics(run_dir, 0)  # a run stopped before its first last.pt starts again
    return None


def fit(
    family,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: TrainProgress | None = None,
    max_epochs_this_run: int | None = None,
    extras: dict[str, torch.Tensor] | None = None,
    checked: bool = False,
) -> dict | None:
    """Train `config` with `family` into `run_dir` (module docstring; docs/training.md#run-directory); returns the
    test report with the family's ``summaries`` (`ModelFamily.finish`), or None when stopped early.

    `resume` continues from the run's ``last.pt``; `max_epochs_this_run` stops after that many epochs of this
    call, leaving a resumable run. `extras` (per-training-row targets, `ModelFamily.load_data`) and `checked` (the
    run directory was checked by the recipe) make this call one stage of a family's recipe. Under torchrun every
    rank calls it with the same arguments and gets the report (docs/distributed.md).
    """
    run_dir = Path(run_dir)
    with distributed_context(config.device) as context:
        shown = (progress or TrainProgress()) if context.is_main else TrainProgress()
        return _fit(family, config, run_dir, context, resume, shown, max_epochs_this_run, extras, checked)


def _fit(
    family,
    config: TrainConfig,
    run_dir: Path,
    context: DistributedContext,
    resume: bool,
    progress: TrainProgress,
    max_epochs_this_run: int | None,
    extras: dict[str, torch.Tensor] | None,
    checked: bool,
) -> dict | None:
    """`fit` on this rank: rank 0 alone touches `run_dir` (`DistributedContext.on_main`); `config` is the stored
    one, `run` the one on this rank's device."""
    run = localized(config, context)
    context.on_main(lambda: _check_run_dir(run_dir, resume, checked))
    note = configure_precision(run)
    make_deterministic(run.device)
    data = family.load_data(run, extras)
    if note:
        progress.stage(note)
    config = fitted_config(family, config, data.train)
    run = localized(config, context)
    seed_everything(run.seed)
    model = family.build(run)
    optimizer = build_optimizer(run, model)
    first_epoch, best_accuracy, best_epoch = 0, float("-inf"), 0
    checkpoint = context.on_main(lambda: _open_run_dir(run_dir, config, resume))
    if checkpoint is not None:
        load_model_state(model, checkpoint, run_dir / LAST_FILE, config)
        optimizer.load_state_dict(checkpoint["optimizer"])
        rank_states = checkpoint.get("rank_rng")
        same_ranks = rank_states is not None and len(rank_states) == context.world_size
        restore_rng_state(rank_states[context.rank] if same_ranks else checkpoint["rng"], run.device)
        first_epoch, best_epoch = checkpoint["epoch"], checkpoint["best_epoch"]
        best_accuracy = checkpoint["best_accuracy"]
        if context.is_main:
            truncate_metrics(run_dir, first_epoch)
    stop = config.epochs if max_epochs_this_run is None else min(config.epochs, first_epoch + max_epochs_this_run)

    trainer = EpochTrainer(family, model, optimizer, data, run, progress, context)
    with progress:
        progress.start(trainer.steps * config.epochs, trainer.steps * first_epoch)
        for epoch in range(first_epoch, stop):
            started = time.perf_counter()
            train_loss, train_accuracy, lr = trainer.run(epoch)
            val = family.evaluate(model, data.val, run, context)
            improved = val["accuracy"] > best_accuracy
            if improved:
                best_accuracy, best_epoch = val["accuracy"], epoch + 1
            rank_states = context.all_objects(rng_state(run.device))
            if not context.is_main:
                continue
            if improved:
                save_checkpoint(run_dir / BEST_FILE, _checkpoint_model(model, data, config, epoch + 1, best_accuracy))
            record = {
                "epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_accuracy": train_accuracy,
                "val": scalar_metrics(val), "best": improved, "seconds": time.perf_counter() - started,
            }  # fmt: skip
            append_metrics(run_dir, record)
            last = {
                **_checkpoint_model(model, data, config, epoch + 1, val["accuracy"]),
                "optimizer": optimizer.state_dict(), "rng": rank_states[0],
                "best_accuracy": best_accuracy, "best_epoch": best_epoch,
            }  # fmt: skip
            if context.distributed:
                last["rank_rng"] = rank_states
            save_checkpoint(run_dir / LAST_FILE, last)
            progress.epoch_done(record)
    if stop < config.epochs:
        return None
    best = context.on_main(lambda: load_checkpoint(run_dir / BEST_FILE, "cpu"))
    report, scores = family.test_report(model, data, run, best, context)
    if not context.is_main:
        return report
    if scores is not None:
        write_predictions(run_dir / predictions_file("test"), data.test_index, scores.argmax(dim=-1), scores)
    write_json(run_dir / TEST_METRICS_FILE, report)
    return {**report, "summaries": family.finish(run_dir, model, data, run)}
