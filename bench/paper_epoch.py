"""Time paper-preset DPNet epochs (fast backend, bf16 and tf32) and extrapolate the 400-epoch run; store them with
a pytest-benchmark JSON as ``<out>/<gpu-name>.json`` and print the speed-up table (the last step of bench/gpu.sh).

An epoch is the engine's own training epoch (`EpochTrainer.run`) plus the validation pass the engine makes after
it, each timed after one warm-up epoch (Triton compiles, cuBLAS/cuDNN choices); checkpoint writes are left out.
``--dry-run``: the smoke preset on the CPU, for checking the pipeline only.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

import speedup_table
from avel_fast.train import TrainProgress, build_model, family_of, predict
from avel_fast.train.config import PRESET_VALUES, resolve_config
from avel_fast.train.loop import EpochTrainer, build_optimizer
from avel_fast.train.runtime import configure_precision, seed_everything

PRECISIONS = ("bf16", "tf32")
PAPER_EPOCHS = PRESET_VALUES["paper"]["epochs"]


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_epochs(preset: str, device: str, precision: str, epochs: int) -> dict:
    """Mean seconds of training and validation per epoch of `preset` (DPNet, fast) after one warm-up epoch."""
    config = resolve_config("dpnet", preset=preset, device=device, precision=precision, backend="fast")
    configure_precision(config)
    data = family_of("dpnet").load_data(config)
    seed_everything(config.seed)
    model = build_model(config)
    trainer = EpochTrainer(family_of("dpnet"), model, build_optimizer(config, model), data, config, TrainProgress())
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
        "train_seconds": train_seconds / epochs, "val_seconds": val_seconds / epochs, "epoch_seconds": epoch_seconds,
        "timed_epochs": epochs, f"extrapolated_{PAPER_EPOCHS}_epochs_seconds": epoch_seconds * PAPER_EPOCHS,
    }  # fmt: skip


def machine_name(dry_run: bool) -> str:
    """``nvidia-h100-80gb-hbm3`` for "NVIDIA H100 80GB HBM3"; ``cpu-dry-run`` for a dry run."""
    if dry_run:
        return "cpu-dry-run"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, required=True, help="pytest-benchmark JSON of this run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="results directory")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per precision (after one warm-up)")
    parser.add_argument("--dry-run", action="store_true", help="smoke preset on the CPU")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU here (--dry-run runs on the CPU)", file=sys.stderr)
        return 1
    preset, device = ("smoke", "cpu") if args.dry_run else ("paper", "cuda")
    results = json.loads(args.benchmarks.read_text())
    results["paper_epoch"] = {
        precision: time_epochs(preset, device, precision, args.epochs) for precision in PRECISIONS
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{machine_name(args.dry_run)}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    speedup_table.main([str(path)])
    for precision, timing in results["paper_epoch"].items():
        total = timing[f"extrapolated_{PAPER_EPOCHS}_epochs_seconds"]
        print(f"{preset}-preset DPNet epoch (fast, {precision}): {timing['train_seconds']:.2f} s training + "
              f"{timing['val_seconds']:.2f} s validation; {PAPER_EPOCHS} epochs ≈ {total / 60:.1f} min")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
