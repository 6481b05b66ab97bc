"""Batched sound-texture statistics in torch, CPU and CUDA (`docs/audio.md#textures`).

The 502-d summary of Owens et al. (seed paper §3.2): 32 compressed ERB subband envelopes at 400 Hz, their means,
spreads, 117 neighbour correlations, 10 modulation powers per band and the loudness. Same definition as the
per-clip reference `avel_fast.reference.textures`; here the analytic subbands come from two real inverse FFTs,
the modulation powers from Parseval (one matmul), pairs are gathered and the median is sort-based.
`method="decimated"` computes each band's envelope at a reduced rate from its spectral support
(`docs/audio.md#decimated`).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from avel_fast.audio.filterbanks import (
    AUDIO_SR,
    COMP,
    DS,
    EPS,
    FLOOR_DB,
    MIN_ENV_SAMPLES,
    N_BANDS,
    NUM_TEXTURE_FEATURES,
    PAIRS,
    modulation_filters,
    parseval_weights,
    resampled_length,
    subband_supports,
)
from avel_fast.audio.signal import as_waveform_batch, check_chunk, default_chunk, fft_resample, squared_magnitude

METHODS = ("exact", "decimated")
DECIMATIONS = (50, 25, 10, 5, 2, 1)
"""Divisors of the 50-sample envelope step, so circular shifts by whole envelope samples stay exact."""
BAND_BUDGET_BYTES = 1 << 28
"""Working memory of the per-band buffers of one group of bands (`docs/audio.md#long-files`)."""
EXACT_BUFFERS, DECIMATED_BUFFERS = 10, 8
"""Real-sample-sized buffers alive per band at the peak: complex product, real output, its compressed copy and the
resampling spectra (exact); complex product, complex baseband and the rest (decimated)."""


def trimmed_length(num_samples: int, sample_rate: int) -> int:
    """Length L of the 20 kHz clip after resampling and trimming to whole envelope samples; checks M >= 401."""
    resampled = num_samples if sample_rate == AUDIO_SR else resampled_length(num_samples, sample_rate, AUDIO_SR)
    num_env = resampled // DS
    if num_env < MIN_ENV_SAMPLES:
        raise ValueError(
            f"waveform too short: {num_samples} samples at {sample_rate} Hz give {num_env} envelope samples "
            f"at 400 Hz, need >= {MIN_ENV_SAMPLES} (about 1.0025 s)"
        )
    return num_env * DS


def decimation_plan(length: int) -> list[tuple[int, tuple[int, ...]]]:
    """(D, bands) groups: each band's largest D with L/D >= 4·W_b + M, W_b its filter's nonzero bins."""
    num_env = length // DS
    groups: dict[int, list[int]] = {}
    for band, (_, values) in enumerate(subband_supports(length)):
        factor = next(d for d in DECIMATIONS if length // d >= 4 * values.size + num_env)
        groups.setdefault(factor, []).append(band)
    return sorted((factor, tuple(bands)) for factor, bands in groups.items())


@lru_cache(maxsize=4)
def _exact_supports(length: int, dtype: torch.dtype, device: torch.device) -> tuple[tuple[int, torch.Tensor], ...]:
    """Each band's (first bin, H_b on its support) as a complex tensor: complex x complex products vectorise,
    real x complex ones promote per call."""
    return tuple((first, torch.tensor(values, dtype=dtype, device=device).to(dtype.to_complex()))
                 for first, values in subband_supports(length))


@lru_cache(maxsize=32)
def _modulation_bank(num_env: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(w / M², G²): P = |rfft(e)|² · w / M² @ G²."""
    weights = torch.as_tensor(parseval_weights(num_env) / num_env**2, dtype=dtype, device=device)
    return weights, torch.as_tensor(modulation_filters(num_env) ** 2, dtype=dtype, device=device)


@lru_cache(maxsize=4)
def _decimated_supports(length: int, dtype: torch.dtype, device: torch.device):
    """Per decimation group: (D, bands, gather index [B, W], analytic weights H·h [B, W])."""
    supports = subband_supports(length)
    num_bins = length // 2 + 1
    analytic = np.where(np.arange(num_bins) == 0, 1.0, 2.0)
    if length % 2 == 0:
        analytic[-1] = 1.0
    groups = []
    for factor, bands in decimation_plan(length):
        starts = np.array([supports[b][0] for b in bands])
        widths = [supports[b][1].size for b in bands]
        index = np.minimum(starts[:, None] + np.arange(max(widths)), num_bins - 1)
        response = np.zeros(index.shape)
        for row, band in enumerate(bands):
            response[row, : widths[row]] = supports[band][1]
        groups.append((factor, bands, torch.as_tensor(index, device=device),
                       torch.as_tensor(response * analytic[index], dtype=dtype, device=device)))
    return groups


def _compress_(power: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """(|z|² + δ²)^(COMP/2) in place, as exp(COMP/2·log(·)): on the CPU 3x faster than `pow` and as accurate
    (fresh large buffers would cost more than the arithmetic)."""
    return power.add_(floor[:, None, None]).log_().mul_(COMP / 2).exp_()


def band_groups(bands: int, bytes_per_band: int) -> list[slice]:
    """Consecutive slices of `bands` whose working buffers (`bytes_per_band` each) fit in `BAND_BUDGET_BYTES`
    (at least one band per slice): all bands at once for short clips, a few at a time for long files."""
    size = max(1, min(bands, BAND_BUDGET_BYTES // max(bytes_per_band, 1)))
    return [slice(start, min(start + size, bands)) for start in range(0, bands, size)]


def _exact_envelopes(spectrum: torch.Tensor, length: int, floor: torch.Tensor) -> torch.Tensor:
    """|z_b|² at 20 kHz from Re z_b = irfft(X·H_b) and Im z_b = irfft(-i·X·H_b) (DC and Nyquist zeroed), for
    the bands of one `band_groups` slice at a time."""
    supports = _exact_supports(length, spectrum.real.dtype, spectrum.device)
    quadrature = -1j * spectrum
    quadrature[:, 0] = 0
    if length % 2 == 0:
        quadrature[:, -1] = 0
    envelopes = spectrum.real.new_empty(spectrum.shape[0], N_BANDS, length // DS)
    for bands in band_groups(N_BANDS, EXACT_BUFFERS * spectrum.shape[0] * length * spectrum.real.element_size()):
        filtered = spectrum.new_zeros(spectrum.shape[0], bands.stop - bands.start, spectrum.shape[1])

        def subbands(source: torch.Tensor) -> torch.Tensor:
            for row, (first, response) in enumerate(supports[bands]):
                last = first + response.numel()
                filtered[:, row, first:last] = source[:, first:last] * response
            return torch.fft.irfft(filtered, length, dim=-1)

        power = subbands(spectrum).square_()
        imag = subbands(quadrature)
        power.addcmul_(imag, imag)
        del imag
        envelopes[:, bands] = fft_resample(_compress_(power, floor), length // DS)
    return envelopes


def _decimated_envelopes(spectrum: torch.Tensor, length: int, floor: torch.Tensor) -> torch.Tensor:
    """|z_b(D·m)|² from band b's support shifted to baseband, inverse FFT of length L/D (exact for |z_b|), for
    the bands of one `band_groups` slice of a decimation group at a time."""
    num_env = length // DS
    envelopes = spectrum.real.new_empty(spectrum.shape[0], N_BANDS, num_env)
    for factor, bands, index, weights in _decimated_supports(length, spectrum.real.dtype, spectrum.device):
        per_band = DECIMATED_BUFFERS * spectrum.shape[0] * (length // factor) * spectrum.real.element_size()
        for part in band_groups(len(bands), per_band):
            baseband = torch.fft.ifft(spectrum[:, index[part]] * weights[part], length // factor, dim=-1)
            power = squared_magnitude(baseband).mul_(1.0 / factor**2)
            envelopes[:, list(bands[part])] = fft_resample(_compress_(power, floor), num_env)
    return envelopes


def _envelopes(x: torch.Tensor, sample_rate: int, method: str) -> torch.Tensor:
    """Compressed envelopes c [n, 32, M] of a chunk (steps 1-7 of `docs/audio.md#algorithm`)."""
    length = trimmed_length(x.shape[-1], sample_rate)
    x = x.clamp(-1.0, 1.0)
    if sample_rate != AUDIO_SR:
        x = fft_resample(x, resampled_length(x.shape[-1], sample_rate, AUDIO_SR)).clamp(-1.0, 1.0)
    x = x[:, :length]
    floor = 10.0 ** (-FLOOR_DB / 10) * x.square().mean(dim=-1)
    spectrum = torch.fft.rfft(x, dim=-1)
    build = _exact_envelopes if method == "exact" else _decimated_envelopes
    return build(spectrum, length, floor).clamp_(-1.0, 1.0)


def _median(values: torch.Tensor) -> torch.Tensor:
    """numpy's median along the last axis (mean of the two middle values for an even count)."""
    ordered = values.sort(dim=-1).values
    middle = values.shape[-1] // 2
    if values.shape[-1] % 2:
        return ordered[..., middle]
    return (ordered[..., middle - 1] + ordered[..., middle]) / 2


@lru_cache(maxsize=8)
def _pair_index(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    first, second = zip(*PAIRS)
    return torch.tensor(first, device=device), torch.tensor(second, device=device)


def _statistics(envelopes: torch.Tensor) -> torch.Tensor:
    """Steps 8-14: loudness, normalisation, marginals, correlations, modulation powers -> [n, 502]."""
    loudness = _median(envelopes.square().sum(dim=1).sqrt())
    scale = torch.where(loudness > 0, loudness.reciprocal(), torch.zeros_like(loudness))
    normalised = envelopes * scale[:, None, None]
    mean = normalised.mean(dim=-1)
    centred = normalised - mean[..., None]
    var = centred.square().mean(dim=-1)
    spread = (var / (EPS + mean.square())).sqrt()
    first, second = _pair_index(envelopes.device)
    covariance = (centred[:, first] * centred[:, second]).mean(dim=-1)
    corr = covariance / ((EPS + var[:, first]) * (EPS + var[:, second])).sqrt()
    weights, bank = _modulation_bank(envelopes.shape[-1], envelopes.dtype, envelopes.device)
    power = (squared_magnitude(torch.fft.rfft(normalised, dim=-1)) * weights) @ bank
    modulation = (power / (EPS + var[..., None])).sqrt()
    return torch.cat([mean, spread, corr, modulation.flatten(1), loudness[:, None]], dim=1)


def _run(waveform, sample_rate, dtype, method, chunk, device, reduce, width):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_chunk(chunk)
    clips, single = as_waveform_batch(waveform, sample_rate, dtype, device)
    length = trimmed_length(clips.shape[-1], sample_rate)
    if chunk is None:
        chunk = default_chunk(clips.device, 6 * N_BANDS * length * clips.element_size())
    if clips.shape[0] == 0:
        out = clips.new_empty((0, *width(length)))
    else:
        out = torch.cat([reduce(_envelopes(part, sample_rate, method)) for part in clips.split(chunk)])
    return out[0] if single else out


def texture_envelopes(waveform, sample_rate: int, *, dtype: torch.dtype = torch.float32, method: str = "exact",
                      chunk: int | None = None, device=None) -> torch.Tensor:
    """Compressed subband envelopes [N, 32, M] at 400 Hz (before loudness normalisation), for plots and tests."""
    return _run(waveform, sample_rate, dtype, method, chunk, device, lambda c: c, lambda n: (N_BANDS, n // DS))


def texture_statistics(waveform, sample_rate: int, *, dtype: torch.dtype = torch.float32, method: str = "exact",
                       chunk: int | None = None, device=None) -> torch.Tensor:
    """The 502 sound-texture statistics of mono clips `waveform` [N, S] or [S] -> [N, 502] (or [502]).

    Full-scale floats at any `sample_rate` (resampled to 20 kHz). The result depends only on each clip, not on
    the batch, `chunk` or device. `method="decimated"` is ~3x faster on the CPU and within 5e-3 of "exact".
    `chunk` clips per batch: default 1 on the CPU, from free memory on CUDA. Order: `TEXTURE_FEATURE_NAMES`
    (`docs/audio.md#feature-layout`). Raises ValueError for NaN/inf, clips under ~1.0025 s, wrong rank.
    """
    return _run(waveform, sample_rate, dtype, method, chunk, device, _statistics, lambda n: (NUM_TEXTURE_FEATURES,))
