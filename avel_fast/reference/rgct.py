"""Relational Graph Convolutional Transformer, the literal formulation (DPNet eqs. 1-4, 12-21; docs/models.md#rgct)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RELATIONS = ("Af", "Ab", "Vf", "Vb", "AV", "VA")
"""Relation order: rows ``r*out:(r+1)*out`` of ``q``/``k``/``v`` belong to ``RELATIONS[r]``."""

AUDIO, VISUAL = 0, 1


def check_graph_input(x: torch.Tensor, in_dim: int, group_size: int) -> None:
    """Raise ValueError unless `x` is ``[B, 2, T, in_dim]`` and `group_size` divides ``B``."""
    if x.dim() != 4 or x.shape[1] != 2 or x.shape[3] != in_dim or x.shape[2] < 1:
        raise ValueError(f"x must have shape [B, 2, T, {in_dim}] with T >= 1, got {list(x.shape)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if x.shape[0] % group_size != 0:
        raise ValueError(f"group_size={group_size} does not divide the batch size {x.shape[0]}")


def group_mean(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """X̄: every video replaced by the mean over the `group_size` videos of its link group (eqs. 17-21)."""
    batch = x.shape[0]
    grouped = x.reshape(batch // group_size, group_size, *x.shape[1:]).mean(dim=1)
    return grouped.repeat_interleave(group_size, dim=0)


def from_previous(sequence: torch.Tensor) -> torch.Tensor:
    """``[B, T, D]``: position t holds ``sequence[:, t-1]``, position 0 holds 0 (a forward edge's source)."""
    return F.pad(sequence[:, :-1], (0, 0, 1, 0))


def from_next(sequence: torch.Tensor) -> torch.Tensor:
    """``[B, T, D]``: position t holds ``sequence[:, t+1]``, position T-1 holds 0 (a backward edge's source)."""
    return F.pad(sequence[:, 1:], (0, 0, 0, 1))


def neighborhood_aggregation(x: torch.Tensor, group_size: int = 1) -> torch.Tensor:
    """NA ``[B, 2, T, 6, D_in]``: per node and relation, the mean over its incoming edges (eq. 12), 0 if none.

    Row by row the table of docs/models.md#rgct: an audio node (A, t) receives Af from A_{t-1}, Ab from A_{t+1} and VA
    from V_t; a visual node (V, t) receives Vf from V_{t-1}, Vb from V_{t+1} and AV from A_t; with linkage
    every edge comes from the same position in all G videos of the group, so its mean is X̄.
    """
    mean = group_mean(x, group_size)
    audio, visual = mean[:, AUDIO], mean[:, VISUAL]  # [B, T, D_in]
    zero = torch.zeros_like(audio)
    audio_node = torch.stack([from_previous(audio), from_next(audio), zero, zero, zero, visual], dim=2)
    visual_node = torch.stack([zero, zero, from_previous(visual), from_next(visual), audio, zero], dim=2)
    return torch.stack([audio_node, visual_node], dim=1)


class RGCT(nn.Module):
    """Relational Graph Convolutional Transformer (DPNet §3.3, eqs. 12-16; docs/models.md#rgct).

    Every node (audio or visual, each time step) has all six relational polymorphs ``Q_r = x W_q[r]ᵀ + b_q[r]``
    and attends across the six relation-wise neighbourhood aggregations ``K_r/V_r = NA_r W_{k,v}[r]ᵀ + b[r]``
    (eq. 13, softmax over the key axis); ``NA_att = Att·V`` (eq. 14) is averaged over the six query rows and
    the node is updated by ``y = Swish(W_2 (Swish(W_1 x) + Dropout(NĀ_att)))`` (eqs. 15-16).

    This is the reference: NA and the per-relation K/V are built in full (``[B, 2, T, 6, D]``), with no
    algebraic shortcut. Parameters use PyTorch's default `nn.Linear` initialisation.
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        num_relations = len(RELATIONS)
        self.q = nn.Linear(in_dim, num_relations * out_dim)
        self.k = nn.Linear(in_dim, num_relations * out_dim)
        self.v = nn.Linear(in_dim, num_relations * out_dim)
        self.w1 = nn.Linear(in_dim, out_dim)
        self.w2 = nn.Linear(out_dim, out_dim)
        self.dropout = nn.Dropout(dropout)

    def relation_projection(self, linear: nn.Linear, na: torch.Tensor) -> torch.Tensor:
        """``[B, 2, T, 6, D_in] -> [B, 2, T, 6, out]``: relation r's aggregation through rows of relation r."""
        weight = linear.weight.view(len(RELATIONS), self.out_dim, self.in_dim)
        bias = linear.bias.view(len(RELATIONS), self.out_dim)
        return torch.einsum("bmtri,rdi->bmtrd", na, weight) + bias

    def forward(self, x: torch.Tensor, group_size: int = 1) -> torch.Tensor:
        """`x` ``[B, 2, T, in_dim]`` (modality A=0, V=1) -> ``[B, 2, T, out_dim]``; videos ``g·G..g·G+G-1`` linked."""
        check_graph_input(x, self.in_dim, group_size)
        na = neighborhood_aggregation(x, group_size)
        query = self.q(x).unflatten(-1, (len(RELATIONS), self.out_dim))  # [B, 2, T, 6, D]
        key = self.relation_projection(self.k, na)
        value = self.relation_projection(self.v, na)
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.out_dim)  # [B, 2, T, 6, 6], eq. 13
        attention = scores.softmax(dim=-1)
        aggregated = (attention @ value).mean(dim=-2)  # eq. 14, then the mean over relations
        hidden = F.silu(self.w1(x))  # eq. 15
        return F.silu(self.w2(hidden + self.dropout(aggregated)))  # eq. 16
