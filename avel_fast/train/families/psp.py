"""PSP as a family of the loop (docs/weak.md#psp, docs/weak.md#recipes)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from avel_fast import models, reference
from avel_fast.reference.label_refinement import WeakBase
from avel_fast.reference.psp import AVPS_WEIGHT, avps_loss, bce_on_probs, mean_mil_prob
from avel_fast.train.families.base import audio_dim
from avel_fast.train.families.weak import WeakFamily, WeakOptions
from avel_fast.train.options import option
from avel_fast.train.registry import register


@dataclass(frozen=True)
class PSPOptions(WeakOptions):
    """PSP's options: its dropout and affinity pruning threshold, and those of label refinement."""

    dropout: float = option(0.1, "Its dropout (default 0.1).", low=0.0, high=1.0)
    threshold: float | None = option(
        None, "Affinity pruning threshold, a cosine in [0, 1] (default 0.099 sel, 0.095 wsel).", low=0.0, high=1.0,
        upto=True,
    )  # fmt: skip

    paper_epochs = {"sel": 300, "wsel": 200}
    quick_epochs = 4


@register
class PSPFamily(WeakFamily):
    """SEL: ``CE + 100·AVPS`` on the audio-visual cosine (PSP eqs. 8-9); WSEL: binary cross-entropy of
    ``softmax(mean_t x̃_t)`` against the binary video labels (TLR §3's presence/absence targets)."""

    name = "psp"
    title = "PSP"
    options_class = PSPOptions

    def build_model(self, config, fast: bool):
        module, options = models if fast else reference, config.options
        return module.PSPNet(config.setting, options.threshold, audio_dim=audio_dim(config), dropout=options.dropout)

    def head_scores(self, output):
        return output[0] if isinstance(output, tuple) else output

    def video_probabilities(self, scores):
        return mean_mil_prob(scores.float())

    def weak_loss(self, probabilities, targets):
        return bce_on_probs(probabilities, targets)

    def supervised_loss(self, output, labels):
        """SEL (scores and cosine): ``CE + AVPS_WEIGHT·avps_loss``; the weak model's scores alone: CE."""
        scores, cosine = output if isinstance(output, tuple) else (output, None)
        loss = F.cross_entropy(scores.flatten(0, 1), labels.flatten())
        return loss if cosine is None else loss + AVPS_WEIGHT * avps_loss(cosine, labels)

    def weak_base(self, model):
        return WeakBase.psp(model)
