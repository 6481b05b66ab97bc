"""Multi-instance learning pooling and loss for weak supervision (EDRNet eq. 7, DPNet §3.2; docs/models.md#mil)."""
from __future__ import annotations

import torch


def mil_pool(logits: torch.Tensor) -> torch.Tensor:
    """Video prediction ``[B, C]`` = mean over the T segments of the segment softmax (EDRNet eq. 7)."""
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, T, C], got {list(logits.shape)}")
    return logits.softmax(dim=-1).mean(dim=1)


def mil_loss(
    logits: torch.Tensor, video_labels: torch.Tensor, eps: float = 1e-8, *, check_labels: bool = True
) -> torch.Tensor:
    """Cross-entropy of `mil_pool(logits)` against the normalised multi-hot video labels, mean over videos.

    ``-Σ_c y_c/Σy · log(max(p_c, eps))``: the pooled probability is clamped at `eps` so a confidently wrong
    prediction gives a large finite loss instead of ``inf``. `video_labels` ``[B, C]`` must be non-negative with
    a positive sum in every row (a background-only video has its background column set, docs/data.md#contract); checking
    that reads their values (a device sync on CUDA), which ``check_labels=False`` skips for labels checked
    when they were loaded (the training loop).
    """
    pooled = mil_pool(logits)
    if video_labels.shape != pooled.shape:
        raise ValueError(
            f"video_labels must have shape {list(pooled.shape)} ([B, C] of the logits), got {list(video_labels.shape)}"
        )
    video_labels = video_labels.to(pooled.dtype)
    totals = video_labels.sum(dim=-1, keepdim=True)
    if check_labels and (bool((video_labels < 0).any()) or bool((totals <= 0).any())):
        raise ValueError("video_labels must be non-negative with at least one positive class per video")
    target = video_labels / totals
    return -(target * pooled.clamp_min(eps).log()).sum(dim=-1).mean()
