"""The entry points of training and evaluation: `train` runs the recipe of the config's family, `evaluate_run`
scores a finished run (docs/training.md, docs/metrics.md#protocols)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from avel_fast.metrics import segment_metrics
from avel_fast.postprocess import b2ilc
from avel_fast.predictions import DATA_LABELS, predictions_file, write_predictions
from avel_fast.train.config import TrainConfig
from avel_fast.train.data import FeatureStats, load_split
from avel_fast.train.errors import TrainingError
from avel_fast.train.evaluation import check_protocol, label_set_name, protocol_classes, split_label_set
from avel_fast.train.failures import resume_hint, settled_on_failure
from avel_fast.train.loop import fitted_config
from avel_fast.train.predict import predict_scores
from avel_fast.train.progress import TrainProgress
from avel_fast.train.registry import family_of
from avel_fast.train.run_dir import BEST_FILE, load_checkpoint, load_model_state, read_config
from avel_fast.train.runtime import configure_precision, make_deterministic


def build_model(config: TrainConfig) -> nn.Module:
    """The model of `config` on its device (`ModelFamily.build`)."""
    return family_of(config.model).build(config)


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: TrainProgress | None = None,
    max_epochs_this_run: int | None = None,
) -> dict | None:
    """Train `config` into `run_dir` with its family's recipe (`ModelFamily.run`; docs/training.md#run-directory);
    returns the test report with the family's ``summaries``, or None when stopped early.

    `resume` continues the run in `run_dir` (the caller passes the run's own config, see `resume_config`).
    `max_epochs_this_run` stops after that many epochs of this call (of each stage of a recipe), leaving a
    resumable run (a time-sliced job; the resume tests use it). Under torchrun every rank calls it with the same
    arguments and gets the report (docs/distributed.md).
    """
    run_dir, family = Path(run_dir), family_of(config.model)
    with settled_on_failure(run_dir, family, config):
        return family.run(config, run_dir, resume=resume, progress=progress, max_epochs_this_run=max_epochs_this_run)


def resume_config(run_dir: str | Path, model: str | None = None, **requested) -> TrainConfig:
    """The config stored in `run_dir`, which must be one of `model`; `requested` values (None = not given) must
    agree with it, except ``device``, which a resumed run may change."""
    stored = read_config(run_dir, device=requested.get("device"))
    if model is not None and model != stored.model:
        raise TrainingError(
            f"{run_dir}/config.json holds a {stored.model} run, not {model}: resume it with avel-fast train "
            f"{stored.model} --resume --out {run_dir}"
        )
    values = stored.flat()
    for name, value in requested.items():
        if value is not None and value != values.get(name):
            raise TrainingError(
                f"--{name.replace('_', '-')} {value} differs from the run's {values.get(name)} "
                f"({run_dir}/config.json); a resumed run keeps its config"
            )
    return stored


def interrupted_message(run_dir: str | Path, config: TrainConfig) -> str:
    """What a user who stopped training with Ctrl-C needs to know: the epoch that was cut and what ``last.pt``
    holds, or that there is nothing to resume; ``last.pt`` is written atomically, so it is always whole."""
    hint = resume_hint(Path(run_dir), family_of(config.model), config)
    if hint is None:
        return f"interrupted before the first epoch ended: {run_dir} holds nothing to resume; run the command again"
    saved, text = hint
    if saved is None:  # a recipe stopped in an earlier stage
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
    family = family_of(config.model)
    if family.eval_note:
        raise TrainingError(f"{run_dir}: {family.eval_note}")
    if labels is not None:
        label_set_name(labels)
    configure_precision(config)
    make_deterministic(config.device)
    if not (run_dir / BEST_FILE).is_file():
        raise TrainingError(f"{run_dir}: no {BEST_FILE} (the run has not finished an epoch yet)")
    best = load_checkpoint(run_dir / BEST_FILE, config.device)
    stats = FeatureStats.from_dict(best["feature_stats"]) if best["feature_stats"] is not None else None
    rows = load_split(config, split, stats, family.pooled_visual)
    config = fitted_config(family, config, rows.rows)
    target = rows.rows.labels if labels is None else split_label_set(labels, rows.video_index, rows.num_videos)
    label_name = DATA_LABELS if labels is None else str(Path(labels).resolve())
    model = family.build(config)
    load_model_state(model, best, run_dir / BEST_FILE, config)
    scores = predict_scores(model, rows.rows, config)
    classes = protocol_classes(scores, protocol, config)
    path = run_dir / predictions_file(split)
    write_predictions(path, rows.video_index, classes, scores, protocol=protocol, labels=label_name)
    metrics = segment_metrics(b2ilc(classes) if use_b2ilc else classes, target)
    result = {"split": split, "epoch": best["epoch"], "protocol": protocol, "b2ilc": use_b2ilc, "labels": label_name}
    return config, {**result, "predictions": str(path), **metrics}
