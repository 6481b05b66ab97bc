"""The AVE data of a training run: splits resident on the device, the training set as the family wants it.

* Source: `load_ave(config.data)` for real files, else `synthetic_ave(config.data_seed, ...)` in memory.
  A model that starts with global average pooling (DPNet) gets pooled visual features ``[V, T, 512]`` in
  float32; the others (EDRNet convolves the 7x7 maps) keep the maps in float16 storage, cast to float32 per
  batch (docs/data.md#resident).
* The training set: the train split as the family's data hook makes it (`ModelFamily.training_set`: in WSEL
  with the background-only videos, docs/training.md#settings; EDRNet adds its SMB videos).
* ``standardize``: every audio dimension and visual channel is shifted and scaled by the mean and standard
  deviation it has over the training set (all videos, segments and 7x7 positions), and validation and test
  by the same statistics, which the checkpoints keep (`FeatureStats`). The quick and smoke presets do this:
  VGGish/VGG19-like features are non-negative with a large common offset, and without it DPNet sits for
  several epochs on the class prior. The paper preset feeds the raw features, as the papers do
  (docs/training.md#presets); the checkpoints then hold ``feature_stats=None``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from collections.abc import Callable

from avel_fast.data import AVEData, ResidentDataset, load_ave, synthetic_ave
from avel_fast.train.config import TrainConfig
from avel_fast.train.errors import TrainingError

STATS_CHUNK_VIDEOS = 256
MIN_STD = 1e-6


@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension mean and standard deviation of the training features (float32 [D] audio, D its width, and
    [512] visual)."""

    audio_mean: torch.Tensor
    audio_std: torch.Tensor
    visual_mean: torch.Tensor
    visual_std: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, values: dict[str, torch.Tensor]) -> FeatureStats:
        return cls(**{name: values[name].cpu() for name in cls.__dataclass_fields__})


def _moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the last dimension over all others, accumulated per chunk in float64."""
    total = torch.zeros(features.shape[-1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in features.split(STATS_CHUNK_VIDEOS):
        flat = chunk.reshape(-1, features.shape[-1]).double()
        total += flat.sum(dim=0)
        squares += flat.square().sum(dim=0)
    count = features.numel() // features.shape[-1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0.0).sqrt()
    return mean.float(), std.float().clamp_min(MIN_STD)


def feature_stats(data: AVEData) -> FeatureStats:
    audio_mean, audio_std = _moments(data.audio)
    visual_mean, visual_std = _moments(data.visual)
    return FeatureStats(audio_mean, audio_std, visual_mean, visual_std)


def standardized(data: AVEData, stats: FeatureStats) -> AVEData:
    """`data` with standardized features, computed in place per chunk (`data` must own its tensors); refused
    when the audio width differs from the statistics' (a run evaluated on other data)."""
    if data.audio_dim != stats.audio_mean.shape[0]:
        raise TrainingError(
            f"the data has audio dim {data.audio_dim}, but the run was trained with {stats.audio_mean.shape[0]}"
        )
    for features, mean, std in (
        (data.audio, stats.audio_mean, stats.audio_std), (data.visual, stats.visual_mean, stats.visual_std)
    ):
        for chunk in features.split(STATS_CHUNK_VIDEOS):
            chunk.copy_((chunk.float() - mean) / std)
    return data


@dataclass
class RunData:
    train: ResidentDataset
    val: ResidentDataset
    test: ResidentDataset
    train_labels: torch.Tensor  # CPU int64 [N, T] of the training rows (the Replicate databases)
    test_index: torch.Tensor  # CPU int64 [N]: the test rows' indices into the dataset's videos
    num_videos: int  # videos of the dataset (rows of its label files), the background-only ones left out
    stats: FeatureStats | None  # the standardization, None when the run uses raw features
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per-training-row targets a stage of a recipe adds (e.g. window labels), indexed by ``Batch.index``."""
    label_sets: dict[str, tuple] = field(default_factory=dict)
    """Other label sets the test split is scored against: name -> (file, labels [N, T] of the test rows)."""


@dataclass
class EvalSplit:
    """One split resident on the device and its rows' indices into the dataset's videos
    (docs/metrics.md#saved-predictions)."""

    rows: ResidentDataset
    video_index: torch.Tensor  # CPU int64 [N]
    num_videos: int  # videos of the dataset (rows of its label files)


def load_source(config: TrainConfig, pooled: bool) -> AVEData:
    """The whole dataset of `config`: the AVE directory or the synthetic set, `pooled` when the family's model
    starts with global average pooling (`ModelFamily.pooled_visual`)."""
    visual_dtype = torch.float32 if pooled else torch.float16
    if config.data is not None:
        if not Path(config.data).is_dir():
            raise TrainingError(f"--data {config.data}: no such directory")
        return load_ave(config.data, setting=config.setting, pooled_visual=pooled, visual_dtype=visual_dtype)
    background = config.synthetic_background_videos if config.setting == "wsel" else 0
    return synthetic_ave(
        config.data_seed, config.synthetic_videos, background, pooled_visual=pooled, visual_dtype=visual_dtype
    )


def split_data(data: AVEData, split: str, source: str) -> AVEData:
    """The rows of `split` (a copy); `TrainingError` when the dataset has no such split or it is empty."""
    if split not in data.splits or len(data.splits[split]) == 0:
        raise TrainingError(f"dataset {source}: split {split!r} missing or empty")
    return data.subset(split)


def load_run_data(
    config: TrainConfig,
    pooled: bool,
    training_set: Callable[[AVEData, TrainConfig], AVEData],
    extras: dict[str, torch.Tensor] | None = None,
) -> RunData:
    """The training set of `config` (`training_set` of its train split) and the validation and test splits,
    resident on its device, with the per-training-row `extras` moved there."""
    data = load_source(config, pooled)
    source = config.data or "synthetic"
    train = training_set(split_data(data, "train", source), config)
    val, test = split_data(data, "val", source), split_data(data, "test", source)
    test_index, num_videos = data.splits["test"], len(data)
    del data
    stats = feature_stats(train) if config.options.standardize else None
    if stats is not None:
        train, val, test = (standardized(part, stats) for part in (train, val, test))
    return RunData(
        train=ResidentDataset(train, device=config.device),
        val=ResidentDataset(val, device=config.device),
        test=ResidentDataset(test, device=config.device),
        train_labels=train.labels,
        test_index=test_index,
        num_videos=num_videos,
        stats=stats,
        extras={name: value.to(config.device) for name, value in (extras or {}).items()},
    )


def load_split(config: TrainConfig, split: str, stats: FeatureStats | None, pooled: bool) -> EvalSplit:
    """One split of the run's dataset, standardized with the run's `stats`, resident on the device."""
    data = load_source(config, pooled)
    rows = split_data(data, split, config.data or "synthetic")
    video_index, num_videos = data.splits[split], len(data)
    del data
    rows = ResidentDataset(standardized(rows, stats) if stats is not None else rows, device=config.device)
    return EvalSplit(rows=rows, video_index=video_index, num_videos=num_videos)
