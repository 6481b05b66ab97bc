"""One training engine for every model family, SEL and WSEL (docs/training.md#engine).

Per iteration: a batch of the resident training set in the order seeded by ``(seed, epoch)``, the learning
rate of the family's schedule (`CyclicCosineSchedule` by default), the optimizer of the config (AdamW by
default) and the loss of the model's family (`ModelFamily.objective`:
segment cross-entropy in SEL, `mil_loss` on the video labels in WSEL, plus what the family adds: DPNet's
replicas, EDRNet's LSS). After each epoch: the family's metrics on validation (`ModelFamily.evaluate`, segment
metrics by default), ``metrics.jsonl``, ``best.pt`` when the validation accuracy improves (strictly: the
earliest best epoch wins) and ``last.pt``. At the end: the best-on-validation checkpoint scored on test
(`ModelFamily.test_report`: every protocol and post-processing of `avel_fast.train.evaluation`, against the
data's labels and the ``eval_labels`` file), ``test_metrics.json``, its raw scores and classes in
``test_predictions.h5`` (docs/metrics.md#saved-predictions), then what the family writes after it
(`ModelFamily.finish`: the pretext network's ``probe.json``). Test never takes part in selection.

Determinism (docs/training.md#determinism): torch, numpy and Python are seeded with the run seed before the
model is built and PyTorch's deterministic algorithms are switched on (`make_deterministic`); batch order,
replicas and SMB videos come from streams derived from the seed; ``last.pt`` holds the model, optimizer and
torch RNG states (of every rank) after each epoch, so ``resume`` continues exactly where a killed run stopped
(the only random state the loop consumes is torch's, for dropout). The same command gives the same numbers on
the same machine with the same thread count and library versions; another CPU or GPU model may round
differently.

Under ``torchrun`` the same loop runs data-parallel (`avel_fast.train.distributed`). A training step reads
nothing back from the device: the batch order is drawn on the host and copied once per epoch, the losses and
accuracies add up on the device and are read every `PROGRESS_EVERY` steps and at the end of the epoch
(docs/distributed.md).
"""
from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avel_fast.data import ResidentDataset
from avel_fast.metrics import SCALAR_METRICS, segment_metrics
from avel_fast.postprocess import b2ilc
from avel_fast.predictions import DATA_LABELS, predictions_file, write_predictions
from avel_fast.train.config import TrainConfig, TrainingError
from avel_fast.train.distributed import DistributedContext, distributed_context, localized
from avel_fast.train.failures import DivergenceWatch, resume_hint, settled_on_failure
from avel_fast.train.families import family_of
from avel_fast.train.families.base import TrainBatch, autocast
from avel_fast.train.data import FeatureStats, RunData, load_split
from avel_fast.train.evaluation import (
    check_protocol,
    label_set_name,
    protocol_classes,
    split_label_set,
    variant_metrics,
)
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
    read_config,
    save_checkpoint,
    truncate_metrics,
    write_config,
    write_json,
)

EVAL_BATCH_SIZE = 128
PROGRESS_EVERY = 10
"""Training steps between two readings of the running loss and accuracy (each reading waits for the device)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_deterministic(device: str) -> None:
    """Switch on PyTorch's deterministic algorithms for this process (a warning, not an error, for an op that
    has none); on CUDA first set ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which deterministic cuBLAS needs before its
    first call, unless the user set it. Uninitialised memory is not filled: our kernels write every output
    element, and the fill would cost a pass over each new tensor (docs/training.md#determinism)."""
    if torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def build_model(config: TrainConfig) -> nn.Module:
    """The model of `config` on its device (`ModelFamily.build`)."""
    return family_of(config.model).build(config)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay), Adam or SGD with Nesterov momentum 0.9 (L2 weight decay)."""
    params, lr, decay = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr, weight_decay=decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr, weight_decay=decay)
    return torch.optim.SGD(params, lr, momentum=0.9, nesterov=True, weight_decay=decay)


def configure_precision(config: TrainConfig) -> str | None:
    """Set TF32 matmuls on CUDA for ``tf32``; returns a note for the user when the request has no effect."""
    on_cuda = torch.device(config.device).type == "cuda"
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = config.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = config.precision == "tf32"
    if config.precision == "tf32" and not on_cuda:
        return "--precision tf32 only changes CUDA matmuls: on the CPU this run computes in fp32"
    return None


def _single(config: TrainConfig, context: DistributedContext | None) -> DistributedContext:
    return context or DistributedContext(device=config.device)


@torch.no_grad()
def predict_scores(
    model: nn.Module, dataset: ResidentDataset, config: TrainConfig, context: DistributedContext | None = None
) -> torch.Tensor:
    """Raw segment scores ``[N, T, C]`` (float32, before any softmax) of every row of `dataset`, in order; under
    torchrun each rank scores one block of rows and every rank gets all of them (`DistributedContext.row_block`)."""
    model.eval()
    context = _single(config, context)
    family, scores = family_of(config.model), []
    for index in context.row_block(len(dataset), dataset.device).split(EVAL_BATCH_SIZE):
        batch = dataset.rows(index)
        with autocast(config):
            scores.append(family.scores(model, batch.audio, batch.visual).float())
    return context.gather_rows(torch.cat(scores), len(dataset))


def predict(
    model: nn.Module, dataset: ResidentDataset, config: TrainConfig, context: DistributedContext | None = None
) -> torch.Tensor:
    """Segment predictions ``[N, T]`` (argmax of the scores) of every row of `dataset`, in order."""
    return predict_scores(model, dataset, config, context).argmax(dim=-1)


def scalar_metrics(metrics: dict) -> dict:
    return {name: metrics[name] for name in SCALAR_METRICS if name in metrics}


def fitted_config(config: TrainConfig, train: ResidentDataset) -> TrainConfig:
    """`config` with the values its training data fixes (`ModelFamily.data_values`: the audio width); data
    that disagrees with a value already stored (a resumed or evaluated run) is refused."""
    values = family_of(config.model).data_values(train)
    for name, value in values.items():
        stored = getattr(config, name)
        if stored is not None and stored != value:
            raise TrainingError(
                f"the data has {name.replace('_', ' ')} {value}, but the run was trained with {stored} "
                f"({config.data or 'synthetic'})"
            )
    return dataclasses.replace(config, **values)


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
    process only: replaying DDP's gradient hooks inside captured graphs is not something this engine checks)."""
    if config.cuda_graphs and context.distributed:
        raise TrainingError("--cuda-graphs runs on a single process: leave it out under torchrun")
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
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: RunData,
        config: TrainConfig,
        progress: TrainProgress,
        context: DistributedContext | None = None,
    ) -> None:
        self.model, self.optimizer, self.data, self.config, self.progress = model, optimizer, data, config, progress
        self.context = _single(config, context)
        family = family_of(config.model)
        self.schedule, self.drop_last = family.schedule(config), family.drop_last
        self.steps = data.train.num_batches(config.batch_size, drop_last=self.drop_last)
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
                watch.check(epoch, self.config, self.context)
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


def _checkpoint_model(model: nn.Module, data: RunData, config: TrainConfig, epoch: int, val_accuracy: float) -> dict:
    """The model, the standardization its inputs need, and where it comes from."""
    stats = data.stats.as_dict() if data.stats is not None else None
    return {
        "model": model.state_dict(), "feature_stats": stats, "epoch": epoch, "val_accuracy": val_accuracy,
        "config": config.to_dict(),
    }  # fmt: skip


def test_report(
    model: nn.Module,
    test: ResidentDataset,
    config: TrainConfig,
    best: dict,
    label_sets: dict[str, tuple] | None = None,
    context: DistributedContext | None = None,
) -> tuple[dict, torch.Tensor]:
    """Test metrics of the best-on-validation checkpoint `best` in every variant (`variant_metrics`), also
    against each label set ``name -> (file, labels [N, T] of the test rows)``; returns them and the raw scores."""
    model.load_state_dict(best["model"])
    scores = predict_scores(model, test, config, context)
    report = {
        "split": "test",
        "checkpoint": BEST_FILE,
        "epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"],
        "labels": DATA_LABELS,
        "predictions": predictions_file("test"),
        **variant_metrics(scores, test.labels, config),
    }
    if label_sets:
        report["label_sets"] = {
            name: {"file": file, **variant_metrics(scores, labels, config)}
            for name, (file, labels) in label_sets.items()
        }
    return report, scores


def eval_label_sets(config: TrainConfig, data: RunData) -> dict[str, tuple]:
    """The label set of ``config.eval_labels`` at the test rows, as `test_report` takes it (checked up front)."""
    if config.eval_labels is None:
        return {}
    labels = split_label_set(config.eval_labels, data.test_index, data.num_videos)
    return {label_set_name(config.eval_labels): (config.eval_labels, labels)}


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: TrainProgress | None = None,
    max_epochs_this_run: int | None = None,
    extras: dict[str, torch.Tensor] | None = None,
) -> dict | None:
    """Train `config` into `run_dir` (docs/training.md#run-directory); returns the test report with the family's
    ``summaries`` (`ModelFamily.finish`), or None when stopped early. A config with ``refine`` runs the whole
    label-refinement pipeline (`train_refined`).

    `resume` continues the run in `run_dir` from its ``last.pt`` (the caller passes the run's own config,
    see `resume_config`). `max_epochs_this_run` stops after that many epochs of this call, leaving a
    resumable run (a time-sliced job; the resume test uses it). Under torchrun every rank calls it with the same
    arguments and gets the report (docs/distributed.md). `extras` (per-training-row targets, `RunData.extras`)
    make this call one stage of that pipeline, in a run directory the pipeline has checked.
    """
    run_dir = Path(run_dir)
    with settled_on_failure(run_dir, config):
        if config.refine != "none" and extras is None:
            from avel_fast.train.refine import train_refined

            return train_refined(
                config, run_dir, resume=resume, progress=progress, max_epochs_this_run=max_epochs_this_run
            )
        with distributed_context(config.device) as context:
            return _train(
                config, run_dir, context, resume, (progress or TrainProgress()) if context.is_main else TrainProgress(),
                max_epochs_this_run, extras,
            )  # fmt: skip


def _check_run_dir(run_dir: Path, resume: bool, stage: bool) -> None:
    """`stage`: one stage of a pipeline, whose run directory the pipeline has checked."""
    if resume and not (run_dir / LAST_FILE).is_file():
        raise TrainingError(f"--resume: {run_dir} has no {LAST_FILE} to continue from")
    check_writable(run_dir)
    if not resume and not stage:
        check_new_run_dir(run_dir)


def _open_run_dir(run_dir: Path, config: TrainConfig, resume: bool) -> dict | None:
    """The ``last.pt`` of a resumed run (on the CPU); a new run's directory and ``config.json``."""
    if resume:
        return load_checkpoint(run_dir / LAST_FILE, "cpu", RESUME_KEYS)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    truncate_metrics(run_dir, 0)  # a run stopped before its first last.pt starts again
    return None


def _train(
    config: TrainConfig,
    run_dir: Path,
    context: DistributedContext,
    resume: bool,
    progress: TrainProgress,
    max_epochs_this_run: int | None,
    extras: dict[str, torch.Tensor] | None,
) -> dict | None:
    """`train` on this rank: rank 0 alone touches `run_dir` (`DistributedContext.on_main`); `config` is the
    stored one, `run` the one on this rank's device."""
    run = localized(config, context)
    context.on_main(lambda: _check_run_dir(run_dir, resume, extras is not None))
    note = configure_precision(run)
    if note:
        progress.note(note)
    make_deterministic(run.device)
    family = family_of(config.model)
    data = family.load_data(run, extras)
    config = fitted_config(config, data.train)
    run = localized(config, context)
    label_sets = eval_label_sets(run, data)
    seed_everything(run.seed)
    model = build_model(run)
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

    trainer = EpochTrainer(model, optimizer, data, run, progress, context)
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
    report, scores = family.test_report(model, data, run, best, label_sets, context)
    if not context.is_main:
        return report
    if scores is not None:
        write_predictions(run_dir / predictions_file("test"), data.test_index, scores.argmax(dim=-1), scores)
    write_json(run_dir / TEST_METRICS_FILE, report)
    return {**report, "summaries": family.finish(run_dir, model, data, run)}


def resume_config(run_dir: str | Path, **requested) -> TrainConfig:
    """The config stored in `run_dir`; `requested` values (None = not given) must agree with it, except
    ``device``, which a resumed run may change."""
    stored = read_config(run_dir, device=requested.get("device"))
    for name, value in requested.items():
        if value is not None and value != getattr(stored, name):
            raise TrainingError(
                f"--{name.replace('_', '-')} {value} differs from the run's {getattr(stored, name)} "
                f"({run_dir}/config.json); a resumed run keeps its config"
            )
    return stored


def interrupted_message(run_dir: str | Path, config: TrainConfig) -> str:
    """What a user who stopped training with Ctrl-C needs to know: the epoch that was cut and what ``last.pt``
    holds, or that there is nothing to resume; ``last.pt`` is written atomically, so it is always whole."""
    hint = resume_hint(Path(run_dir), config)
    if hint is None:
        return f"interrupted before the first epoch ended: {run_dir} holds nothing to resume; run the command again"
    saved, text = hint
    if saved is None:  # a label-refinement pipeline stopped in an earlier stage
        return f"interrupted; {text}"
    return f"interrupted {'during the test evaluation' if saved == config.epochs else f'at epoch {saved + 1}'}; {text}"


def evaluate_run(
    run_dir: str | Path,
    *,
    split: str = "test",
    use_b2ilc: bool = False,
    device: str | None = None,
    protocol: str = "argmax",
    labels: str | Path | None = None,
) -> tuple[TrainConfig, dict]:
    """Segment metrics of the run's best-on-validation checkpoint on `split` under `protocol`
    (docs/metrics.md#protocols), optionally after B2ILC, against the data's labels or the label file `labels`
    (docs/metrics.md#label-sets).

    Writes the split's raw scores and the protocol's classes to ``<split>_predictions.h5`` in the run directory
    (atomically, replacing an earlier evaluation of the split), the protocol and label set in its attributes.
    """
    run_dir = Path(run_dir)
    check_protocol(protocol)
    config = read_config(run_dir, device=device)
    note = family_of(config.model).eval_note
    if note:
        raise TrainingError(f"{run_dir}: {note}")
    configure_precision(config)
    make_deterministic(config.device)
    if not (run_dir / BEST_FILE).is_file():
        raise TrainingError(f"{run_dir}: no {BEST_FILE} (the run has not finished an epoch yet)")
    best = load_checkpoint(run_dir / BEST_FILE, config.device)
    stats = FeatureStats.from_dict(best["feature_stats"]) if best["feature_stats"] is not None else None
    rows = load_split(config, split, stats)
    config = fitted_config(config, rows.rows)
    target = rows.rows.labels if labels is None else split_label_set(labels, rows.video_index, rows.num_videos)
    label_name = DATA_LABELS if labels is None else str(Path(labels).resolve())
    model = build_model(config)
    load_model_state(model, best, run_dir / BEST_FILE, config)
    scores = predict_scores(model, rows.rows, config)
    classes = protocol_classes(scores, protocol, config)
    path = run_dir / predictions_file(split)
    write_predictions(path, rows.video_index, classes, scores, protocol=protocol, labels=label_name)
    metrics = segment_metrics(b2ilc(classes) if use_b2ilc else classes, target)
    result = {"split": split, "epoch": best["epoch"], "protocol": protocol, "b2ilc": use_b2ilc, "labels": label_name}
    return config, {**result, "predictions": str(path), **metrics}
