"""Training one configuration with several seeds into a sweep directory (docs/metrics.md#seeds).

``train_seeds(config, out, n)`` trains seeds ``config.seed .. config.seed + n - 1`` one after the other into
``out/seed-<k>/``, each an ordinary run directory, then writes ``out/summary.json`` (`avel_fast.train.sweep`).
With ``resume`` an interrupted sweep goes on: finished seeds (``test_metrics.json``) are kept, a seed whose run
directory holds more than its ``config.json`` resumes (`train` with ``resume``), the others start; every stored
config must be the sweep's own but for the seed.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from avel_fast.train.config import TrainConfig
from avel_fast.train.distributed import is_main_process
from avel_fast.train.errors import TrainingError
from avel_fast.train.progress import TrainProgress
from avel_fast.train.registry import family_of
from avel_fast.train.run_dir import CONFIG_FILE, TEST_METRICS_FILE, check_new_run_dir, read_config
from avel_fast.train.runner import resume_config, train
from avel_fast.train.sweep import seed_dir, summarize, sweep_seeds, write_summary

DATA_FIXED_OPTIONS = ("audio_dim",)
"""Options the training data fixes (`ModelFamily.data_values`): None in a new config, recorded in ``config.json``."""


def first_seed_dir(sweep_dir: str | Path) -> Path:
    """The run directory of a sweep's first seed (the lowest ``seed-<k>/`` holding a config), from which
    ``--resume`` takes the sweep's config; `TrainingError` when the sweep has not started."""
    names = [path.name.removeprefix("seed-") for path in Path(sweep_dir).glob("seed-*/")]
    seeds = sorted(int(name) for name in names if name.isdigit())
    seeds = [seed for seed in seeds if (seed_dir(sweep_dir, seed) / CONFIG_FILE).is_file()]
    if not seeds:
        raise TrainingError(f"--resume: {sweep_dir} holds no seed-<k>/ run to continue (not a sweep directory)")
    return seed_dir(sweep_dir, seeds[0])


def resume_sweep_config(sweep_dir: str | Path, model: str | None = None, **requested) -> TrainConfig:
    """The config of an interrupted sweep (that of its first seed); `model` and `requested` as in
    `resume_config`."""
    return resume_config(first_seed_dir(sweep_dir), model, **requested)


def _check_seed_config(run_dir: Path, config: TrainConfig) -> None:
    """`TrainingError` unless the seed's stored config is `config`, up to the values the data fixes
    (`DATA_FIXED_OPTIONS`) where either side leaves them to the data."""
    stored, wanted = read_config(run_dir, device=config.device).flat(), config.flat()
    for name in DATA_FIXED_OPTIONS:
        if None in (stored.get(name), wanted.get(name)):
            stored[name] = wanted[name] = None
    if stored != wanted:
        differ = [name for name in wanted if stored.get(name) != wanted[name]]
        raise TrainingError(f"{run_dir}: its config differs from the sweep's ({', '.join(differ)}); not resumed")


def train_seeds(
    config: TrainConfig,
    sweep_dir: str | Path,
    num_seeds: int,
    *,
    resume: bool = False,
    progress: Callable[[], TrainProgress] = TrainProgress,
) -> dict | None:
    """Train the seeds of the module docstring and return the summary written to ``summary.json`` (None on the
    other ranks under torchrun). `progress` makes the progress reporter of each seed's run."""
    sweep_dir, family = Path(sweep_dir), family_of(config.model)
    seeds = sweep_seeds(config.seed, num_seeds)
    if not resume:
        check_new_run_dir(sweep_dir)
    elif not sweep_dir.is_dir():
        raise TrainingError(f"--resume: {sweep_dir}: no such sweep directory")
    for position, seed in enumerate(seeds, 1):
        run_dir, seed_config = seed_dir(sweep_dir, seed), config.replace(seed=seed)
        reporter = progress()
        if (run_dir / CONFIG_FILE).is_file():
            _check_seed_config(run_dir, seed_config)
        if (run_dir / TEST_METRICS_FILE).is_file():
            reporter.note(f"seed {seed} ({position}/{len(seeds)}): finished, kept")
            continue
        resumed = family.resumable(run_dir)
        reporter.note(f"seed {seed} ({position}/{len(seeds)}): {'resuming' if resumed else 'training'} {run_dir}")
        train(seed_config, run_dir, resume=resumed, progress=reporter)
    if not is_main_process():  # under torchrun rank 0 alone writes the run directories and the summary
        return None
    summary = summarize([seed_dir(sweep_dir, seed) for seed in seeds], seeds, family.metric_variants(config))
    write_summary(sweep_dir, summary)
    return summary
