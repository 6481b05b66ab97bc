"""What the AVE baseline and PSP families share (docs/weak.md#recipes): the public recipes (Adam 1e-3, batch 64,
constant learning rate, the last partial batch dropped, raw features), the losses per setting and the
label-refinement options.

Objective per batch: SEL, the family's supervised loss on the segment labels; WSEL, ``L_MIL = g(Φ(x), Y)`` with
the family's video prediction Φ (softmax of its MIL pooling over time) and weak loss g.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from avel_fast.train.errors import TrainingError
from avel_fast.train.families.base import ModelFamily, Objective, StepOutput
from avel_fast.train.schedule import ConstantSchedule

WEAK_RECIPE = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=64, standardize=False)
"""Adam 1e-3 without weight decay, batch 64, raw features: both public codes and TLR §5 (docs/weak.md#recipes)."""
STAGE_EPOCHS = {
    "paper": dict(step1_epochs=200, epochs=100),
    "quick": dict(step1_epochs=2, epochs=2),
    "smoke": dict(step1_epochs=1, epochs=1),
}
"""Epochs of the refinement stages (TLR §5: 200 for Step 1, 100 for Step 3); quick and smoke in proportion."""
REFINE_OPTIONS = {
    "refine": "its label-refinement pipeline",
    "window": "the windows of label refinement",
    "stride": "the windows of label refinement",
    "tau": "the window-label threshold of label refinement",
    "step1_epochs": "the first stage of label refinement",
}
UNUSED_SHARED_OPTIONS = {
    "cycle": "its learning rate is constant",
    "dim": "its widths are those of the public model",
}


class WeakObjective(Objective):
    """The loss of the module docstring, in fp32 from the model's outputs."""

    def outputs(self, batch) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, ...]]:
        """The segment scores ``[B, T, C]`` and the whole output of the model's forward, in fp32."""
        output = self.forward(batch.audio, batch.visual)
        output = tuple(part.float() for part in output) if isinstance(output, tuple) else output.float()
        return self.family.head_scores(output), output

    def __call__(self, batch, epoch: int, step: int) -> StepOutput:
        scores, output = self.outputs(batch)
        if self.config.setting == "sel":
            return StepOutput(self.family.supervised_loss(output, batch.labels), scores, batch.labels)
        return StepOutput(self.family.mil_loss(scores, batch.video_labels), scores, batch.labels)


class WeakFamily(ModelFamily):
    """The shared part of the AVE baseline and PSP families (module docstring). Subclasses give `build_model`,
    `video_probabilities`, `weak_loss` and `supervised_loss`."""

    options: ClassVar[dict[str, str]] = REFINE_OPTIONS
    ignored_options: ClassVar[dict[str, str]] = UNUSED_SHARED_OPTIONS
    objective_class = WeakObjective
    drop_last = True
    paper_epochs: ClassVar[dict[str, int]]
    """Epochs of a plain run of the paper preset per setting."""
    quick_epochs: ClassVar[int]

    def preset_values(self, preset: str, setting: str) -> dict:
        epochs = {"paper": self.paper_epochs[setting], "quick": self.quick_epochs, "smoke": 2}[preset]
        values = dict(WEAK_RECIPE, epochs=epochs, step1_epochs=STAGE_EPOCHS[preset]["step1_epochs"])
        return {**values, "batch_size": 16} if preset == "smoke" else values

    def dependent_preset_values(self, preset: str, values: dict) -> dict:
        """A refined run's ``epochs`` are those of its last stage (`STAGE_EPOCHS`)."""
        return {"epochs": STAGE_EPOCHS[preset]["epochs"]} if values.get("refine", "none") != "none" else {}

    def validate(self, config) -> None:
        if config.refine != "none" and config.setting != "wsel":
            raise TrainingError(f"--refine {config.refine} refines weak labels: use it with --setting wsel")

    def schedule(self, config) -> ConstantSchedule:
        return ConstantSchedule()

    def head_scores(self, output) -> torch.Tensor:
        """The raw segment scores in the model's forward output."""
        return output

    def scores(self, model, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return self.head_scores(model(audio, visual))

    def weak_loss(self, probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """g: the weak loss of video probabilities against binary label vectors."""
        raise NotImplementedError

    def mil_loss(self, scores: torch.Tensor, video_labels: torch.Tensor) -> torch.Tensor:
        """``L_MIL = g(Φ(x), Y)``, mean over the videos."""
        return self.weak_loss(self.video_probabilities(scores), video_labels)

    def supervised_loss(self, output, labels: torch.Tensor) -> torch.Tensor:
        """The public fully supervised loss of the model's forward output against segment labels ``[B, T]``."""
        raise NotImplementedError
