"""Dual Perspective Network: TemporalConv, DPBlock and DPNet (DPNet §3.2, eqs. 5-11; docs/models.md#dpnet)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, VISUAL_SHAPE
from avel_fast.reference.fusion import GatedFusion
from avel_fast.reference.rgct import RGCT


class TemporalConv(nn.Module):
    """The sequential-stream perspective: ``Swish(Conv1d_k(F^m))`` per modality (eqs. 5-6).

    One `nn.Conv1d(in, out, k, padding=k // 2)` for the audio stream (``audio``) and one for the visual stream
    (``visual``); `kernel_size` must be odd so the length is kept. PyTorch's default `nn.Conv1d` init.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int (length-preserving conv), got {kernel_size}")
        self.in_dim = in_dim
        self.audio = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2)
        self.visual = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless `x` is ``[B, 2, T, in_dim]``."""
        if x.dim() != 4 or x.shape[1] != 2 or x.shape[3] != self.in_dim:
            raise ValueError(f"x must have shape [B, 2, T, {self.in_dim}], got {list(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 2, T, in_dim]`` -> ``[B, 2, T, out_dim]``."""
        self.check_input(x)
        streams = [conv(x[:, m].transpose(1, 2)).transpose(1, 2) for m, conv in enumerate((self.audio, self.visual))]
        return F.silu(torch.stack(streams, dim=1))


class DPBlock(nn.Module):
    """One Dual Perspective Block: the graph perspective (`RGCT`) then the stream perspective (eq. 7)."""

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.rgct = RGCT(in_dim, dim, dropout)
        self.tcn = TemporalConv(dim, dim)

    def forward(self, x: torch.Tensor, group_size: int = 1) -> torch.Tensor:
        """``[B, 2, T, in_dim]`` -> ``[B, 2, T, dim]``; `group_size` links videos in the RGCT (eqs. 17-21)."""
        return self.tcn(self.rgct(x, group_size))


def pooled_visual(visual: torch.Tensor, visual_dim: int) -> torch.Tensor:
    """Global average pooling of channels-last maps ``[B, T, H, W, C] -> [B, T, C]``; pooled input passes through."""
    if visual.dim() == 5 and visual.shape[-1] == visual_dim:
        return visual.mean(dim=(2, 3))
    if visual.dim() == 3 and visual.shape[-1] == visual_dim:
        return visual
    raise ValueError(
        f"visual must have shape [B, T, H, W, {visual_dim}] (channels last) or [B, T, {visual_dim}] (pooled), "
        f"got {list(visual.shape)}"
    )


def check_audio(audio: torch.Tensor, visual: torch.Tensor, audio_dim: int) -> None:
    """Raise ValueError unless `audio` is ``[B, T, audio_dim]`` with the same B and T as `visual`."""
    if audio.dim() != 3 or audio.shape[-1] != audio_dim:
        raise ValueError(f"audio must have shape [B, T, {audio_dim}], got {list(audio.shape)}")
    if audio.shape[:2] != visual.shape[:2]:
        raise ValueError(
            f"audio and visual disagree on [B, T]: {list(audio.shape[:2])} vs {list(visual.shape[:2])}"
        )


class DPNet(nn.Module):
    """Dual Perspective Network (DPNet §3.2, Fig. 2; docs/models.md#dpnet), default arguments = the paper
    configuration.

    Visual maps are globally average pooled, audio is projected to the visual width (``audio_proj``, W_a),
    ``blocks`` DPBlocks (the first `visual_dim -> dim`) refine the ``[B, 2, T, ·]`` node features, the gate
    fuses the two modalities (eqs. 9-10) and ``classifier`` gives the segment logits (eq. 11 before softmax).
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        audio_dim: int = AUDIO_DIM,
        visual_dim: int = VISUAL_SHAPE[-1],
        dim: int = 768,
        blocks: int = 4,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {blocks}")
        self.audio_dim, self.visual_dim = audio_dim, visual_dim
        self.audio_proj = nn.Linear(audio_dim, visual_dim)
        self.blocks = nn.ModuleList(
            [DPBlock(visual_dim, dim, dropout)] + [DPBlock(dim, dim, dropout) for _ in range(blocks - 1)]
        )
        self.fusion = GatedFusion(dim, kernel_size=1)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(
        self, audio: torch.Tensor, visual: torch.Tensor, group_size: int = 1, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`audio` ``[B, T, 128]``, `visual` ``[B, T, 7, 7, 512]`` or pooled ``[B, T, 512]`` -> logits ``[B, T, C]``.

        With `return_features` also the gated features ``[B, T, dim]`` (the input of `LSSLoss`).
        """
        visual = pooled_visual(visual, self.visual_dim)
        check_audio(audio, visual, self.audio_dim)
        x = torch.stack([self.audio_proj(audio), visual], dim=1)  # [B, 2, T, visual_dim]
        for block in self.blocks:
            x = block(x, group_size)
        features = self.fusion(x[:, 0], x[:, 1])
        logits = self.classifier(features)
        return (logits, features) if return_features else logits
