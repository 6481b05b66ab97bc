"""EDRNet as a family of the engine: the Land-Shore-Sea loss, SMB fusion and B2ILC (docs/training.md#augmentations)."""
from __future__ import annotations

from avel_fast import models, nn as fast_nn, reference
from avel_fast.postprocess import b2ilc
from avel_fast.train.families.base import ModelFamily, Objective, StepOutput, audio_dim, register

EDRNET_OPTIMIZER = dict(optimizer="sgd", lr=0.1, weight_decay=5e-4)  # Nesterov momentum 0.9


class LSSObjective(Objective):
    """SEL: ``CE + λ₂·LSS`` on the gated features with ``lss`` (EDRNet eq. 11); otherwise the plain loss."""

    def __init__(self, family, model, data, config) -> None:
        super().__init__(family, model, data, config)
        fast = config.backend == "fast"
        lss = (fast_nn if fast else reference).LSSLoss(check_labels=False)  # labels checked when loaded
        self.lss = lss if config.lss else None

    def __call__(self, batch, epoch: int, step: int) -> StepOutput:
        if self.lss is None:
            return super().__call__(batch, epoch, step)
        logits, features = self.forward(batch.audio, batch.visual, return_features=True)
        logits = logits.float()
        loss = self.segment_loss(logits, batch.labels, batch.video_labels)
        loss = loss + self.config.lss_weight * self.lss(features.float(), batch.labels)
        return StepOutput(loss, logits, batch.labels)


@register
class EDRNetFamily(ModelFamily):
    name = "edrnet"
    title = "EDRNet"
    switches = {"lss": "EDRNet's Land-Shore-Sea loss", "smb": "EDRNet's SMB video fusion"}
    supervised_switches = ("lss", "smb")
    options = {"visual_channels": "its 3x3 visual conv"}
    objective_class = LSSObjective

    def preset_values(self, preset: str, setting: str) -> dict:
        values = {
            "paper": dict(lss=True, smb=True, smb_per_class=250),
            "quick": dict(epochs=20, lss=True, visual_channels=32, smb_per_class=100),
            "smoke": dict(lss=True, visual_channels=16),
        }[preset]
        return {**EDRNET_OPTIMIZER, **values}

    def build_model(self, config, fast: bool):
        return (models if fast else reference).EDRNet(
            audio_dim=audio_dim(config), dim=config.dim, visual_channels=config.visual_channels
        )

    def postprocessings(self, config) -> dict:
        return {"b2ilc": b2ilc}
