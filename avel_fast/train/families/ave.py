"""The AVE baseline as a family of the loop (docs/weak.md#ave-baseline, docs/weak.md#recipes)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from avel_fast import models, reference
from avel_fast.constants import NUM_CLASSES
from avel_fast.reference.ave import max_mil_prob, soft_margin_on_probs
from avel_fast.reference.label_refinement import WeakBase
from avel_fast.train.families.base import audio_dim
from avel_fast.train.families.weak import WeakFamily, WeakOptions
from avel_fast.train.registry import register


@dataclass(frozen=True)
class AVEOptions(WeakOptions):
    """The AVE baseline's options: those of label refinement."""

    paper_epochs = {"sel": 300, "wsel": 250}
    quick_epochs = 4


@register
class AVEFamily(WeakFamily):
    """SEL: the multi-label soft margin loss on the segment softmax against one-hot labels; WSEL: the same loss
    on ``softmax(max_t x_t)`` against the video labels (eq. 6)."""

    name = "ave"
    title = "AVE baseline"
    options_class = AVEOptions

    def build_model(self, config, fast: bool):
        return (models if fast else reference).AVEBaseline(audio_dim=audio_dim(config))

    def video_probabilities(self, scores):
        return max_mil_prob(scores.float())

    def weak_loss(self, probabilities, targets):
        return soft_margin_on_probs(probabilities, targets)

    def supervised_loss(self, output, labels):
        return soft_margin_on_probs(output.softmax(dim=-1), F.one_hot(labels, NUM_CLASSES))

    def weak_base(self, model):
        return WeakBase.ave(model)
