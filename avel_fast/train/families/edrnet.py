"""EDRNet as a family of the loop: the Land-Shore-Sea loss, SMB fusion and B2ILC (docs/training.md#augmentations)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from avel_fast import models, nn as fast_nn, reference
from avel_fast._rng import derive_seed
from avel_fast.augment import gather_segments, smb_fusion
from avel_fast.data import AVEData
from avel_fast.data.dataset import video_labels_from_segments
from avel_fast.postprocess import b2ilc
from avel_fast.train.families.base import MODEL_PRESETS, ModelFamily, Objective, SegmentOptions, audio_dim
from avel_fast.train.loop import StepOutput
from avel_fast.train.options import option
from avel_fast.train.registry import register

EDRNET_OPTIMIZER = dict(optimizer="sgd", lr=0.1, weight_decay=5e-4)  # Nesterov momentum 0.9
SMB_STREAM = 1
"""Stream of the run seed that seeds SMB fusion (`derive_seed(seed, SMB_STREAM)`)."""


@dataclass(frozen=True)
class EDRNetOptions(SegmentOptions):
    """EDRNet's options: the schedule's cycle, the widths, the LSS loss and SMB fusion (EDRNet §3)."""

    cycle: int = option(20, "Epochs per cosine cycle (paper 20).", low=1)
    dim: int = option(768, "Model width (paper 768).", low=1)
    visual_channels: int | None = option(None, "Width of the 3x3 visual convolution (paper 512).", low=1)
    lss: bool = option(False, "SEL: add the Land-Shore-Sea loss (presets: on).")
    lss_weight: float = option(0.1, "Its weight λ₂ (default 0.1; needs --lss).", low=0.0)
    smb: bool = option(False, "SEL: add SMB-fused videos to the training set (paper preset: on).")
    smb_per_class: int = option(250, "Fused videos per event class (needs --smb).", low=1)

    supervised = ("lss", "smb")
    needs = (
        ("lss_weight", "needs --lss", lambda config: not config.options.lss),
        ("smb_per_class", "needs --smb", lambda config: not config.options.smb),
    )

    @classmethod
    def preset_values(cls, preset: str, setting: str) -> dict:
        values = {
            "paper": dict(lss=True, smb=True, smb_per_class=250),
            "quick": dict(epochs=20, lss=True, visual_channels=32, smb_per_class=100),
            "smoke": dict(lss=True, visual_channels=16, smb_per_class=4),
        }[preset]
        return {**MODEL_PRESETS[preset], **EDRNET_OPTIMIZER, **values}


class LSSObjective(Objective):
    """SEL: ``CE + λ₂·LSS`` on the gated features with ``lss`` (EDRNet eq. 11); otherwise the plain loss."""

    def __init__(self, family, model, data, config) -> None:
        super().__init__(family, model, data, config)
        fast = config.options.backend == "fast"
        lss = (fast_nn if fast else reference).LSSLoss(check_labels=False)  # labels checked when loaded
        self.lss = lss if config.options.lss else None

    def __call__(self, batch, epoch: int, step: int) -> StepOutput:
        if self.lss is None:
            return super().__call__(batch, epoch, step)
        logits, features = self.forward(batch.audio, batch.visual, return_features=True)
        logits = logits.float()
        loss = self.segment_loss(logits, batch.labels, batch.video_labels)
        loss = loss + self.config.options.lss_weight * self.lss(features.float(), batch.labels)
        return StepOutput(loss, logits, batch.labels)


def with_smb_videos(train: AVEData, per_class: int, seed: int) -> AVEData:
    """`train` followed by `per_class` SMB-fused videos per event class built from its own segments
    (docs/augmentations.md#smb), drawn once per run with a seed derived from the run seed."""
    fused = smb_fusion(train.labels.numpy(), per_class, seed=derive_seed(seed, SMB_STREAM))
    labels = torch.from_numpy(fused.labels)
    return AVEData(
        audio=torch.cat([train.audio, gather_segments(train.audio, fused.video_idx, fused.segment_idx)]),
        visual=torch.cat([train.visual, gather_segments(train.visual, fused.video_idx, fused.segment_idx)]),
        labels=torch.cat([train.labels, labels]),
        video_labels=torch.cat([train.video_labels, video_labels_from_segments(labels)]),
        class_names=train.class_names,
    )


@register
class EDRNetFamily(ModelFamily):
    name = "edrnet"
    title = "EDRNet"
    options_class = EDRNetOptions
    objective_class = LSSObjective
    postprocessings = {"b2ilc": b2ilc}

    def build_model(self, config, fast: bool):
        options = config.options
        return (models if fast else reference).EDRNet(
            audio_dim=audio_dim(config), dim=options.dim, visual_channels=options.visual_channels
        )

    def failure_options(self, config, failure: str) -> tuple[str, ...]:
        """Divergence: the LSS weight when the loss is on; out of memory: the width."""
        if failure == "divergence":
            return ("lss_weight",) if config.options.lss else ()
        return ("dim",)

    def training_set(self, train: AVEData, config) -> AVEData:
        """With ``smb`` (SEL only): the train split followed by its SMB-fused videos."""
        if config.options.smb:
            return with_smb_videos(train, config.options.smb_per_class, config.seed)
        return super().training_set(train, config)
