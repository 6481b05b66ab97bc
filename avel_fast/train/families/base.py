"""What the training loop needs to know about a model: the `ModelFamily` interface (docs/training.md#families).

A family names its options (a `FamilyOptions` dataclass: fields, per-preset values, ranges, one `validate`), builds
its model (reference or fast backend), gives the training objective of a batch, the raw segment scores of a
forward pass, its video-level pooling (for the broadcast protocol) and the post-processings reported beside the
plain test metrics, and runs its recipe (`run`: one call of the loop by default). The defaults fit the models of
the AVE segment features (`SegmentOptions`); a family with other data (the sound pretext network) also replaces
how its data is loaded, how a split is scored, its test report and what it writes after it. The loop
(`avel_fast.train.loop`) holds no model-specific branch: it is given the family.

An objective sees one rank's share of each global batch (`TrainBatch`; the whole batch in a single process). It
calls the model it was given (under torchrun the `DistributedDataParallel` wrapper, with ``--compile`` the
compiled module), returns a loss that is a mean over the videos of its share, keeps what belongs together (a
video and its replica) in the rows of one video, draws augmentations per position in the global batch, and reads
no tensor value on the host (docs/distributed.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.backend import MODEL_BACKENDS
from avel_fast.constants import AUDIO_DIM
from avel_fast.data import AVEData, ResidentDataset
from avel_fast.metrics import segment_metrics
from avel_fast.predictions import PROTOCOL_METRICS
from avel_fast.reference import mil_loss, mil_pool
from avel_fast.train.config import TrainConfig
from avel_fast.train.data import RunData, load_run_data
from avel_fast.train.distributed import DistributedContext
from avel_fast.train.evaluation import label_set_name, run_protocols, split_label_set
from avel_fast.train.loop import StepOutput, TrainBatch, fit
from avel_fast.train.options import FamilyOptions, option
from avel_fast.train.predict import predict, test_report
from avel_fast.train.progress import TrainProgress
from avel_fast.train.run_dir import LAST_FILE
from avel_fast.train.runtime import autocast
from avel_fast.train.schedule import CyclicCosineSchedule


@dataclass(frozen=True)
class SegmentOptions(FamilyOptions):
    """The options of every family trained on the AVE segment features."""

    standardize: bool = option(
        True, "Z-score the features with training-set statistics (docs/training.md#engine)."
    )
    backend: str = option("fast", "fast (avel_fast.models) | reference.", choices=MODEL_BACKENDS)
    eval_labels: str | None = option(
        None, "Also score the test split against this label file (layout of labels.h5)."
    )
    audio_dim: int | None = option(None, "Width of the audio features, read from the data.", low=1, command=False)


MODEL_PRESETS = {
    "paper": dict(cycle=20, dim=768, standardize=False),
    "quick": dict(cycle=10, dim=128, standardize=True),
    "smoke": dict(cycle=1, dim=32, standardize=True),
}
"""The schedule, width and standardisation of DPNet and EDRNet per preset (docs/training.md#presets): the paper
preset feeds raw features, as both papers and their public code do; quick and smoke standardise them, which makes
the small CPU runs converge in a few epochs."""


class Objective:
    """The training loss of a batch: segment cross-entropy (SEL) or `mil_loss` on the video labels (WSEL)."""

    def __init__(self, family: ModelFamily, model: nn.Module, data: RunData, config: TrainConfig) -> None:
        self.family, self.model, self.data, self.config = family, model, data, config

    def forward(self, *inputs, **options):
        """The model's forward pass under the run's precision (`autocast`)."""
        with autocast(self.config):
            return self.model(*inputs, **options)

    def segment_loss(self, logits: torch.Tensor, labels: torch.Tensor, video_labels: torch.Tensor) -> torch.Tensor:
        if self.config.setting == "wsel":
            return mil_loss(logits, video_labels, check_labels=False)  # checked when loaded
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())

    def __call__(self, batch: TrainBatch, epoch: int, step: int) -> StepOutput:
        with autocast(self.config):
            logits = self.family.scores(self.model, batch.audio, batch.visual).float()
        return StepOutput(self.segment_loss(logits, batch.labels, batch.video_labels), logits, batch.labels)


def audio_dim(config: TrainConfig) -> int:
    """The width of the run's audio features (`SegmentOptions.audio_dim`, read from the data; 128 when unset)."""
    return config.options.audio_dim or AUDIO_DIM


class ModelFamily:
    """One model the loop trains (module docstring). Subclasses set the class attributes and override
    `build_model`; the defaults fit a model called as ``model(audio, visual) -> logits [B, T, C]``."""

    name: ClassVar[str]
    title: ClassVar[str]
    options_class: ClassVar[type[FamilyOptions]]
    """Its options (`FamilyOptions`): ``config.options`` of its runs and the options of ``avel-fast train NAME``."""
    settings: ClassVar[tuple[str, ...]] = ("sel", "wsel")
    """The settings it trains in (`--setting`)."""
    pooled_visual: ClassVar[bool] = False
    """The model starts with global average pooling, so the run keeps pooled visual features [T, 512]."""
    objective_class: ClassVar[type[Objective]] = Objective
    drop_last: ClassVar[bool] = False
    """Training epochs drop the last partial batch (the public recipe of the AVE baseline and PSP)."""
    eval_note: ClassVar[str | None] = None
    """Why `avel-fast eval` and `avel-fast report` cannot read this family's runs; None when they can."""
    postprocessings: ClassVar[dict[str, Callable[[torch.Tensor], torch.Tensor]]] = {}
    """Post-processings of the predictions reported beside the plain metrics (name -> function)."""

    def build_model(self, config: TrainConfig, fast: bool) -> nn.Module:
        raise NotImplementedError

    def build(self, config: TrainConfig) -> nn.Module:
        """The model of `config` on its device, from `avel_fast.models` (``backend="fast"``) or the reference."""
        return self.build_model(config, fast=config.options.backend == "fast").to(config.device)

    def run(
        self,
        config: TrainConfig,
        run_dir: Path,
        *,
        resume: bool = False,
        progress: TrainProgress | None = None,
        max_epochs_this_run: int | None = None,
    ) -> dict | None:
        """The family's recipe: one call of the loop (`avel_fast.train.loop.fit`) by default."""
        return fit(self, config, run_dir, resume=resume, progress=progress, max_epochs_this_run=max_epochs_this_run)

    def failure_options(self, config: TrainConfig, failure: str) -> tuple[str, ...]:
        """This family's options, beside ``--lr`` / ``--batch-size``, that the one-line advice of a `failure`
        (``divergence``, ``memory``) names to lower (docs/training.md#failures): none by default."""
        return ()

    def resumable(self, run_dir: Path) -> bool:
        """Whether `run_dir` holds something ``--resume`` continues: a ``last.pt`` by default."""
        return (run_dir / LAST_FILE).is_file()

    def schedule(self, config: TrainConfig):
        """The learning-rate multiplier per iteration: DPNet's cyclic cosine schedule by default."""
        return CyclicCosineSchedule(config.epochs, config.options.cycle)

    def objective(self, model: nn.Module, data: RunData, config: TrainConfig) -> Objective:
        return self.objective_class(self, model, data, config)

    def training_set(self, train: AVEData, config: TrainConfig) -> AVEData:
        """The data hook: the train split as the run trains on it, with the background-only videos in WSEL."""
        return train.with_background() if config.setting == "wsel" else train

    def load_data(self, config: TrainConfig, extras: dict | None = None) -> RunData:
        """The run's training set and its validation and test splits, resident on the device: the AVE features
        (`avel_fast.train.data.load_run_data`, `extras` as there) and the ``eval_labels`` set, checked up front.
        Another family returns an object with the same ``train``, ``val``, ``test`` and ``stats`` attributes, its
        splits `SeededBatches`."""
        data = load_run_data(config, self.pooled_visual, self.training_set, extras)
        path = config.options.eval_labels
        if path is not None:
            name = label_set_name(path)
            data.label_sets = {name: (path, split_label_set(path, data.test_index, data.num_videos))}
        return data

    def data_values(self, train: ResidentDataset) -> dict:
        """Options the training data fixes, recorded in ``config.json``: the width of the audio features."""
        return {"audio_dim": train.audio.shape[-1]}

    def evaluate(
        self, model: nn.Module, dataset: ResidentDataset, config: TrainConfig, context: DistributedContext | None
    ) -> dict:
        """Metrics of `model` on a split (selection uses ``"accuracy"``): `segment_metrics` of its predictions."""
        return segment_metrics(predict(model, dataset, config, context), dataset.labels)

    def test_report(
        self, model: nn.Module, data: RunData, config: TrainConfig, best: dict, context: DistributedContext | None
    ) -> tuple[dict, torch.Tensor | None]:
        """The report of the best checkpoint `best` on test (``test_metrics.json``) and the raw test scores
        written to ``test_predictions.h5`` (`avel_fast.train.predict.test_report`; None: no predictions file)."""
        return test_report(model, data.test, config, best, data.label_sets, context)

    def metric_variants(self, config: TrainConfig) -> dict[str, str]:
        """The keys of its test report that hold a metrics dict and their prefix in a summary
        (docs/metrics.md#selection): the protocols of the run's setting and the family's post-processings."""
        variants = {PROTOCOL_METRICS["argmax"]: "", **{name: f"{name}/" for name in self.postprocessings}}
        others = (protocol for protocol in run_protocols(config) if protocol != "argmax")
        return {**variants, **{PROTOCOL_METRICS[protocol]: f"{protocol}/" for protocol in others}}

    def finish(self, run_dir: Path, model: nn.Module, data: RunData, config: TrainConfig) -> dict:
        """Run after the test report with the best model: further files of the run directory; returns the
        summaries `train` adds to its report under ``"summaries"`` (section -> name -> value). None by default."""
        return {}

    def scores(self, model: nn.Module, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Raw segment scores ``[B, T, C]`` (before any softmax); the prediction is their argmax."""
        return model(audio, visual)

    def video_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Video-level class probabilities ``[B, C]``: the MIL pooling the weak loss uses (mean of softmax)."""
        return mil_pool(scores.float())
