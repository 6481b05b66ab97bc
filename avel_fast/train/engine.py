"""One training engine for every model family, SEL and WSEL (docs/training.md#engine).

Per iteration: a batch of the resident training set in the order seeded by ``(seed, epoch)``, the learning rate
of `CyclicCosineSchedule` (AdamW by default), and the loss of the model's family (`ModelFamily.objective`:
segment cross-entropy in SEL, `mil_loss` on the video labels in WSEL, plus what the family adds: DPNet's
replicas, EDRNet's LSS). After each epoch: segment metrics on validation, ``metrics.jsonl``, ``best.pt`` when
the validation accuracy improves (strictly: the earliest best epoch wins) and ``last.pt``. At the end: the
best-on-validation checkpoint scored on test (and after the family's post-processings, e.g. EDRNet's B2ILC),
``test_metrics.json``. Test never takes part in selection.

Determinism (docs/training.md#determinism): torch, numpy and Python are seeded with the run seed before the
model is built and PyTorch's deterministic algorithms are switched on (`make_deterministic`); batch order,
replicas and SMB videos come from streams derived from the seed; ``last.pt`` holds the model, optimizer and
torch RNG states after each epoch, so ``resume`` continues exactly where a killed run stopped (the only random
state the loop consumes is torch's, for dropout). The same command gives the same numbers on the same machine
with the same thread count and library versions; another CPU or GPU model may round differently.
"""
from __future__ import annotations

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
from avel_fast.train.config import TrainConfig, TrainingError
from avel_fast.train.families import family_of
from avel_fast.train.families.base import autocast
from avel_fast.train.data import FeatureStats, RunData, load_run_data, load_split
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
from avel_fast.train.schedule import CyclicCosineSchedule

EVAL_BATCH_SIZE = 128


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


@torch.no_grad()
def predict_scores(model: nn.Module, dataset: ResidentDataset, config: TrainConfig) -> torch.Tensor:
    """Raw segment scores ``[N, T, C]`` (float32, before any softmax) of every row of `dataset`, in order."""
    model.eval()
    family, scores = family_of(config.model), []
    for batch in dataset.batches(EVAL_BATCH_SIZE, shuffle=False):
        with autocast(config):
            scores.append(family.scores(model, batch.audio, batch.visual).float())
    return torch.cat(scores)


def predict(model: nn.Module, dataset: ResidentDataset, config: TrainConfig) -> torch.Tensor:
    """Segment predictions ``[N, T]`` (argmax of the scores) of every row of `dataset`, in order."""
    return predict_scores(model, dataset, config).argmax(dim=-1)


def scalar_metrics(metrics: dict) -> dict:
    return {name: metrics[name] for name in SCALAR_METRICS}


def rng_state(device: str) -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def restore_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), torch.device(device))


class EpochTrainer:
    """The training iterations of the module docstring, one epoch per `run`."""

    def __init__(self, model, optimizer, data: RunData, config: TrainConfig, progress: TrainProgress) -> None:
        self.model, self.optimizer, self.data, self.config, self.progress = model, optimizer, data, config, progress
        self.schedule = CyclicCosineSchedule(config.epochs, config.cycle)
        self.steps = data.train.num_batches(config.batch_size)
        self.objective = family_of(config.model).objective(model, data, config)

    def learning_rate(self, epoch: int, step: int) -> float:
        return self.config.lr * self.schedule.multiplier(epoch, step, self.steps)

    def run(self, epoch: int) -> tuple[float, float, float]:
        """Train one epoch; returns the mean loss, the segment accuracy of the training forward passes (with
        replicas; in WSEL against the segment labels, for information only) and the last learning rate."""
        self.model.train()
        total_loss, correct, segments, videos = 0.0, 0, 0, 0
        batches = self.data.train.batches(self.config.batch_size, seed=self.config.seed, epoch=epoch)
        for step, batch in enumerate(batches):
            lr = self.learning_rate(epoch, step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            output = self.objective(batch, epoch, step)
            self.optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            self.optimizer.step()
            labels = output.labels
            total_loss += output.loss.item() * labels.shape[0]
            videos += labels.shape[0]
            correct += int((output.logits.argmax(dim=-1) == labels).sum())
            segments += labels.numel()
            self.progress.step(epoch, self.config.epochs, total_loss / videos, correct / segments)
        return total_loss / videos, correct / segments, lr


def _checkpoint_model(model: nn.Module, data: RunData, config: TrainConfig, epoch: int, val_accuracy: float) -> dict:
    """The model, the standardization its inputs need, and where it comes from."""
    stats = data.stats.as_dict() if data.stats is not None else None
    return {
        "model": model.state_dict(), "feature_stats": stats, "epoch": epoch, "val_accuracy": val_accuracy,
        "config": config.to_dict(),
    }  # fmt: skip


def test_report(model: nn.Module, test: ResidentDataset, config: TrainConfig, best: dict) -> dict:
    """Test metrics of the best-on-validation checkpoint `best`, also after the family's post-processings."""
    model.load_state_dict(best["model"])
    predictions = predict(model, test, config)
    report = {
        "split": "test",
        "checkpoint": BEST_FILE,
        "epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"],
        "metrics": segment_metrics(predictions, test.labels),
    }
    for name, postprocess in family_of(config.model).postprocessings(config).items():
        report[name] = segment_metrics(postprocess(predictions), test.labels)
    return report


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: TrainProgress | None = None,
    max_epochs_this_run: int | None = None,
) -> dict | None:
    """Train `config` into `run_dir` (docs/training.md#run-directory); returns the test report, or None when
    stopped early.

    `resume` continues the run in `run_dir` from its ``last.pt`` (the caller passes the run's own config,
    see `resume_config`). `max_epochs_this_run` stops after that many epochs of this call, leaving a
    resumable run (a time-sliced job; the resume test uses it).
    """
    run_dir = Path(run_dir)
    progress = progress or TrainProgress()
    if resume and not (run_dir / LAST_FILE).is_file():
        raise TrainingError(f"--resume: {run_dir} has no {LAST_FILE} to continue from")
    check_writable(run_dir)
    if not resume:
        check_new_run_dir(run_dir)
    note = configure_precision(config)
    if note:
        progress.note(note)
    make_deterministic(config.device)
    data = load_run_data(config)
    seed_everything(config.seed)
    model = build_model(config)
    optimizer = build_optimizer(config, model)
    first_epoch, best_accuracy, best_epoch = 0, float("-inf"), 0
    if resume:
        checkpoint = load_checkpoint(run_dir / LAST_FILE, config.device, RESUME_KEYS)
        load_model_state(model, checkpoint, run_dir / LAST_FILE, config)
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"], config.device)
        first_epoch, best_epoch = checkpoint["epoch"], checkpoint["best_epoch"]
        best_accuracy = checkpoint["best_accuracy"]
        truncate_metrics(run_dir, first_epoch)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
    stop = config.epochs if max_epochs_this_run is None else min(config.epochs, first_epoch + max_epochs_this_run)

    trainer = EpochTrainer(model, optimizer, data, config, progress)
    with progress:
        progress.start(trainer.steps * config.epochs, trainer.steps * first_epoch)
        for epoch in range(first_epoch, stop):
            started = time.perf_counter()
            train_loss, train_accuracy, lr = trainer.run(epoch)
            val = segment_metrics(predict(model, data.val, config), data.val.labels)
            improved = val["accuracy"] > best_accuracy
            if improved:
                best_accuracy, best_epoch = val["accuracy"], epoch + 1
                save_checkpoint(run_dir / BEST_FILE, _checkpoint_model(model, data, config, epoch + 1, best_accuracy))
            record = {
                "epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_accuracy": train_accuracy,
                "val": scalar_metrics(val), "best": improved, "seconds": time.perf_counter() - started,
            }  # fmt: skip
            append_metrics(run_dir, record)
            save_checkpoint(
                run_dir / LAST_FILE,
                {
                    **_checkpoint_model(model, data, config, epoch + 1, val["accuracy"]),
                    "optimizer": optimizer.state_dict(), "rng": rng_state(config.device),
                    "best_accuracy": best_accuracy, "best_epoch": best_epoch,
                },  # fmt: skip
            )
            progress.epoch_done(record)
    if stop < config.epochs:
        return None
    report = test_report(model, data.test, config, load_checkpoint(run_dir / BEST_FILE, config.device))
    write_json(run_dir / TEST_METRICS_FILE, report)
    return report


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
    run_dir = Path(run_dir)
    if not (run_dir / LAST_FILE).is_file():
        return f"interrupted before the first epoch ended: {run_dir} holds nothing to resume; run the command again"
    saved = load_checkpoint(run_dir / LAST_FILE, keys=RESUME_KEYS)["epoch"]
    where = "during the test evaluation" if saved == config.epochs else f"at epoch {saved + 1}"
    return (
        f"interrupted {where}; {run_dir / LAST_FILE} holds epoch {saved}: resume with "
        f"avel-fast train {config.model} --resume --out {run_dir}"
    )


def evaluate_run(
    run_dir: str | Path, *, split: str = "test", use_b2ilc: bool = False, device: str | None = None
) -> tuple[TrainConfig, dict]:
    """Segment metrics of the run's best-on-validation checkpoint on `split` (optionally after B2ILC)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir, device=device)
    configure_precision(config)
    make_deterministic(config.device)
    if not (run_dir / BEST_FILE).is_file():
        raise TrainingError(f"{run_dir}: no {BEST_FILE} (the run has not finished an epoch yet)")
    best = load_checkpoint(run_dir / BEST_FILE, config.device)
    stats = FeatureStats.from_dict(best["feature_stats"]) if best["feature_stats"] is not None else None
    rows = load_split(config, split, stats)
    model = build_model(config)
    load_model_state(model, best, run_dir / BEST_FILE, config)
    predictions = predict(model, rows, config)
    if use_b2ilc:
        predictions = b2ilc(predictions)
    metrics = segment_metrics(predictions, rows.labels)
    return config, {"split": split, "epoch": best["epoch"], "b2ilc": use_b2ilc, **metrics}
