"""The AVE baseline (Tian et al., ECCV 2018; label-refinement paper §4.1, eqs. 1-6; `docs/weak.md#ave-baseline`).

Audio-guided visual attention over the 7x7 maps (eq. 1), one Bi-LSTM per modality (eqs. 2-3), concatenation
(eq. 4) and a two-layer classifier (eq. 5), with the public code's parameter names, creation order and init, so
a public ``att_Net`` checkpoint loads with `load_state_dict` as is. Where the public code and the paper differ
the code wins: the audio half comes first in the concatenation and a ReLU precedes ``L1``.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, VISUAL_SHAPE

LOCATIONS = VISUAL_SHAPE[0] * VISUAL_SHAPE[1]
HIDDEN = 128
"""Hidden size of every LSTM direction."""
ATTENTION_HIDDEN = 512
"""Width h of ``U^a`` and ``U^v`` (``affine_audio``, ``affine_video``)."""
CLASSIFIER_HIDDEN = 64


def check_attention_input(audio: torch.Tensor, visual: torch.Tensor, audio_dim: int, channels: int) -> None:
    """Raise ValueError unless `audio` is ``[B, T, audio_dim]`` and `visual` ``[B, T, 7, 7, channels]``."""
    if audio.dim() != 3 or audio.shape[-1] != audio_dim:
        raise ValueError(f"audio must have shape [B, T, {audio_dim}], got {list(audio.shape)}")
    expected = [*VISUAL_SHAPE[:2], channels]
    if visual.dim() != 5 or list(visual.shape[2:]) != expected:
        raise ValueError(
            f"visual must have shape [B, T, {', '.join(map(str, expected))}] (channels last), got {list(visual.shape)}"
        )
    if audio.shape[:2] != visual.shape[:2]:
        raise ValueError(f"audio and visual disagree on [B, T]: {list(audio.shape[:2])} vs {list(visual.shape[:2])}")


def relu_branch(input: torch.Tensor, first: nn.Linear, second: nn.Linear) -> torch.Tensor:
    """One branch of eq. 1: ``second(relu(first(input)))`` (``W^v U^v(f^v)`` or ``W^a U^a(f^a)``)."""
    return second(F.relu(first(input)))


def attention_operands(layers: nn.Module, audio: torch.Tensor, visual: torch.Tensor, branch=relu_branch):
    """The GEMMs of eq. 1 with the layers of `layers` (``affine_audio``, ``affine_video``, ``affine_v``,
    ``affine_g``), each branch computed by `branch` (`relu_branch` or a drop-in for it): ``U^v(f^v) W^v``
    ``[B·T, 49(k), 49(d)]``, ``W^a U^a(f^a)`` ``[B·T, 49(k)]`` and the raw maps ``[B·T, 49, C]`` flattened
    row-major (``k = 7·row + col``, as the stored ``[7, 7, C]``). Checks the shapes."""
    check_attention_input(audio, visual, layers.affine_audio.in_features, layers.affine_video.in_features)
    rows = audio.shape[0] * audio.shape[1]
    maps = visual.reshape(rows, LOCATIONS, visual.shape[-1])
    projected = branch(maps, layers.affine_video, layers.affine_v)
    audio_term = branch(audio.reshape(rows, -1), layers.affine_audio, layers.affine_g)
    return projected, audio_term, maps


def attention_epilogue(
    projected: torch.Tensor, audio_term: torch.Tensor, score_weight: torch.Tensor, maps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1 after the GEMMs: ``α = softmax_k(tanh(projected + audio_term 1ᵀ) w_f)`` and ``Σ_k α_k V_k``.

    The audio term is a per-location bias broadcast along d; the weighted sum reads the RAW maps.
    Returns the attended features ``[B·T, C]`` and ``α`` ``[B·T, 49]``.
    """
    content = projected + audio_term.unsqueeze(2)
    attention = (torch.tanh(content) @ score_weight).softmax(dim=-1)
    return torch.bmm(attention.unsqueeze(1), maps).squeeze(1), attention


def audio_guided_attention(layers: nn.Module, audio: torch.Tensor, visual: torch.Tensor):
    """Audio-guided visual attention (eq. 1): attended raw visual features ``[B, T, C]`` and ``α`` ``[B, T, 49]``."""
    batch, segments = audio.shape[:2]
    projected, audio_term, maps = attention_operands(layers, audio, visual)
    attended, attention = attention_epilogue(projected, audio_term, layers.affine_h.weight[0], maps)
    return attended.view(batch, segments, -1), attention.view(batch, segments, -1)


def attention_layers(module: nn.Module, audio_dim: int, visual_dim: int) -> None:
    """Create the five layers of eq. 1 on `module` under the public names, in the public order and init:
    ``U^a`` = ``affine_audio``, ``U^v`` = ``affine_video``, ``W^v`` = ``affine_v``ᵀ, ``W^a`` = ``affine_g``,
    ``W^f`` = ``affine_h`` (xavier weights, default biases; ``affine_v/g/h`` have none)."""
    module.affine_audio = nn.Linear(audio_dim, ATTENTION_HIDDEN)
    module.affine_video = nn.Linear(visual_dim, ATTENTION_HIDDEN)
    module.affine_v = nn.Linear(ATTENTION_HIDDEN, LOCATIONS, bias=False)
    module.affine_g = nn.Linear(ATTENTION_HIDDEN, LOCATIONS, bias=False)
    module.affine_h = nn.Linear(LOCATIONS, 1, bias=False)


class AudioGuidedAttention(nn.Module):
    """Audio-guided visual attention as a module (PSP's ``attention``, the AVGA block; eq. 1).

    Parameters ``affine_audio``, ``affine_video``, ``affine_v``, ``affine_g``, ``affine_h`` as in the public code.
    """

    def __init__(self, audio_dim: int = AUDIO_DIM, visual_dim: int = VISUAL_SHAPE[-1]) -> None:
        super().__init__()
        attention_layers(self, audio_dim, visual_dim)
        for layer in (self.affine_v, self.affine_g, self.affine_h, self.affine_audio, self.affine_video):
            nn.init.xavier_uniform_(layer.weight)

    def attend(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attended features ``[B, T, C]`` and ``α`` ``[B, T, 49]``."""
        return audio_guided_attention(self, audio, visual)

    def forward(
        self, audio: torch.Tensor, visual: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`audio` ``[B, T, audio_dim]``, `visual` ``[B, T, 7, 7, C]`` -> attended ``[B, T, C]`` (and ``α``)."""
        attended, attention = self.attend(audio, visual)
        return (attended, attention) if return_attention else attended


@functools.cache
def cpu_bf16_lstm_supported() -> bool:
    """Whether this CPU runs an LSTM forward and backward under bf16 autocast, probed once per process (oneDNN
    has no bf16 LSTM primitive on some x86-64 CPUs without AVX-512; docs/weak.md#precision). The probe draws
    no random numbers from the caller's generator and works inside ``no_grad`` / ``inference_mode``."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        lstm = nn.LSTM(2, 2, 1, batch_first=True, bidirectional=True)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                lstm(torch.ones(1, 2, 2))[0].float().sum().backward()
        except RuntimeError:
            return False
    return True


def lstm_in_supported_precision(forward, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None):
    """`forward(input, hx)` of an LSTM, in fp32 with autocast off and its inputs cast where CPU bf16 autocast
    would ask this CPU for the bf16 LSTM it lacks (`cpu_bf16_lstm_supported`); unchanged everywhere else."""
    needs_fp32 = (
        input.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and not cpu_bf16_lstm_supported()
    )
    if not needs_fp32:
        return forward(input, hx)
    with torch.autocast("cpu", enabled=False):
        return forward(input.float(), None if hx is None else tuple(h.float() for h in hx))


class BiLSTM(nn.LSTM):
    """`nn.LSTM` (same parameters and `state_dict`) that runs in fp32, autocast off and its inputs cast, where
    CPU bf16 autocast would ask this CPU for a bf16 LSTM it lacks (`cpu_bf16_lstm_supported`); unchanged
    everywhere else (docs/weak.md#precision)."""

    def forward(self, input: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        return lstm_in_supported_precision(super().forward, input, hx)


def bidirectional_lstm(input_size: int) -> BiLSTM:
    """One-layer Bi-LSTM, hidden 128, batch first (eqs. 2-3); PyTorch's default init; zero initial states."""
    return BiLSTM(input_size, HIDDEN, 1, batch_first=True, bidirectional=True)


class AVEBaseline(nn.Module):
    """The AVE baseline ``att_Net`` (eqs. 1-5; `docs/weak.md#ave-baseline`): raw segment scores ``[B, T, 29]``.

    Parameters (public names, creation order): ``lstm_audio``, ``lstm_video``, ``affine_audio``,
    ``affine_video``, ``affine_v``, ``affine_g``, ``affine_h``, ``L1``, ``L2``; 1,335,246 in all. Features are
    used raw. The weak head is `max_mil_prob` with the loss `soft_margin_on_probs` (eq. 6).

    `segment_features` computes everything that is per segment (the raw audio and the attended visual
    features); `from_segment_features` runs the rest, so per-segment features of different videos can be
    spliced instead of their 7x7 maps (`docs/weak.md#ave-baseline`).
    """

    def __init__(
        self, audio_dim: int = AUDIO_DIM, visual_dim: int = VISUAL_SHAPE[-1], num_classes: int = NUM_CLASSES
    ) -> None:
        super().__init__()
        self.lstm_audio = bidirectional_lstm(audio_dim)
        self.lstm_video = bidirectional_lstm(visual_dim)
        attention_layers(self, audio_dim, visual_dim)
        self.L1 = nn.Linear(4 * HIDDEN, CLASSIFIER_HIDDEN)
        self.L2 = nn.Linear(CLASSIFIER_HIDDEN, num_classes)
        for layer in (self.affine_v, self.affine_g, self.affine_h, self.L1, self.L2, self.affine_audio,
                      self.affine_video):
            nn.init.xavier_uniform_(layer.weight)

    def attend(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 1: attended raw visual features ``[B, T, 512]`` and ``α`` ``[B, T, 49]``."""
        return audio_guided_attention(self, audio, visual)

    def segment_features(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-segment part: ``(audio [B, T, 128], attended visual [B, T, 512])``."""
        return audio, self.attend(audio, visual)[0]

    def from_segment_features(self, audio: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Eqs. 2-5 from `segment_features`: raw scores ``[B, T, 29]``.

        ``lstm_audio`` reads the raw 128-d audio; ``h = ReLU([h^a | h^v])`` (audio first);
        ``x = L2(ReLU(L1(h)))``.
        """
        if audio.shape[:2] != attended.shape[:2]:
            raise ValueError(
                f"audio and attended disagree on [B, T]: {list(audio.shape[:2])} vs {list(attended.shape[:2])}"
            )
        audio_states, _ = self.lstm_audio(audio)
        visual_states, _ = self.lstm_video(attended)
        hidden = F.relu(torch.cat([audio_states, visual_states], dim=-1))
        return self.L2(F.relu(self.L1(hidden)))

    def forward(
        self, audio: torch.Tensor, visual: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`audio` ``[B, T, 128]``, `visual` ``[B, T, 7, 7, 512]`` -> raw scores ``[B, T, 29]`` (and ``α``)."""
        attended, attention = self.attend(audio, visual)
        scores = self.from_segment_features(audio, attended)
        return (scores, attention) if return_attention else scores


def max_mil_prob(scores: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The AVE weak head (eq. 6): ``softmax(max over `dim` of the raw scores)``, e.g. ``[B, T, C] -> [B, C]``.

    ``max(dim).values`` sends the gradient to the first maximum on ties, as the public ``MaxPool1d``.
    """
    if scores.dim() < 2:
        raise ValueError(f"scores must have shape [B, T, C], got {list(scores.shape)}")
    return scores.max(dim=dim).values.softmax(dim=-1)


def soft_margin_on_probs(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The public AVE loss: ``MultiLabelSoftMarginLoss`` applied to probabilities (a sigmoid on top of a softmax).

    ``mean over rows of −(1/C) Σ_c [y_c log σ(p_c) + (1 − y_c) log σ(−p_c)]``; weak: `prob` = `max_mil_prob`
    ``[B, C]`` against the video labels; supervised: the segment softmax ``[B, T, C]`` against one-hot labels.
    """
    if prob.shape != target.shape:
        raise ValueError(f"target must have the shape of prob {list(prob.shape)}, got {list(target.shape)}")
    return F.multilabel_soft_margin_loss(prob, target.to(prob.dtype))
