"""Per-clip float64 numpy reference of the 502 sound-texture statistics (`docs/audio.md#textures`).

The literal algorithm, one clip at a time: Owens et al.'s statistics (seed paper §3.2, with the corrections of
`docs/audio.md#choices`) over a 32-band ERB cochlear filterbank. numpy.fft only, with its own resampler and
analytic signal, so it stays a different code path from scipy's `resample` / `hilbert`. It is the ground truth
of `avel_fast.audio.texture_statistics`.
"""
from __future__ import annotations

import numpy as np

from avel_fast.audio.filterbanks import (
    AUDIO_SR,
    COMP,
    DS,
    EPS,
    FLOOR_DB,
    MIN_ENV_SAMPLES,
    PAIRS,
    modulation_filters,
    resampled_length,
    subband_filters,
)


def fft_resample(x: np.ndarray, new_length: int) -> np.ndarray:
    """`scipy.signal.resample` of a real signal along its last axis: truncate or zero-pad the rfft spectrum."""
    length = x.shape[-1]
    if new_length == length:
        return x.copy()
    spectrum = np.fft.rfft(x, axis=-1)
    kept = min(length, new_length)
    resized = np.zeros(x.shape[:-1] + (new_length // 2 + 1,), dtype=complex)
    resized[..., : kept // 2 + 1] = spectrum[..., : kept // 2 + 1]
    if kept % 2 == 0:
        resized[..., kept // 2] *= 2.0 if new_length < length else 0.5
    return np.fft.irfft(resized, new_length, axis=-1) * (new_length / length)


def analytic_signal(spectrum: np.ndarray, length: int) -> np.ndarray:
    """Analytic signal of the real signals whose rfft is `spectrum` (negative frequencies zeroed)."""
    gain = np.full(spectrum.shape[-1], 2.0)
    gain[0] = 1.0
    if length % 2 == 0:
        gain[-1] = 1.0
    full = np.zeros(spectrum.shape[:-1] + (length,), dtype=complex)
    full[..., : spectrum.shape[-1]] = spectrum * gain
    return np.fft.ifft(full, axis=-1)


def prepare_clip(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Clip to [-1, 1], resample to 20 kHz, clip again, trim to whole envelope samples (steps 1-3)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    if sample_rate != AUDIO_SR:
        x = np.clip(fft_resample(x, resampled_length(x.size, sample_rate, AUDIO_SR)), -1.0, 1.0)
    num_env = x.size // DS
    if num_env < MIN_ENV_SAMPLES:
        raise ValueError(
            f"waveform too short: {x.size} samples at 20 kHz give {num_env} envelope samples, "
            f"need >= {MIN_ENV_SAMPLES} (about 1.0025 s)"
        )
    return x[: num_env * DS]


def texture_envelopes_clip(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Compressed subband envelopes c [32, M] at 400 Hz (steps 1-7)."""
    x = prepare_clip(x, sample_rate)
    length = x.size
    subbands = analytic_signal(np.fft.rfft(x)[None, :] * subband_filters(length).T, length)
    floor = 10.0 ** (-FLOOR_DB / 10) * np.mean(x**2)
    compressed = (np.abs(subbands) ** 2 + floor) ** (COMP / 2)
    return np.clip(fft_resample(compressed, length // DS), -1.0, 1.0)


def texture_statistics_clip(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """The 502 statistics of one mono clip `x` [S] (full-scale floats at any rate), float64."""
    envelopes = texture_envelopes_clip(x, sample_rate)
    num_env = envelopes.shape[1]
    loudness = float(np.median(np.sqrt(np.sum(envelopes**2, axis=0))))
    normalised = envelopes / loudness if loudness > 0 else np.zeros_like(envelopes)
    mean = normalised.mean(axis=1)
    centred = normalised - mean[:, None]
    var = np.mean(centred**2, axis=1)
    spread = np.sqrt(var / (EPS + mean**2))
    corr = np.array([np.mean(centred[i] * centred[j]) / np.sqrt((EPS + var[i]) * (EPS + var[j])) for i, j in PAIRS])
    bank = modulation_filters(num_env)
    modulated = np.fft.irfft(np.fft.rfft(normalised, axis=1)[:, None, :] * bank.T[None], num_env, axis=-1)
    modulation = np.sqrt(np.mean(modulated**2, axis=-1) / (EPS + var[:, None]))
    return np.concatenate([mean, spread, corr, modulation.reshape(-1), [loudness]])
