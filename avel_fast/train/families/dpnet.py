"""DPNet as a family of the engine: Replicate and Link in SEL (docs/training.md#augmentations, DPNet §3.4)."""
from __future__ import annotations

from avel_fast import models, reference
from avel_fast._rng import derive_seed
from avel_fast.augment import ReplicaSampler, gather_segments, interleave
from avel_fast.train.errors import TrainingError
from avel_fast.train.families.base import ModelFamily, Objective, StepOutput, audio_dim, register

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
        self.sampler = ReplicaSampler(data.train_labels.numpy()) if config.replicate else None

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
        logits = self.forward(audio, visual, group_size=2 if self.config.link else 1).float()
        video_labels = interleave(batch.video_labels, batch.video_labels)
        return StepOutput(self.segment_loss(logits, labels, video_labels), logits, labels)


@register
class DPNetFamily(ModelFamily):
    name = "dpnet"
    title = "DPNet"
    switches = {"replicate": "DPNet's Replicate", "link": "DPNet's Link"}
    supervised_switches = ("replicate", "link")
    options = {"dropout": "its RGCT dropout"}
    pooled_visual = True
    objective_class = ReplicaObjective

    def preset_values(self, preset: str, setting: str) -> dict:
        return dict(lr=1e-3, replicate=preset == "paper", link=preset == "paper")

    def validate(self, config) -> None:
        if config.link and not config.replicate:
            raise TrainingError("--link needs --replicate (Link connects each video with its replica)")

    def build_model(self, config, fast: bool):
        module = models if fast else reference
        return module.DPNet(audio_dim=audio_dim(config), dim=config.dim, dropout=config.dropout)
