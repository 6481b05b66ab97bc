"""Gated audio-visual fusion (DPNet eqs. 9-10, EDRNet eqs. 4-5; docs/models.md#gated-fusion)."""
from __future__ import annotations

import torch
from torch import nn


class GatedFusion(nn.Module):
    """``g = σ(Conv1d_k([a, v]))`` over time, output ``g ⊙ a + (1 − g) ⊙ v``.

    ``kernel_size=1`` is DPNet's per-segment FC gate (eq. 9), ``kernel_size=3`` EDRNet's temporal gate (eq. 4);
    padding ``k // 2`` keeps the length, so `kernel_size` must be odd. PyTorch's default `nn.Conv1d` init.
    """

    def __init__(self, dim: int, kernel_size: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int (length-preserving gate), got {kernel_size}")
        self.dim = dim
        self.gate = nn.Conv1d(2 * dim, dim, kernel_size, padding=kernel_size // 2)

    def check_input(self, audio: torch.Tensor, visual: torch.Tensor) -> None:
        """Raise ValueError unless `audio` and `visual` are both ``[B, T, dim]``."""
        if audio.dim() != 3 or audio.shape[-1] != self.dim or visual.shape != audio.shape:
            raise ValueError(
                f"audio and visual must both have shape [B, T, {self.dim}], got {list(audio.shape)} and "
                f"{list(visual.shape)}"
            )

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """`audio`, `visual` ``[B, T, dim]`` -> gated features ``[B, T, dim]``."""
        self.check_input(audio, visual)
        both = torch.cat([audio, visual], dim=-1).transpose(1, 2)  # [B, 2·dim, T]
        gate = torch.sigmoid(self.gate(both)).transpose(1, 2)
        return gate * audio + (1 - gate) * visual
