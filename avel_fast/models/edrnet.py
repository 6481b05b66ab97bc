"""EDRNet built from the fast modules (docs/models.md#edrnet)."""
from __future__ import annotations

from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, NUM_SEGMENTS, VISUAL_SHAPE
from avel_fast.nn.patching import patch
from avel_fast.reference import edrnet as reference


class EDRNet(reference.EDRNet):
    """`avel_fast.reference.EDRNet` with its GatedFusion swapped for `avel_fast.nn.GatedFusion`."""

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        audio_dim: int = AUDIO_DIM,
        visual_dim: int = VISUAL_SHAPE[-1],
        dim: int = 768,
        layers: int = 4,
        kernel_size: int = 3,
        visual_channels: int | None = None,
        num_segments: int = NUM_SEGMENTS,
    ) -> None:
        super().__init__(num_classes, audio_dim, visual_dim, dim, layers, kernel_size, visual_channels, num_segments)
        patch(self)
