"""`AVEData`: one AVE-format dataset held as CPU tensors in the contract of docs/data.md#contract."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from avel_fast.constants import BACKGROUND, CLASS_NAMES, NUM_CLASSES, NUM_SEGMENTS, VISUAL_SHAPE

SPLIT_NAMES = ("train", "val", "test")


def pool_visual(visual: torch.Tensor) -> torch.Tensor:
    """Global average pooling of channels-last maps [..., 7, 7, 512] -> [..., 512] in float32
    (docs/data.md#resident)."""
    return visual.float().mean(dim=(-3, -2))


def video_labels_from_segments(labels: torch.Tensor) -> torch.Tensor:
    """Multi-hot [V, 29] of the event classes present in segment labels [V, T]; only column 28 when none is."""
    onehot = torch.zeros(labels.shape[0], NUM_CLASSES, dtype=torch.float32)
    onehot.scatter_(1, labels, 1.0)
    has_event = onehot[:, :BACKGROUND].any(dim=1)
    onehot[has_event, BACKGROUND] = 0.0
    return onehot


@dataclass
class AVEData:
    """Features and labels of V videos (docs/data.md#contract), all CPU tensors.

    `audio` is [V, T, D], D the width of the audio features (128 for VGGish, 502 for sound textures).
    `visual` is [V, T, 7, 7, 512] (float32, or float16 storage) or, for models that start with global average
    pooling, the pooled [V, T, 512]. `splits` maps "train"/"val"/"test" to int64 row indices (empty for a
    subset or for the background-only videos). `background` holds the background-only videos added to training
    in the weakly supervised setting, or None.
    """

    audio: torch.Tensor
    visual: torch.Tensor
    labels: torch.Tensor
    video_labels: torch.Tensor
    splits: dict[str, torch.Tensor] = field(default_factory=dict)
    class_names: tuple[str, ...] = CLASS_NAMES
    background: AVEData | None = None

    def __post_init__(self) -> None:
        if self.audio.dim() != 3 or self.audio_dim < 1:
            raise ValueError(f"AVEData.audio: shape {tuple(self.audio.shape)}, expected (V, {NUM_SEGMENTS}, D), D >= 1")
        num_videos = self.audio.shape[0]
        expected = {
            "audio": ((num_videos, NUM_SEGMENTS, self.audio_dim),),
            "visual": ((num_videos, NUM_SEGMENTS, *VISUAL_SHAPE), (num_videos, NUM_SEGMENTS, VISUAL_SHAPE[-1])),
            "labels": ((num_videos, NUM_SEGMENTS),),
            "video_labels": ((num_videos, NUM_CLASSES),),
        }
        for name, shapes in expected.items():
            shape = tuple(getattr(self, name).shape)
            if shape not in shapes:
                raise ValueError(f"AVEData.{name}: shape {shape}, expected {' or '.join(map(str, shapes))}")
        if self.background is not None and self.background.audio_dim != self.audio_dim:
            raise ValueError(
                f"AVEData.background: audio width {self.background.audio_dim}, but the videos have {self.audio_dim}"
            )
        if self.labels.dtype != torch.int64:
            raise ValueError(f"AVEData.labels: dtype {self.labels.dtype}, expected torch.int64")
        for name, index in self.splits.items():
            if index.dtype != torch.int64 or index.dim() != 1:
                raise ValueError(f"AVEData.splits[{name!r}]: expected a 1-D int64 tensor")

    def __len__(self) -> int:
        return self.audio.shape[0]

    @property
    def audio_dim(self) -> int:
        """Width D of the audio features [V, T, D]: 128 for VGGish, 502 for sound textures (docs/data.md#contract)."""
        return self.audio.shape[-1]

    @property
    def visual_pooled(self) -> bool:
        """True when `visual` holds pooled [V, T, 512] features instead of 7x7 maps."""
        return self.visual.dim() == 3

    def subset(self, split_or_index: str | torch.Tensor) -> AVEData:
        """The rows of one split ("train", "val", "test") or of an index tensor; splits of the result are empty."""
        if isinstance(split_or_index, str):
            if split_or_index not in self.splits:
                raise KeyError(f"no split {split_or_index!r} (have: {', '.join(self.splits) or 'none'})")
            index = self.splits[split_or_index]
        else:
            index = torch.as_tensor(split_or_index)
            if index.dtype == torch.bool or index.dtype.is_floating_point:
                raise ValueError(f"subset takes a split name or integer row indices, got dtype {index.dtype}")
            index = index.long()
        return replace(
            self,
            audio=self.audio.index_select(0, index),
            visual=self.visual.index_select(0, index),
            labels=self.labels.index_select(0, index),
            video_labels=self.video_labels.index_select(0, index),
            splits={},
        )

    def with_background(self) -> AVEData:
        """These videos followed by the background-only ones (the weakly supervised training set)."""
        if self.background is None:
            return self
        extra = self.background
        if extra.visual_pooled != self.visual_pooled:
            raise ValueError("background videos and main videos differ in visual pooling")
        return AVEData(
            audio=torch.cat([self.audio, extra.audio]),
            visual=torch.cat([self.visual, extra.visual.to(self.visual.dtype)]),
            labels=torch.cat([self.labels, extra.labels]),
            video_labels=torch.cat([self.video_labels, extra.video_labels]),
            class_names=self.class_names,
        )

    def pooled(self) -> AVEData:
        """The same data with the visual maps pooled to [V, T, 512] float32 (no-op when already pooled)."""
        if self.visual_pooled:
            return self
        background = self.background.pooled() if self.background is not None else None
        return replace(self, visual=pool_visual(self.visual), background=background)
