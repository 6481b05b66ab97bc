"""DPNet built from the fast modules (docs/models.md#dpnet)."""
from __future__ import annotations

from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, VISUAL_SHAPE
from avel_fast.nn.patching import patch
from avel_fast.reference import dpnet as reference


class DPNet(reference.DPNet):
    """`avel_fast.reference.DPNet` with its RGCT/TemporalConv/DPBlock/GatedFusion swapped for `avel_fast.nn`'s."""

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        audio_dim: int = AUDIO_DIM,
        visual_dim: int = VISUAL_SHAPE[-1],
        dim: int = 768,
        blocks: int = 4,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(num_classes, audio_dim, visual_dim, dim, blocks, dropout)
        patch(self)
