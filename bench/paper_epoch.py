"""Time paper-preset DPNet epochs (fast backend, bf16 and tf32) and extrapolate the 400-epoch run into the results
file of `gpu_run.py` (docs/fast-path.md#gpu-run), rewritten after each precision.

An epoch is the loop's own training epoch (`EpochTrainer.run`) plus the validation pass the loop makes after
it, each timed after one warm-up epoch (Triton compiles, cuBLAS/cuDNN choices); checkpoint writes are left out.
The run is set up as `avel-fast train` sets up its runs, in the same order: precision, PyTorch's deterministic
algorithms (`make_deterministic`), data, the values the data fixes, the seed, model and optimizer
(docs/training.md#determinism). ``--dry-run``: the smoke preset on the CPU, for checking the pipeline only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import _results
from avel_fast.train import TrainProgress, build_model, family_of, predict
from avel_fast.train.config import PRESET_VALUES, resolve_config
from avel_fast.train.loop import EpochTrainer, build_optimizer, fitted_config
from avel_fast.train.runtime import configure_precision, make_deterministic, seed_everything

PRECISIONS = ("bf16", "tf32")
PAPER_EPOCHS = PRESET_VALUES["paper"]["epochs"]


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_epochs(preset: str, device: str, precision: str, epochs: int) -> dict:
    """Mean seconds of training and validation per epoch of `preset` (DPNet, fast) after one warm-up epoch."""
    config = resolve_config("dpnet", preset=preset, device=device, precision=precision, backend="fast")
    configure_precision(config)
    make_deterministic(config.device)
    family = family_of(config.model)
    data = family.load_data(config)
    config = fitted_config(family, config, data.train)
    seed_everything(config.seed)
    model = build_model(config)
    trainer = EpochTrainer(family, model, build_optimizer(config, model), data, config, TrainProgress())
    trainer.run(0)
    predict(model, data.val, config)
    train_seconds = val_seconds = 0.0
    for epoch in range(1, epochs + 1):
        synchronize(device)
        started = time.perf_counter()
        trainer.run(epoch)
        synchronize(device)
        trained = time.perf_counter()
        predict(model, data.val, config)
        synchronize(device)
        train_seconds += trained - started
        val_seconds += time.perf_counter() - trained
    epoch_seconds = (train_seconds + val_seconds) / epochs
    return {
        "preset": preset, "device": device, "steps_per_epoch": trainer.steps, "batch_size": config.batch_size,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "train_seconds": train_seconds / epochs, "val_seconds": val_seconds / epochs, "epoch_seconds": epoch_seconds,
        "timed_epochs": epochs, f"extrapolated_{PAPER_EPOCHS}_epochs_seconds": epoch_seconds * PAPER_EPOCHS,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="the results file to add the epochs to")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per precision (after one warm-up)")
    parser.add_argument("--dry-run", action="store_true", help="smoke preset on the CPU")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU here (--dry-run runs on the CPU)", file=sys.stderr)
        return 1
    if args.epochs < 1:
        print(f"error: --epochs must be at least 1, got {args.epochs}", file=sys.stderr)
        return 1
    preset, device = ("smoke", "cpu") if args.dry_run else ("paper", "cuda")
    for precision in PRECISIONS:
        timing = time_epochs(preset, device, precision, args.epochs)
        _results.update(args.results, lambda results: results.setdefault("paper_epoch", {}).update({precision: timing}))
        total = timing[f"extrapolated_{PAPER_EPOCHS}_epochs_seconds"]
        print(f"{preset}-preset DPNet epoch (fast, {precision}): {timing['train_seconds']:.2f} s training + "
              f"{timing['val_seconds']:.2f} s validation; {PAPER_EPOCHS} epochs ≈ {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
