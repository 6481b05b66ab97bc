"""DPNet as a family of the loop: Replicate and Link in SEL (docs/training.md#augmentations, DPNet §3.4)."""
from __future__ import annotations

from dataclasses import dataclass

from avel_fast import models, reference
from avel_fast._rng import derive_seed
from avel_fast.augment import ReplicaSampler, gather_segments, interleave
from avel_fast.train.errors import TrainingError
from avel_fast.train.families.base import MODEL_PRESETS, ModelFamily, Objective, SegmentOptions, audio_dim
from avel_fast.train.loop import StepOutput
from avel_fast.train.options import option
from avel_fast.train.registry import register

REPLICA_STREAM = 2
"""Stream of the run seed under which the replica seeds of every (epoch, step) are derived."""


def replica_seed(seed: int, epoch: int, step: int) -> int:
    return derive_seed(derive_seed(derive_seed(seed, REPLICA_STREAM), epoch), step)


class ReplicaObjective(Objective):
    """With ``replicate``: one replica per video (`ReplicaSampler`, seeded by ``(seed, epoch, step)`` and drawn for
    the whole global batch on the host, so a replica depends on its video's position in the global batch, not on
    the number of ranks), gathered on the device and interleaved with the originals, the RGCT linking each pair
    when ``link`` (``group_size=2``), the loss on both."""

    def __init__(self, family, model, data, config) -> None:
        super().__init__(family, model, data, config)
        self.sampler = ReplicaSampler(data.train_labels.numpy()) if config.options.replicate else None

    def __call__(self, batch, epoch: int, step: int) -> StepOutput:
        if self.sampler is None:
            return super().__call__(batch, epoch, step)
        train = self.data.train
        seed = replica_seed(self.config.seed, epoch, step)
        video_idx, segment_idx = self.sampler.sample(batch.global_index, seed)
        video_idx, segment_idx = video_idx[batch.positions], segment_idx[batch.positions]
        audio = interleave(batch.audio, gather_segments(train.audio, video_idx, segment_idx))
        visual = gather_segments(train.visual, video_idx, segment_idx).to(train.compute_dtype)
        visual = interleave(batch.visual, visual)
        labels = interleave(batch.labels, batch.labels)
        logits = self.forward(audio, visual, group_size=2 if self.config.options.link else 1).float()
        video_labels = interleave(batch.video_labels, batch.video_labels)
        return StepOutput(self.segment_loss(logits, labels, video_labels), logits, labels)


@dataclass(frozen=True)
class DPNetOptions(SegmentOptions):
    """DPNet's options: the schedule's cycle, the width, the RGCT dropout, Replicate and Link (DPNet §3.4)."""

    cycle: int = option(20, "Epochs per cosine cycle (paper 20).", low=1)
    dim: int = option(768, "Model width (paper 768).", low=1)
    dropout: float = option(0.2, "RGCT dropout (default 0.2).", low=0.0, high=1.0)
    replicate: bool = option(False, "SEL: one replica per video in every mini-batch (paper preset: on).")
    link: bool = option(False, "SEL: link each original with its replica in the RGCT (needs --replicate).")

    supervised = ("replicate", "link")

    @classmethod
    def preset_values(cls, preset: str, setting: str) -> dict:
        return {**MODEL_PRESETS[preset], "lr": 1e-3, "replicate": preset == "paper", "link": preset == "paper"}

    def validate(self, config, explicit=frozenset()) -> None:
        super().validate(config, explicit)
        if self.link and not self.replicate:
            raise TrainingError("--link needs --replicate (Link connects each video with its replica)")


@register
class DPNetFamily(ModelFamily):
    name = "dpnet"
    title = "DPNet"
    options_class = DPNetOptions
    pooled_visual = True
    objective_class = ReplicaObjective

    def build_model(self, config, fast: bool):
        module = models if fast else reference
        return module.DPNet(audio_dim=audio_dim(config), dim=config.options.dim, dropout=config.options.dropout)

    def failure_options(self, config, failure: str) -> tuple[str, ...]:
        """Out of memory: the width."""
        return ("dim",) if failure == "memory" else ()
