"""Event Decomposition Recomposition Network (EDRNet eqs. 1-7 and supplement; docs/models.md#edrnet)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, NUM_SEGMENTS, VISUAL_SHAPE
from avel_fast.reference.dpnet import check_audio
from avel_fast.reference.fusion import GatedFusion



def sinusoidal_positional_encoding(num_segments: int, dim: int) -> torch.Tensor:
    """EDRNet eq. 1, ``[num_segments, dim]``: ``p_t^i = sin(ω_k t)`` for ``i = 2k``, ``cos(ω_k t)`` for ``i = 2k+1``.

    ``ω_k = 10^(-8k/d_b)`` and ``t = 1..N`` as in the paper; the feature index ``i`` counts from 0 (the
    Transformer convention the paper follows), so feature 0 is ``sin(t)`` and feature 1 is ``cos(t)``.
    """
    t = torch.arange(1, num_segments + 1, dtype=torch.float64).unsqueeze(1)
    k = torch.arange(dim, dtype=torch.float64) // 2
    angle = t * 10.0 ** (-8.0 * k / dim)
    even = torch.arange(dim) % 2 == 0
    return torch.where(even, torch.sin(angle), torch.cos(angle)).float()


class EDRNet(nn.Module):
    """EDRNet (docs/models.md#edrnet), default arguments = the paper configuration (k = 3, L = 4, d = 768).

    * Visual: ``visual_conv`` (3×3 `Conv2d` + ReLU on the channels-last 7×7 maps) then global average pooling;
      `visual_channels` (default `visual_dim`, the paper) can shrink that costly convolution.
    * Event Decomposition Phase (eq. 2): branches A, V and AV = [A, V], each plus the positional encoding of eq. 1
      (a non-persistent buffer per branch), then `layers` × (`Conv1d(k)`, stride 1, no padding, + ReLU) of width
      `dim`: lengths ``N -> N-(k-1) -> ... -> N-L(k-1)``.
    * Event Recomposition Phase (eq. 3) for A and V: `layers` × (`ConvTranspose1d(k)`, stride 1, no padding,
      + ReLU); the first takes ``D_b^L + D_AV^L``, layer j > 1 takes ``R_b^{j-1} + D_b^{L-j+1} + D_AV^{L-j+1}``
      (the decomposition outputs of the same length, i.e. the same receptive field).
    * ``fusion``: `GatedFusion(dim, kernel_size=3)` on ``(R_A^L, R_V^L)`` (eqs. 4-5; its kernel stays 3 whatever
      the decomposition `kernel_size`); ``classifier`` (eq. 6).

    `num_segments` fixes N (the positional encoding's length); it must leave ``N - L(k-1) >= 1`` segments
    after the decomposition. All layers use PyTorch's default initialisation.
    """

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
        super().__init__()
        if layers < 1 or kernel_size < 1:
            raise ValueError(f"layers and kernel_size must be >= 1, got layers={layers}, kernel_size={kernel_size}")
        if num_segments - layers * (kernel_size - 1) < 1:
            raise ValueError(
                f"{layers} decomposition layers of kernel_size={kernel_size} need num_segments >= "
                f"{layers * (kernel_size - 1) + 1} (each removes {kernel_size - 1} segments), got {num_segments}"
            )
        visual_channels = visual_channels or visual_dim
        self.audio_dim, self.visual_dim, self.num_segments = audio_dim, visual_dim, num_segments
        self.visual_conv = nn.Conv2d(visual_dim, visual_channels, 3, padding=1)
        branch_dims = {"audio": audio_dim, "visual": visual_channels, "audio_visual": audio_dim + visual_channels}
        for branch, branch_dim in branch_dims.items():
            self.register_buffer(
                f"pe_{branch}", sinusoidal_positional_encoding(num_segments, branch_dim), persistent=False
            )
        self.decompose = nn.ModuleDict(
            {
                branch: nn.ModuleList(
                    nn.Conv1d(branch_dim if layer == 0 else dim, dim, kernel_size) for layer in range(layers)
                )
                for branch, branch_dim in branch_dims.items()
            }
        )
        self.recompose = nn.ModuleDict(
            {
                branch: nn.ModuleList(nn.ConvTranspose1d(dim, dim, kernel_size) for _ in range(layers))
                for branch in ("audio", "visual")
            }
        )
        self.fusion = GatedFusion(dim, kernel_size=3)
        self.classifier = nn.Linear(dim, num_classes)

    def pooled_visual(self, visual: torch.Tensor) -> torch.Tensor:
        """``[B, T, H, W, visual_dim]`` channels last -> ``GAP(ReLU(Conv2d(·)))`` ``[B, T, visual_channels]``."""
        if visual.dim() != 5 or visual.shape[-1] != self.visual_dim:
            raise ValueError(
                f"visual must have shape [B, T, H, W, {self.visual_dim}] (channels last), got {list(visual.shape)}"
            )
        batch, segments = visual.shape[:2]
        maps = visual.flatten(0, 1).permute(0, 3, 1, 2)  # [B·T, C, H, W]
        pooled = F.relu(self.visual_conv(maps)).mean(dim=(2, 3))
        return pooled.unflatten(0, (batch, segments))

    def forward(
        self, audio: torch.Tensor, visual: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`audio` ``[B, N, 128]``, `visual` ``[B, N, 7, 7, 512]`` -> logits ``[B, N, C]`` (+ gated features)."""
        visual = self.pooled_visual(visual)
        check_audio(audio, visual, self.audio_dim)
        if audio.shape[1] != self.num_segments:
            raise ValueError(f"EDRNet was built for num_segments={self.num_segments}, got T={audio.shape[1]}")
        inputs = {"audio": audio, "visual": visual, "audio_visual": torch.cat([audio, visual], dim=-1)}
        decomposed = {}  # branch -> [D_b^1, ..., D_b^L], each [B, dim, length]
        for branch, convs in self.decompose.items():
            h = (inputs[branch] + getattr(self, f"pe_{branch}")).transpose(1, 2)
            decomposed[branch] = []
            for conv in convs:
                h = F.relu(conv(h))
                decomposed[branch].append(h)
        recomposed = {}
        for branch, deconvs in self.recompose.items():
            h = decomposed[branch][-1] + decomposed["audio_visual"][-1]
            for j, deconv in enumerate(deconvs):
                if j > 0:
                    h = h + decomposed[branch][-1 - j] + decomposed["audio_visual"][-1 - j]
                h = F.relu(deconv(h))
            recomposed[branch] = h.transpose(1, 2)  # [B, N, dim]
        features = self.fusion(recomposed["audio"], recomposed["visual"])
        logits = self.classifier(features)
        return (logits, features) if return_features else logits
