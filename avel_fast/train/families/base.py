"""What the engine needs to know about a model: the `ModelFamily` interface and the registry of families.

A family builds its model (reference or fast backend), names the options it owns and its preset values, gives
the training objective of a batch, the raw segment scores of a forward pass, its video-level pooling (for the
broadcast protocol) and the post-processings reported beside the plain test metrics. The defaults fit the AVE
models; a family with other data (the sound pretext network) also replaces how its data is loaded, how a split
is scored, its test report and what it writes after it. The engine
(`avel_fast.train.engine`) holds no model-specific branch: it looks the family up in `FAMILIES` by
``config.model`` (docs/training.md#families).

An objective sees one rank's share of each global batch (`TrainBatch`; the whole batch in a single process). It
calls the model it was given (under torchrun the `DistributedDataParallel` wrapper, with ``--compile`` the
compiled module), returns a loss that is a mean over the videos of its share, keeps what belongs together (a
video and its replica) in the rows of one video, draws augmentations per position in the global batch, and reads
no tensor value on the host (docs/distributed.md).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.constants import AUDIO_DIM
from avel_fast.reference import mil_loss, mil_pool
from avel_fast.train.errors import TrainingError
from avel_fast.train.schedule import CyclicCosineSchedule

if TYPE_CHECKING:
    from pathlib import Path

    from avel_fast.data import Batch, ResidentDataset
    from avel_fast.train.config import TrainConfig
    from avel_fast.train.data import RunData
    from avel_fast.train.distributed import DistributedContext


@dataclass(frozen=True)
class TrainBatch:
    """One rank's share of a global training batch: the dataset's batch of the share's rows (its fields read as
    this object's, e.g. ``audio``), and on the host the dataset rows of the whole global batch with the positions
    of the share in it."""

    rows: Batch  # or the dataset's own row type (`SeededBatches.rows`)
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
    """The width of the run's audio features (`TrainConfig.audio_dim`, read from the data; 128 when unset)."""
    return config.audio_dim or AUDIO_DIM


def autocast(config: TrainConfig):
    """bf16 autocast for ``precision="bf16"``; fp32 (or TF32 matmuls on CUDA) otherwise."""
    if config.precision == "bf16":
        return torch.autocast(torch.device(config.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class ModelFamily:
    """One model the engine trains (module docstring). Subclasses set the class attributes and override
    `build_model`; the defaults fit a model called as ``model(audio, visual) -> logits [B, T, C]``."""

    name: ClassVar[str]
    title: ClassVar[str]
    settings: ClassVar[tuple[str, ...]] = ("sel", "wsel")
    """The settings it trains in (`--setting`)."""
    switches: ClassVar[dict[str, str]] = {}
    """Boolean options only this family has: name -> what it is (refused with other models)."""
    supervised_switches: ClassVar[tuple[str, ...]] = ()
    """Switches that need segment labels of the training videos (refused in WSEL, turned off by its presets)."""
    options: ClassVar[dict[str, str]] = {}
    """Valued options this family reads: name -> what it is (an explicit value is refused with other models)."""
    ignored_options: ClassVar[dict[str, str]] = {}
    """Shared options this family does not use: name -> why (an explicit value is refused)."""
    pooled_visual: ClassVar[bool] = False
    """The model starts with global average pooling, so the run keeps pooled visual features [T, 512]."""
    objective_class: ClassVar[type[Objective]] = Objective
    drop_last: ClassVar[bool] = False
    """Training epochs drop the last partial batch (the public recipe of the AVE baseline and PSP)."""
    eval_note: ClassVar[str | None] = None
    """Why `avel-fast eval` and `avel-fast report` cannot read this family's runs; None when they can."""

    def preset_values(self, preset: str, setting: str) -> dict:
        """The family's values of `preset` on top of the shared ones (`avel_fast.train.config.PRESET_VALUES`)."""
        return {}

    def dependent_preset_values(self, preset: str, values: dict) -> dict:
        """Preset values that depend on other resolved options `values` (explicit options still win)."""
        return {}

    def validate(self, config: TrainConfig) -> None:
        """Raise `TrainingError` for a combination of options this family cannot run."""

    def build_model(self, config: TrainConfig, fast: bool) -> nn.Module:
        raise NotImplementedError

    def build(self, config: TrainConfig) -> nn.Module:
        """The model of `config` on its device, from `avel_fast.models` (``backend="fast"``) or the reference."""
        return self.build_model(config, fast=config.backend == "fast").to(config.device)

    def schedule(self, config: TrainConfig):
        """The learning-rate multiplier per iteration: DPNet's cyclic cosine schedule by default."""
        return CyclicCosineSchedule(config.epochs, config.cycle)

    def objective(self, model: nn.Module, data: RunData, config: TrainConfig) -> Objective:
        return self.objective_class(self, model, data, config)

    def load_data(self, config: TrainConfig, extras: dict | None = None) -> RunData:
        """The run's training set and its validation and test splits, resident on the device: the AVE features
        (`avel_fast.train.data.load_run_data`; `extras` as there). Another family returns an object with the same
        ``train``, ``val``, ``test`` and ``stats`` attributes, its splits `SeededBatches`."""
        from avel_fast.train.data import load_run_data

        return load_run_data(config, extras)

    def data_values(self, train: ResidentDataset) -> dict:
        """Config values the training data fixes, recorded in ``config.json``: the width of the audio features."""
        return {"audio_dim": train.audio.shape[-1]}

    def evaluate(
        self, model: nn.Module, dataset: ResidentDataset, config: TrainConfig, context: DistributedContext | None
    ) -> dict:
        """Metrics of `model` on a split (selection uses ``"accuracy"``): `segment_metrics` of its predictions."""
        from avel_fast.metrics import segment_metrics
        from avel_fast.train.engine import predict

        return segment_metrics(predict(model, dataset, config, context), dataset.labels)

    def test_report(
        self,
        model: nn.Module,
        data: RunData,
        config: TrainConfig,
        best: dict,
        label_sets: dict[str, tuple],
        context: DistributedContext | None,
    ) -> tuple[dict, torch.Tensor | None]:
        """The report of the best checkpoint `best` on test (``test_metrics.json``) and the raw test scores
        written to ``test_predictions.h5`` (`engine.test_report`; None: no predictions file)."""
        from avel_fast.train.engine import test_report

        return test_report(model, data.test, config, best, label_sets, context)

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

    def postprocessings(self, config: TrainConfig) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """Post-processings of the predictions reported beside the plain metrics (name -> function)."""
        return {}


FAMILIES: dict[str, ModelFamily] = {}
"""Every registered family by its name (``avel-fast train NAME``)."""


def register(family_class: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator: add one instance of `family_class` to `FAMILIES`."""
    FAMILIES[family_class.name] = family_class()
    return family_class


def family_of(model: str) -> ModelFamily:
    try:
        return FAMILIES[model]
    except KeyError:
        raise TrainingError(f"unknown model {model!r}: expected one of {', '.join(FAMILIES)}") from None
