"""What the AVE baseline and PSP families share (docs/weak.md#recipes): the public recipes (Adam 1e-3, batch 64,
constant learning rate, the last partial batch dropped, raw features), the losses per setting and the
label-refinement options.

Objective per batch: SEL, the family's supervised loss on the segment labels; WSEL, ``L_MIL = g(Φ(x), Y)`` with
the family's video prediction Φ (softmax of its MIL pooling over time) and weak loss g, plus what a stage of label
refinement adds (docs/weak.md#label-refinement, the pipeline in `avel_fast.train.refine`):

* ``aux`` (Step 1 of ``a+lr``): ``+ L_A``, one background-only partner per video drawn uniformly from the
  training rows, seeded by ``(seed, epoch, step)`` (`aux_partners`);
* ``lr``, ``a+lr`` (Step 3): ``+ L_LR`` against the window labels of Step 2, ``RunData.extras["window_labels"]``;
* ``dummy``: ``+ L_LR`` against every window labelled with its video's labels;
* ``oracle``: ``+ L_LR`` against the ground-truth window labels of the batch's segment labels;
* ``pl``: the family's supervised loss against ``RunData.extras["segment_labels"]`` (pseudo labels) instead.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from avel_fast._rng import derive_seed
from avel_fast.constants import BACKGROUND, NUM_SEGMENTS
from avel_fast.reference.label_refinement import (
    WeakBase,
    aux_loss,
    check_splice_window,
    draw_second_videos,
    dummy_window_labels,
    oracle_window_labels,
    window_loss,
)
from avel_fast.train.errors import TrainingError
from avel_fast.train.families.base import ModelFamily, Objective, StepOutput, autocast
from avel_fast.train.schedule import ConstantSchedule

AUX_STREAM = 3
"""Stream of the run seed under which the ``L_A`` partners of every (epoch, step) are drawn."""

WEAK_RECIPE = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=64, standardize=False)
"""Adam 1e-3 without weight decay, batch 64, raw features: both public codes and TLR §5 (docs/weak.md#recipes)."""
STAGE_EPOCHS = {
    "paper": dict(step1_epochs=200, epochs=100),
    "quick": dict(step1_epochs=4, epochs=4),
    "smoke": dict(step1_epochs=1, epochs=1),
}
"""Epochs of the refinement stages (TLR §5: 200 for Step 1, 100 for Step 3); quick gives each stage the budget of
a plain quick run (a last stage of one or two epochs does not converge at these sizes), smoke the least."""
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


def background_rows(video_labels: torch.Tensor) -> torch.Tensor:
    """Rows whose video label is background only (the partners of synthetic videos), int64 on their device."""
    return (video_labels[:, :BACKGROUND] <= 0).all(dim=1).nonzero().flatten()


def aux_partners(background: torch.Tensor, batch_size: int, seed: int, epoch: int, step: int) -> torch.Tensor:
    """One background-only partner row per video of a batch, uniform with replacement (TLR eq. 14)."""
    generator = torch.Generator().manual_seed(derive_seed(derive_seed(derive_seed(seed, AUX_STREAM), epoch), step))
    return draw_second_videos(batch_size, background, generator)


class AutocastModel:
    """`model`'s per-segment split (`segment_features`, `from_segment_features`) under the run's precision, the
    scores in fp32: what `WeakBase` calls while training."""

    def __init__(self, model, config) -> None:
        self.model, self.config = model, config

    def segment_features(self, audio: torch.Tensor, visual: torch.Tensor):
        with autocast(self.config):
            return self.model.segment_features(audio, visual)

    def from_segment_features(self, *features: torch.Tensor) -> torch.Tensor:
        with autocast(self.config):
            return self.model.from_segment_features(*features).float()


class WeakObjective(Objective):
    """The loss of the module docstring, in fp32 from the model's outputs."""

    def __init__(self, family, model, data, config) -> None:
        super().__init__(family, model, data, config)
        self.base = family.weak_base(AutocastModel(model, config))
        self.background = None
        if config.aux:
            if not hasattr(model, "segment_features"):
                raise TrainingError(
                    f"--aux splices per-segment features, which {type(model).__name__} does not expose: "
                    "run it on a single process (not under torchrun)"
                )
            self.background = background_rows(data.train.video_labels)
            if len(self.background) == 0:
                raise TrainingError("--aux needs background-only videos in the training set (none found)")

    def outputs(self, batch) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, ...]]:
        """The segment scores ``[B, T, C]`` and the whole output of the model's forward, in fp32."""
        output = self.forward(batch.audio, batch.visual)
        output = tuple(part.float() for part in output) if isinstance(output, tuple) else output.float()
        return self.family.head_scores(output), output

    def __call__(self, batch, epoch: int, step: int) -> StepOutput:
        config, extras = self.config, self.data.extras
        if config.aux:
            return self.step_with_aux(batch, epoch, step)
        scores, output = self.outputs(batch)
        if config.setting == "sel":
            return StepOutput(self.family.supervised_loss(output, batch.labels), scores, batch.labels)
        if config.refine == "pl":
            labels = extras["segment_labels"][batch.index]
            return StepOutput(self.family.supervised_loss(output, labels), scores, labels)
        loss = self.family.mil_loss(scores, batch.video_labels)
        if config.refine in ("lr", "a+lr"):
            loss = loss + self.window_loss(scores, extras["window_labels"][batch.index])
        elif config.refine == "dummy":
            labels = dummy_window_labels(batch.video_labels, scores.shape[1], config.window, config.stride)
            loss = loss + self.window_loss(scores, labels)
        elif config.refine == "oracle":
            loss = loss + self.window_loss(scores, oracle_window_labels(batch.labels, config.window, config.stride))
        return StepOutput(loss, scores, batch.labels)

    def window_loss(self, scores: torch.Tensor, window_labels: torch.Tensor) -> torch.Tensor:
        """``L_LR`` (TLR eqs. 12-13)."""
        return window_loss(self.base, scores, window_labels, self.config.window, self.config.stride)

    def step_with_aux(self, batch, epoch: int, step: int) -> StepOutput:
        """``L_MIL + L_A`` (TLR eqs. 14-18): the per-segment features of the batch and of its partners in one
        forward, ``L_MIL`` on the batch's own, ``L_A`` on the synthetic videos spliced from both."""
        train, config, size = self.data.train, self.config, len(batch.index)
        partners = aux_partners(self.background, size, config.seed, epoch, step)
        audio = torch.cat((batch.audio, train.audio.index_select(0, partners)))
        visual = torch.cat((batch.visual, train.visual.index_select(0, partners).to(train.compute_dtype)))
        labels = torch.cat((batch.video_labels, train.video_labels.index_select(0, partners)))
        features = self.base.segment_features(audio, visual)
        scores = self.base.scores(tuple(feature[:size] for feature in features))
        rows = torch.arange(size, device=audio.device)
        aux = aux_loss(self.base, features, rows, rows + size, labels, config.window, config.stride)
        return StepOutput(self.family.mil_loss(scores, batch.video_labels) + aux, scores, batch.labels)


class WeakFamily(ModelFamily):
    """The shared part of the AVE baseline and PSP families (module docstring). Subclasses give `build_model`,
    `video_probabilities`, `weak_loss` and `supervised_loss`."""

    switches: ClassVar[dict[str, str]] = {
        "aux": "the auxiliary objective L_A of label refinement",
        "keep_video_label": "the video label for event videos whose windows all came out background",
    }
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
        if config.aux and config.setting != "wsel":
            raise TrainingError("--aux is a weak objective: use it with --setting wsel")
        if config.aux and config.refine != "none":
            raise TrainingError(f"--aux is Step 1 of --refine a+lr: it cannot go with --refine {config.refine}")
        if config.aux or config.refine in ("lr", "a+lr", "dummy", "oracle"):
            auxiliary = config.aux or config.refine == "a+lr"
            try:
                check_splice_window(NUM_SEGMENTS, config.window, config.stride, auxiliary=auxiliary)
            except ValueError as err:
                raise TrainingError(f"--window {config.window} --stride {config.stride}: {err}") from None

    def schedule(self, config) -> ConstantSchedule:
        return ConstantSchedule()

    def weak_base(self, model) -> WeakBase:
        """The model as label refinement sees it: its MIL pooling and weak loss."""
        raise NotImplementedError

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
