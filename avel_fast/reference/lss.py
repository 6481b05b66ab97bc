"""Land-Shore-Sea loss, written the straightforward way (EDRNet eqs. 8-10; docs/models.md#lss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avel_fast.constants import BACKGROUND, NUM_CLASSES


def patches(foreground: list[bool]) -> list[tuple[int, int, bool]]:
    """Maximal runs of equal foreground flags as ``(start, stop, is_land)``, ``stop`` exclusive."""
    runs = []
    start = 0
    for t in range(1, len(foreground) + 1):
        if t == len(foreground) or foreground[t] != foreground[start]:
            runs.append((start, t, foreground[start]))
            start = t
    return runs


def mean_or(terms: list[torch.Tensor], zero: torch.Tensor) -> torch.Tensor:
    """The mean of scalar `terms`, or `zero` when there are none."""
    return torch.stack(terms).mean() if terms else zero


def check_lss_input(features: torch.Tensor, labels: torch.Tensor, values: bool = True) -> None:
    """Raise ValueError unless `features` is ``[B, T, D]`` and `labels` integer ``[B, T]`` in ``0..28`` (the
    range only with `values`: reading it is a device sync on CUDA)."""
    if features.dim() != 3 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"features must have shape [B, T, D] with B, T >= 1, got {list(features.shape)}")
    if labels.shape != features.shape[:2]:
        raise ValueError(
            f"labels must have shape {list(features.shape[:2])} (features' [B, T]), got {list(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if not values:
        return
    low, high = torch.stack(labels.aminmax()).tolist() if labels.numel() else (0, 0)
    if low < 0 or high >= NUM_CLASSES:
        raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1} (background = {BACKGROUND}), got {low}..{high}")


class LSSLoss(nn.Module):
    """Land-Shore-Sea loss: ``mean over videos of L_land + L_sea + L_shore`` (EDRNet eqs. 8-10, docs/models.md#lss).

    FG = any event class (label != 28). Per video, lands/seas are the maximal FG/BG runs; a run of length
    ``n >= 2`` counts with halves = its first and last ``n // 2`` segments (the middle one left out when n is
    odd) and contributes ``‖mean(first) − mean(second)‖₂``; runs of length 1 do not count. A shore is a FG
    segment next to a BG segment: anchor = its feature, positive = mean of the other segments of its land,
    negative = mean of the whole adjacent sea; term ``max(0, ‖a − p‖₂ − ‖a − n‖₂ + margin)``. How the
    ambiguities are read:

    * a shore whose land has length 1 (which includes every FG segment with seas on both sides) has no
      positive and is skipped; a shore of a longer land has exactly one adjacent sea;
    * a term with nothing to average (no counted land, sea or shore) is 0 for that video;
    * the zero is the sum of an empty slice of `features`, so backward works (zero gradient) even when no
      video of the batch has any term.

    This is the reference (Python loops over videos and patches) the fast kernel is checked against.
    ``check_labels=False`` skips checking the label range (labels checked when they were loaded).
    """

    def __init__(self, margin: float = 1.0, *, check_labels: bool = True) -> None:
        super().__init__()
        self.margin, self.check_labels = margin, check_labels

    def video_loss(self, features: torch.Tensor, labels: list[int], zero: torch.Tensor) -> torch.Tensor:
        """``L_land + L_sea + L_shore`` of one video, `features` ``[T, D]``."""
        runs = patches([label != BACKGROUND for label in labels])
        land_terms, sea_terms, shore_terms = [], [], []
        for index, (start, stop, is_land) in enumerate(runs):
            half = (stop - start) // 2
            if half >= 1:
                first = features[start : start + half].mean(dim=0)
                second = features[stop - half : stop].mean(dim=0)
                (land_terms if is_land else sea_terms).append(torch.linalg.vector_norm(first - second))
            if not is_land or stop - start < 2:
                continue
            shores = []
            if index > 0:
                shores.append((start, runs[index - 1]))
            if index + 1 < len(runs):
                shores.append((stop - 1, runs[index + 1]))
            for shore, (sea_start, sea_stop, _) in shores:
                anchor = features[shore]
                others = [t for t in range(start, stop) if t != shore]
                positive = features[others].mean(dim=0)
                negative = features[sea_start:sea_stop].mean(dim=0)
                distance_positive = torch.linalg.vector_norm(anchor - positive)
                distance_negative = torch.linalg.vector_norm(anchor - negative)
                shore_terms.append(F.relu(distance_positive - distance_negative + self.margin))
        return mean_or(land_terms, zero) + mean_or(sea_terms, zero) + mean_or(shore_terms, zero)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`features` ``[B, T, D]`` (the gated features), `labels` ``[B, T]`` in ``0..28`` -> scalar loss."""
        check_lss_input(features, labels, values=self.check_labels)
        zero = features[:, :0].sum()
        per_video = [self.video_loss(features[b], labels[b].tolist(), zero) for b in range(features.shape[0])]
        return torch.stack(per_video).mean()
