"""Temporal label refinement as training runs of the engine (docs/weak.md#recipes, TLR §4-5).

``--refine`` (WSEL, AVE baseline or PSP) runs its stages into one run directory ``RUN``:

* ``lr``, ``a+lr``: Step 1, plain weak training (``a+lr``: with the auxiliary objective ``L_A``), an ordinary run
  in ``RUN/step1/``; Step 2, the window labels of every training row from the selected Step-1 checkpoint in eval
  mode (`refine_labels`, one background-only partner per video drawn once; ``keep_video_label``: with
  `keep_video_label`), written to ``RUN/window_labels.h5``, and their quality against the segment labels of the
  validation videos next to the trivial and ground-truth labels' (and, for information, of the training videos)
  in ``RUN/window_labels.json``, with a warning when they score below the trivial labels; Step 3, a fresh model
  trained with ``L_MIL + L_LR`` in ``RUN`` itself.
* ``dummy``, ``oracle``: Step 3 only, every window labelled with its video's labels / its ground truth.
* ``pl``: Step 1 plain, the pseudo labels of the training rows (``argmax`` of the Step-1 scores,
  `pseudo_labels`) in ``RUN/pseudo_labels.h5``, then a fresh model trained on them with the family's supervised
  loss in ``RUN``.

Step 1 trains ``step1_epochs`` with a seed derived from the run seed (so that Step 3, seeded with the run seed,
starts from a different initialisation); the last stage trains ``epochs``. ``resume`` continues whichever stage
was interrupted: a finished Step 1 (its ``test_metrics.json``) and stored labels are reused.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import h5py
import torch

from avel_fast._rng import derive_seed
from avel_fast.atomic import atomic_write
from avel_fast.constants import BACKGROUND
from avel_fast.metrics import segment_metrics
from avel_fast.reference.label_refinement import (
    all_background_event_videos,
    draw_second_videos,
    keep_video_label,
    pseudo_labels,
    refine_labels,
    window_label_comparison,
    window_label_quality,
)
from avel_fast.train.config import TrainConfig, TrainingError
from avel_fast.train.data import RunData, load_run_data
from avel_fast.train.distributed import launched_by_torchrun
from avel_fast.train.engine import build_model, predict_scores, train
from avel_fast.train.families import family_of
from avel_fast.train.families.weak import background_rows
from avel_fast.train.progress import TrainProgress
from avel_fast.train.run_dir import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    STEP1_DIR,
    TEST_METRICS_FILE,
    check_new_run_dir,
    check_writable,
    load_checkpoint,
    read_config,
    write_config,
    write_json,
)

LABEL_FILES = {"window_labels": "window_labels.h5", "segment_labels": "pseudo_labels.h5"}
"""The labels a Step 1 leads to, by their `RunData.extras` key, and the file in the run directory holding them."""
STEP1_STREAM, PARTNER_STREAM = 4, 5
"""Streams of the run seed: the seed of Step 1 and the partners of the Step-2 synthetic videos."""


def step1_config(config: TrainConfig) -> TrainConfig:
    """The config of Step 1 of `config`: plain weak training (``a+lr``: with ``aux``), ``step1_epochs``."""
    return dataclasses.replace(
        config, refine="none", aux=config.refine == "a+lr", keep_video_label=False, epochs=config.step1_epochs,
        seed=derive_seed(config.seed, STEP1_STREAM),
    )  # fmt: skip


def _write_labels(path: Path, name: str, values: torch.Tensor, attrs: dict) -> None:
    """``values`` as the dataset `name` of an HDF5 file, written atomically (`atomic_write`)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_dataset(name, data=values.cpu().numpy())
        file.attrs.update(attrs)
    atomic_write(path, lambda stream: stream.write(buffer.getbuffer()))


def read_labels(path: Path, name: str) -> torch.Tensor:
    with h5py.File(path, "r") as file:
        return torch.from_numpy(file[name][...])


def _step1_model(config: TrainConfig, step1_dir: Path) -> tuple[torch.nn.Module, RunData, dict, TrainConfig]:
    """The selected Step-1 checkpoint in its model (eval mode), the data of Step 1, the checkpoint and the config."""
    stage = read_config(step1_dir, device=config.device)
    best = load_checkpoint(step1_dir / BEST_FILE, config.device)
    data = load_run_data(stage)
    model = build_model(stage)
    model.load_state_dict(best["model"])
    return model.eval(), data, best, stage


def window_label_stage(config: TrainConfig, run_dir: Path, progress: TrainProgress) -> torch.Tensor:
    """Step 2: window labels ``[V, T1, 29]`` of the training rows (file and report of the module docstring)."""
    model, data, best, _ = _step1_model(config, run_dir / STEP1_DIR)
    base = family_of(config.model).weak_base(model)
    train_rows, val = data.train, data.val
    background = background_rows(train_rows.video_labels)
    if len(background) == 0:
        raise TrainingError("label refinement needs background-only videos in the training set (none found)")
    generator = torch.Generator().manual_seed(derive_seed(config.seed, PARTNER_STREAM))
    options = dict(window=config.window, stride=config.stride, tau=config.tau, compute_dtype=train_rows.compute_dtype)
    partners = draw_second_videos(len(train_rows), background, generator)
    labels = refine_labels(base, train_rows.audio, train_rows.visual, train_rows.video_labels, partners, **options)
    # validation videos, each spliced with a background-only training video appended after them
    appended = len(val) + torch.arange(len(background), device=background.device)
    val_partners = torch.cat((draw_second_videos(len(val), appended, generator), appended))
    val_labels = refine_labels(
        base,
        torch.cat((val.audio, train_rows.audio[background])),
        torch.cat((val.visual, train_rows.visual[background])),
        torch.cat((val.video_labels, train_rows.video_labels[background])),
        val_partners,
        **options,
    )[: len(val)]
    all_background = all_background_event_videos(labels, train_rows.video_labels)
    if config.keep_video_label:
        labels = keep_video_label(labels, train_rows.video_labels)
        val_labels = keep_video_label(val_labels, val.video_labels)
    windows = dict(window=config.window, stride=config.stride)
    compared = window_label_comparison(val_labels.cpu(), val.video_labels.cpu(), val.labels.cpu(), **windows)
    below = compared["refined"]["window_accuracy"] < compared["trivial"]["window_accuracy"]
    _write_labels(run_dir / LABEL_FILES["window_labels"], "window_labels", labels.to(torch.uint8), {
        **windows, "tau": config.tau, "keep_video_label": config.keep_video_label, "step1_epoch": best["epoch"],
    })  # fmt: skip
    write_json(run_dir / "window_labels.json", {
        **windows, "tau": config.tau, "keep_video_label": config.keep_video_label, "step1_epoch": best["epoch"],
        "step1_val_accuracy": best["val_accuracy"],
        "val": compared["refined"], "val_trivial": compared["trivial"], "val_ground_truth": compared["ground_truth"],
        "refined_below_trivial": below,
        "train": window_label_quality(labels, train_rows.labels.cpu(), **windows),
        "train_event_videos": int((train_rows.video_labels[:, :BACKGROUND] > 0).any(dim=1).sum()),
        "train_event_videos_all_background": int(all_background.sum()),
    })  # fmt: skip
    if below:
        progress.note(
            f"warning: the refined window labels score below the trivial ones on the validation videos (window "
            f"accuracy {compared['refined']['window_accuracy']:.3f} < {compared['trivial']['window_accuracy']:.3f}; "
            f"{int(all_background.sum())} training event videos have only background windows): a longer or better "
            "step 1, a lower --tau or --keep-video-label may help (docs/weak.md#label-quality)"
        )
    return labels


def pseudo_label_stage(config: TrainConfig, run_dir: Path, progress: TrainProgress) -> torch.Tensor:
    """AVE+PL: pseudo segment labels ``[V, T]`` of the training rows from the selected Step-1 checkpoint, with
    their accuracy against the training segment labels (for information) in ``RUN/pseudo_labels.json``."""
    model, data, best, stage = _step1_model(config, run_dir / STEP1_DIR)
    labels = pseudo_labels(predict_scores(model, data.train, stage), data.train.video_labels)
    _write_labels(run_dir / LABEL_FILES["segment_labels"], "segment_labels", labels, {"step1_epoch": best["epoch"]})
    accuracy = segment_metrics(labels.cpu(), data.train.labels.cpu())["accuracy"]
    write_json(run_dir / "pseudo_labels.json", {"step1_epoch": best["epoch"], "train_accuracy": accuracy})
    return labels


STAGES = {"lr": ("window_labels", window_label_stage), "a+lr": ("window_labels", window_label_stage),
          "pl": ("segment_labels", pseudo_label_stage)}  # fmt: skip
"""What Step 1 leads to per ``refine``: the `RunData.extras` key of the labels and the stage computing them."""


def train_refined(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: TrainProgress | None = None,
    max_epochs_this_run: int | None = None,
) -> dict | None:
    """Run the stages of ``config.refine`` into `run_dir` (module docstring); returns the test report of the last
    stage, or None when a stage stopped early (`max_epochs_this_run` applies to each stage)."""
    if launched_by_torchrun():
        raise TrainingError(f"--refine {config.refine} runs its stages on a single process: leave torchrun out")
    run_dir = Path(run_dir)
    progress = progress or TrainProgress()
    check_writable(run_dir)
    if not resume:
        check_new_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
    elif not (run_dir / CONFIG_FILE).is_file():
        raise TrainingError(f"--resume: {run_dir} is not a run directory (no {CONFIG_FILE})")
    extras = {}
    if config.refine in STAGES:
        key, stage = STAGES[config.refine]
        labels_file = run_dir / LABEL_FILES[key]
        if labels_file.is_file():
            extras[key] = read_labels(labels_file, key)
        else:
            step1_dir = run_dir / STEP1_DIR
            if not (step1_dir / TEST_METRICS_FILE).is_file():
                progress.note(f"step 1 of --refine {config.refine}: weak training into {step1_dir}")
                stage_resume = resume and (step1_dir / LAST_FILE).is_file()
                done = train(
                    step1_config(config), step1_dir, resume=stage_resume, progress=progress,
                    max_epochs_this_run=max_epochs_this_run,
                )  # fmt: skip
                if done is None:
                    return None
            progress.note(f"--refine {config.refine}: {key.replace('_', ' ')} from the step-1 checkpoint")
            extras[key] = stage(config, run_dir, progress)
    progress.note(f"last stage of --refine {config.refine}: training into {run_dir}")
    return train(
        config, run_dir, resume=resume and (run_dir / LAST_FILE).is_file(), progress=progress,
        max_epochs_this_run=max_epochs_this_run, extras=extras,
    )  # fmt: skip
