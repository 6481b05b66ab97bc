"""Per-segment sound windows of an AVE clip (`docs/audio.md#per-segment`).

Owens et al. summarise the 3.75 s of sound around each frame (seed paper §3.2). For segment t of a 10 s AVE
video the window is centred at t + 0.5 s and shifted to lie inside the clip: start = clamp(t + 0.5 − 1.875, 0,
6.25) s for a 10 s clip.
"""
from __future__ import annotations

import numpy as np
import torch

from avel_fast.audio.signal import as_waveform_batch
from avel_fast.constants import NUM_SEGMENTS

WINDOW_SECONDS = 3.75


def segment_windows(waveform, sample_rate: int, *, num_segments: int = NUM_SEGMENTS, segment_seconds: float = 1.0,
                    window_seconds: float = WINDOW_SECONDS) -> torch.Tensor:
    """Windows [N, num_segments, W] (or [num_segments, W]) of W = round(window·sr) samples around each segment.

    The window of segment t starts at round((t + ½)·segment·sr − W/2), clamped into the clip. Raises ValueError
    when the clip is shorter than one window or ends before the last segment's centre.
    """
    if num_segments < 1 or segment_seconds <= 0 or window_seconds <= 0:
        raise ValueError(
            f"num_segments, segment_seconds and window_seconds must be positive, "
            f"got {num_segments}, {segment_seconds}, {window_seconds}"
        )
    wide = getattr(waveform, "dtype", None) in (torch.float64, np.float64)
    clips, single = as_waveform_batch(waveform, sample_rate, torch.float64 if wide else torch.float32, None)
    width = round(window_seconds * sample_rate)
    needed = max(width, round((num_segments - 0.5) * segment_seconds * sample_rate))
    if clips.shape[-1] < needed:
        raise ValueError(
            f"waveform too short: {clips.shape[-1]} samples at {sample_rate} Hz; {num_segments} segments of "
            f"{segment_seconds} s with {window_seconds} s windows need {needed} (the last segment's centre)"
        )
    centres = (torch.arange(num_segments, dtype=torch.float64) + 0.5) * segment_seconds * sample_rate
    starts = (centres - width / 2).round().long().clamp(0, clips.shape[-1] - width)
    index = (starts[:, None] + torch.arange(width)).to(clips.device)
    windows = clips[:, index]
    return windows[0] if single else windows
