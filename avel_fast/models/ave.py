"""The AVE baseline with the fused audio-guided attention (`docs/weak.md#ave-baseline`)."""
from __future__ import annotations

import torch

from avel_fast.nn.attention import audio_guided_attention
from avel_fast.nn.patching import patch
from avel_fast.reference import ave as reference


class AVEBaseline(reference.AVEBaseline):
    """`avel_fast.reference.AVEBaseline` (same constructor, parameters and `state_dict`) whose attention epilogue
    runs fused (`avel_fast.nn.attention`) and whose Bi-LSTMs `torch.compile` captures (`avel_fast.nn.BiLSTM`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        patch(self)

    def attend(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return audio_guided_attention(self, audio, visual)
