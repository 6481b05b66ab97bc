"""Positive Sample Propagation (Zhou et al., CVPR 2021; `docs/weak.md#psp`): the fully (``sel``) and weakly
(``wsel``) supervised networks of the public code, with only the parameters their forward uses.

Both build on the audio-guided attention of the AVE baseline (`avel_fast.reference.ave`, eq. 1 of the
label-refinement paper), a Bi-LSTM per modality and the PSP module: a cross-modal affinity pruned at a
threshold (strict ``>``) that propagates the positive segments of one modality into the other. Public checkpoints
load through `from_public_state_dict`, which drops the registered-but-unused public keys (`UNUSED_PUBLIC_KEYS`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.constants import AUDIO_DIM, BACKGROUND, NUM_CLASSES, VISUAL_SHAPE
from avel_fast.reference.ave import (
    CLASSIFIER_HIDDEN,
    HIDDEN,
    AudioGuidedAttention,
    bidirectional_lstm,
    check_attention_input,
)

SETTINGS = ("sel", "wsel")
THRESHOLDS = {"sel": 0.099, "wsel": 0.095}
"""The public defaults of the pruning threshold (``--threshold`` of the fully / weakly supervised mains)."""
DROPOUT = 0.1
AVPS_WEIGHT = 100.0
"""λ of the fully supervised loss ``CE + λ·AVPS`` (public ``--LAMBDA``)."""
PSP_DIM = 2 * HIDDEN
EPS = 1e-8

UNUSED_PUBLIC_KEYS = {
    "sel": (
        "linear_v.weight", "linear_v.bias",
        "v_classify.L1.weight", "v_classify.L2.weight", "a_classify.L1.weight", "a_classify.L2.weight",
        "L3.weight", "L3.bias", "L4.weight", "L4.bias",
    ),
    "wsel": ("temperature", "W1.weight", "W2.weight"),
}
"""Keys of the public ``psp_net`` state_dicts that no forward reads (118,594 parameters for sel, 349 for wsel)."""


class LSTMPair(nn.Module):
    """``lstm_a_v``: one Bi-LSTM per modality (hidden 128, zero initial states), audio and visual ``[B, T, 128]``
    -> ``h_a``, ``h_v`` ``[B, T, 256]``."""

    def __init__(self, audio_dim: int = HIDDEN, visual_dim: int = HIDDEN) -> None:
        super().__init__()
        self.lstm_audio = bidirectional_lstm(audio_dim)
        self.lstm_video = bidirectional_lstm(visual_dim)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lstm_audio(audio)[0], self.lstm_video(visual)[0]


def pruned_affinity(affinity: torch.Tensor, threshold: float, renormalise: bool) -> torch.Tensor:
    """Row-normalise, keep entries strictly above `threshold`, and (fully supervised) row-normalise again."""
    affinity = affinity / (affinity.sum(dim=-1, keepdim=True) + EPS)
    affinity = affinity * (affinity > threshold).to(affinity.dtype)
    return affinity / (affinity.sum(dim=-1, keepdim=True) + EPS) if renormalise else affinity


class PositiveSamplePropagation(nn.Module):
    """The PSP module (``psp``; `docs/weak.md#psp`) on ``h_a``, ``h_v`` ``[B, T, 256]``.

    ``β = ReLU(vb2 ab1ᵀ / √256)`` (rows = visual segments), ``γ_va`` / ``γ_av`` its row-normalised, pruned
    versions (``βᵀ`` taken before normalising), ``v + γ_va ab2`` and ``a + γ_av vb1``, then (``fully``: a
    ReLU'd ``v_fc`` / ``a_fc`` with dropout, and re-normalised ``γ``) one LayerNorm shared by both modalities.
    Returns ``(0.5·(v_psp + a_psp), v_psp, a_psp)``.
    """

    def __init__(self, fully: bool, dim: int = PSP_DIM, dropout: float = DROPOUT) -> None:
        super().__init__()
        self.fully = fully
        self.v_L1 = nn.Linear(dim, dim, bias=False)
        self.v_L2 = nn.Linear(dim, dim, bias=False)
        self.v_fc = nn.Linear(dim, dim, bias=False) if fully else None
        self.a_L1 = nn.Linear(dim, dim, bias=False)
        self.a_L2 = nn.Linear(dim, dim, bias=False)
        self.a_fc = nn.Linear(dim, dim, bias=False) if fully else None
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6)
        layers = [self.v_L1, self.v_L2, self.a_L1, self.a_L2] + ([self.a_fc, self.v_fc] if fully else [])
        for layer in layers:
            nn.init.xavier_uniform_(layer.weight)

    def branch(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(F.relu(layer(x)))

    def forward(
        self, audio: torch.Tensor, visual: torch.Tensor, threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        visual_1, visual_2 = self.branch(self.v_L1, visual), self.branch(self.v_L2, visual)
        audio_1, audio_2 = self.branch(self.a_L1, audio), self.branch(self.a_L2, audio)
        affinity = F.relu(torch.bmm(visual_2, audio_1.transpose(1, 2)) / math.sqrt(visual_2.shape[-1]))
        visual_to_audio = pruned_affinity(affinity, threshold, self.fully)
        audio_to_visual = pruned_affinity(affinity.transpose(1, 2), threshold, self.fully)
        visual_psp = visual + torch.bmm(visual_to_audio, audio_2)
        audio_psp = audio + torch.bmm(audio_to_visual, visual_1)
        if self.fully:
            visual_psp, audio_psp = self.branch(self.v_fc, visual_psp), self.branch(self.a_fc, audio_psp)
        visual_psp, audio_psp = self.layer_norm(visual_psp), self.layer_norm(audio_psp)
        return 0.5 * (visual_psp + audio_psp), visual_psp, audio_psp


def bias_free_mlp(in_dim: int) -> nn.Sequential:
    """``fa`` / ``fv`` of the fully supervised PSP: Linear(in, 256) then Linear(256, 128), no bias, no activation,
    PyTorch's default init."""
    return nn.Sequential(nn.Linear(in_dim, 2 * HIDDEN, bias=False), nn.Linear(2 * HIDDEN, HIDDEN, bias=False))


class PSPNet(nn.Module):
    """PSP for fully (``setting="sel"``) or weakly (``"wsel"``) supervised localisation (`docs/weak.md#psp`).

    ``sel``: ``a0 = fa(audio)``, ``v0 = fv(attention(a0, visual))``, Bi-LSTMs, the fully PSP module, scores
    ``L2(ReLU(L1(fusion)))`` and the per-segment cosine of ``v_psp`` and ``a_psp``; forward returns
    ``(scores [B, T, 29], av_cosine [B, T])`` (loss: cross-entropy + `AVPS_WEIGHT`·`avps_loss`).
    ``wsel``: ``v0 = linear_v(attention(audio, visual))`` on the raw audio, the weak PSP module, and the
    weighting branch ``x̃ = x·σ(ReLU(W3 x))``; forward returns the weighted scores ``[B, T, 29]`` (weak head
    `mean_mil_prob`, loss `bce_on_probs`). `threshold` (default 0.099 / 0.095) prunes the affinity; dropout 0.1.
    Registered: 1,548,657 (sel) / 1,253,902 (wsel) parameters, all used, under the public names.

    `segment_features` returns the per-segment part (sel: ``fa(audio)``, ``fv(attended)``; wsel: the raw audio
    and ``linear_v(attended)``), `from_segment_features` the rest.
    """

    def __init__(
        self,
        setting: str = "sel",
        threshold: float | None = None,
        audio_dim: int = AUDIO_DIM,
        visual_dim: int = VISUAL_SHAPE[-1],
        num_classes: int = NUM_CLASSES,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
        self.setting, self.audio_dim, self.visual_dim = setting, audio_dim, visual_dim
        self.threshold = THRESHOLDS[setting] if threshold is None else float(threshold)
        fully = setting == "sel"
        if fully:
            self.fa = bias_free_mlp(audio_dim)
            self.fv = bias_free_mlp(visual_dim)
            self.attention = AudioGuidedAttention(HIDDEN, visual_dim)
        else:
            self.linear_v = nn.Linear(visual_dim, HIDDEN)
            self.attention = AudioGuidedAttention(audio_dim, visual_dim)
        self.lstm_a_v = LSTMPair(HIDDEN if fully else audio_dim, HIDDEN)
        self.psp = PositiveSamplePropagation(fully, dropout=dropout)
        if not fully:
            self.W3 = nn.Linear(num_classes, 1, bias=False)
        self.L1 = nn.Linear(PSP_DIM, CLASSIFIER_HIDDEN, bias=False)
        self.L2 = nn.Linear(CLASSIFIER_HIDDEN, num_classes, bias=False)
        nn.init.xavier_uniform_(self.L1.weight)
        nn.init.xavier_uniform_(self.L2.weight)

    def segment_features(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-segment part: audio-side and visual-side inputs of the LSTMs, each ``[B, T, 128]``."""
        check_attention_input(audio, visual, self.audio_dim, self.visual_dim)
        if self.setting == "sel":
            audio = self.fa(audio)
            return audio, self.fv(self.attention(audio, visual))
        return audio, self.linear_v(self.attention(audio, visual))

    def from_segment_features(
        self, audio: torch.Tensor, visual: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """LSTMs, PSP and the head from `segment_features`: the output of `forward`."""
        if audio.shape[:2] != visual.shape[:2]:
            raise ValueError(
                f"audio and visual disagree on [B, T]: {list(audio.shape[:2])} vs {list(visual.shape[:2])}"
            )
        fusion, visual_psp, audio_psp = self.psp(*self.lstm_a_v(audio, visual), self.threshold)
        scores = self.L2(F.relu(self.L1(fusion)))
        if self.setting == "sel":
            cosine = (F.normalize(visual_psp, dim=-1) * F.normalize(audio_psp, dim=-1)).sum(dim=-1)
            return scores, cosine
        return scores * torch.sigmoid(F.relu(self.W3(scores)))

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`audio` ``[B, T, 128]``, `visual` ``[B, T, 7, 7, 512]`` -> sel: ``(scores, av_cosine)``; wsel: weighted
        scores ``[B, T, 29]``."""
        return self.from_segment_features(*self.segment_features(audio, visual))

    @classmethod
    def from_public_state_dict(cls, state_dict: dict, setting: str, threshold: float | None = None) -> PSPNet:
        """A `PSPNet` holding a public ``psp_net`` checkpoint's weights (its unused keys dropped, all others
        required, strictly)."""
        model = cls(setting, threshold)
        model.load_state_dict({k: v for k, v in state_dict.items() if k not in UNUSED_PUBLIC_KEYS[setting]})
        return model


def avps_targets(segment_labels: torch.Tensor, background: int = BACKGROUND) -> torch.Tensor:
    """AVPS targets ``[B, T]``: ``1/n_event`` on a video's event segments, 0 elsewhere; ``1/T`` everywhere for a
    video without event segments (the public code's behaviour there, where the background column is its only
    label)."""
    events = (segment_labels != background).to(torch.float32)
    empty = events.sum(dim=1, keepdim=True) == 0
    events = torch.where(empty, torch.ones_like(events), events)
    return events / events.sum(dim=1, keepdim=True)


def avps_loss(av_cosine: torch.Tensor, segment_labels: torch.Tensor, background: int = BACKGROUND) -> torch.Tensor:
    """Audio-visual pair similarity loss (PSP eqs. 8-9): ``MSE(ReLU(cos) / (Σ_t ReLU(cos) + 1e-8), avps_targets)``,
    mean over B·T (`docs/weak.md#psp`). The fully supervised objective is ``CE + AVPS_WEIGHT·avps_loss``."""
    if av_cosine.dim() != 2 or segment_labels.shape != av_cosine.shape:
        raise ValueError(
            f"av_cosine and segment_labels must both have shape [B, T], got {list(av_cosine.shape)} and "
            f"{list(segment_labels.shape)}"
        )
    positive = F.relu(av_cosine)
    similarity = positive / (positive.sum(dim=-1, keepdim=True) + EPS)
    return F.mse_loss(similarity, avps_targets(segment_labels, background).to(similarity.dtype))


def mean_mil_prob(scores: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """The PSP weak head: ``softmax(mean over `dim` of the weighted scores)``, e.g. ``[B, T, C] -> [B, C]``."""
    if scores.dim() < 2:
        raise ValueError(f"scores must have shape [B, T, C], got {list(scores.shape)}")
    return scores.mean(dim=dim).softmax(dim=-1)


def bce_on_probs(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The PSP weak loss: ``BCELoss(prob, target)``, mean over all entries (`docs/weak.md#psp`)."""
    if prob.shape != target.shape:
        raise ValueError(f"target must have the shape of prob {list(prob.shape)}, got {list(target.shape)}")
    return F.binary_cross_entropy(prob, target.to(prob.dtype))
