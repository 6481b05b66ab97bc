"""PSP with the fused audio-guided attention (`docs/weak.md#psp`)."""
from __future__ import annotations

from avel_fast.nn.patching import patch
from avel_fast.reference import psp as reference


class PSPNet(reference.PSPNet):
    """`avel_fast.reference.PSPNet` (same constructor, parameters and `state_dict`) with its ``attention`` swapped
    for `avel_fast.nn.AudioGuidedAttention` and its Bi-LSTMs for `avel_fast.nn.BiLSTM`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        patch(self)
