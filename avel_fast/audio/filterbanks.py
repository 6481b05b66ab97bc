"""Constants and float64 numpy filterbanks of the sound-texture statistics and the MFCC (`docs/audio.md#textures`).

Shared by the per-clip reference (`avel_fast.reference.textures`) and the batched torch path; they are tested
on their own closed-form properties. Texture definition: Owens et al., "Ambient Sound Provides Supervision for
Visual Learning" (after McDermott & Simoncelli's sound textures); the seed paper's §3.2 summary.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

AUDIO_SR = 20_000
"""Rate of the cochlear filterbank (Hz); clips at other rates are FFT-resampled to it."""
ENV_SR = 400
"""Rate of the compressed subband envelopes (Hz)."""
DS = AUDIO_SR // ENV_SR
N_BANDPASS = 30
N_BANDS = N_BANDPASS + 2
"""30 ERB band-pass filters, the low-pass (band 0) and the high-pass (band 31)."""
LOW_HZ, HIGH_HZ = 20.0, 10_000.0
COMP = 0.3
"""Envelope compression exponent."""
N_MOD, MOD_LOW, MOD_HIGH, MOD_Q = 10, 0.5, 200.0, 1.0
OFFSETS = (1, 2, 3, 5)
"""Band offsets of the envelope correlations."""
EPS = 2.0**-23
FLOOR_DB = 90.0
"""Envelope floor below the clip's mean power (dB, `docs/audio.md#envelope-floor`)."""
MIN_ENV_SAMPLES = 401
"""Fewest envelope samples M (about 1.0025 s): below it the 0.5 Hz modulation filter has no DFT bin."""

PAIRS = tuple((i, i + d) for i in range(N_BANDS) for d in OFFSETS if i + d < N_BANDS)
"""The 117 correlated band pairs, in Owens' loop order."""
NUM_TEXTURE_FEATURES = 2 * N_BANDS + len(PAIRS) + N_BANDS * N_MOD + 1
TEXTURE_FEATURE_NAMES = (
    tuple(f"mu[{b}]" for b in range(N_BANDS))
    + tuple(f"sd[{b}]" for b in range(N_BANDS))
    + tuple(f"rho[{i},{j}]" for i, j in PAIRS)
    + tuple(f"mod[{b},{k}]" for b in range(N_BANDS) for k in range(N_MOD))
    + ("loudness",)
)
"""Names of the 502 texture statistics in output order (`docs/audio.md#feature-layout`)."""

MFCC_SR = 22_050
MFCC_N_FFT, MFCC_HOP, MFCC_N_MELS, MFCC_TOP_DB, MFCC_AMIN = 2048, 512, 128, 80.0, 1e-10
"""librosa 0.11 defaults of `librosa.feature.mfcc` (`docs/audio.md#mfcc`)."""


def resampled_length(num_samples: int, sample_rate: int, target_rate: int) -> int:
    """round-half-up(S·target/sr), in integers."""
    return (2 * num_samples * target_rate + sample_rate) // (2 * sample_rate)


def erb(freq):
    """ERB-number of a frequency in Hz (Glasberg & Moore, as in McDermott's toolbox)."""
    return 9.265 * np.log1p(np.asarray(freq, dtype=np.float64) / (24.7 * 9.265))


def erb_to_hz(number):
    return 24.7 * 9.265 * np.expm1(np.asarray(number, dtype=np.float64) / 9.265)


def band_cutoffs() -> np.ndarray:
    """The 32 ERB-spaced cutoffs from 20 Hz to 10 kHz; band k = 1..30 peaks at cutoff k."""
    return erb_to_hz(np.linspace(erb(LOW_HZ), erb(min(HIGH_HZ, AUDIO_SR / 2)), N_BANDS))


def _bandpass(freqs: np.ndarray, k: int, cut: np.ndarray) -> np.ndarray:
    """Band-pass filter k (1..30) at `freqs`: a half cosine in ERB between cutoffs k - 1 and k + 1, else 0."""
    low, high = cut[k - 1], cut[k + 1]
    inside = (freqs > low) & (freqs < high)
    centre, width = (erb(low) + erb(high)) / 2, erb(high) - erb(low)
    response = np.zeros(freqs.size)
    response[inside] = np.cos(np.pi * (erb(freqs[inside]) - centre) / width)
    return response


@lru_cache(maxsize=16)
def subband_supports(length: int) -> tuple[tuple[int, np.ndarray], ...]:
    """Each band's (first rfft bin, response [W_b] on its W_b contiguous nonzero bins) for a 20 kHz clip of
    `length` samples: the filterbank without the dense [length//2 + 1, 32] matrix (768 MB for five minutes)."""
    step = AUDIO_SR / length
    num_bins = length // 2 + 1
    cut = band_cutoffs()

    def bins(low: float, high: float) -> np.ndarray:
        """Bin indices covering every frequency in (low, high), one spare bin each side."""
        return np.arange(max(0, int(low / step) - 1), min(num_bins, int(high / step) + 2))

    responses = []
    index = bins(0.0, cut[1])
    freqs = index * step
    responses.append((index, np.where(freqs < cut[1], np.sqrt(1 - _bandpass(freqs, 1, cut) ** 2), 0.0)))
    for k in range(1, N_BANDPASS + 1):
        index = bins(cut[k - 1], cut[k + 1])
        responses.append((index, _bandpass(index * step, k, cut)))
    index = bins(cut[N_BANDPASS], AUDIO_SR / 2)
    freqs = index * step
    responses.append((index, np.where(freqs > cut[N_BANDPASS], np.sqrt(1 - _bandpass(freqs, N_BANDPASS, cut) ** 2),
                                      0.0)))
    supports = []
    for index, response in responses:
        nonzero = np.flatnonzero(response)
        values = response[nonzero[0] : nonzero[-1] + 1].copy()
        values.setflags(write=False)
        supports.append((int(index[nonzero[0]]), values))
    return tuple(supports)


@lru_cache(maxsize=16)
def subband_filters(length: int) -> np.ndarray:
    """Half-cosine ERB filterbank H [length//2 + 1, 32] on the rfft bins of a 20 kHz clip (Σ_b H² = 1), dense:
    `subband_supports` scattered into a matrix."""
    bank = np.zeros((length // 2 + 1, N_BANDS))
    for band, (first, values) in enumerate(subband_supports(length)):
        bank[first : first + values.size, band] = values
    bank.setflags(write=False)
    return bank


def modulation_centres() -> np.ndarray:
    return 2.0 ** np.linspace(math.log2(MOD_LOW), math.log2(MOD_HIGH), N_MOD)


@lru_cache(maxsize=16)
def modulation_filters(num_env: int) -> np.ndarray:
    """Constant-Q (Q = 1) half-cosine modulation bank G [num_env//2 + 1, 10] on the 400 Hz envelope's rfft bins."""
    freqs = np.arange(num_env // 2 + 1) * (ENV_SR / num_env)
    centres = modulation_centres()
    bank = np.zeros((freqs.size, N_MOD))
    for k, centre in enumerate(centres):
        bandwidth = centre / MOD_Q
        inside = (freqs > centre - bandwidth) & (freqs < centre + bandwidth) & (freqs > 0)
        bank[inside, k] = np.cos(np.pi * (freqs[inside] - centre) / (2 * bandwidth))
    flat = (freqs >= centres[3]) & (freqs <= centres[6])
    bank /= np.sqrt(np.mean(np.sum(bank[flat] ** 2, axis=1)))
    bank.setflags(write=False)
    return bank


def parseval_weights(length: int) -> np.ndarray:
    """Weights w of Σ_t y(t)² = (1/n)·Σ_f w_f·|rfft(y)_f|²: 1 at DC (and at Nyquist for even n), else 2."""
    weights = np.full(length // 2 + 1, 2.0)
    weights[0] = 1.0
    if length % 2 == 0:
        weights[-1] = 1.0
    return weights


def hz_to_mel(freq):
    """Slaney mel scale (librosa `htk=False`): linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    log_step = math.log(6.4) / 27
    linear = freq / (200 / 3)
    return np.where(freq >= 1000, 15 + np.log(np.maximum(freq, 1e-300) / 1000) / log_step, linear)


def mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    log_step = math.log(6.4) / 27
    return np.where(mel >= 15, 1000 * np.exp(log_step * (mel - 15)), mel * (200 / 3))


@lru_cache(maxsize=4)
def mel_filters(sample_rate: int = MFCC_SR, n_fft: int = MFCC_N_FFT, n_mels: int = MFCC_N_MELS) -> np.ndarray:
    """Slaney-normalised triangular mel bank [n_mels, n_fft//2 + 1] from 0 Hz to sr/2 (librosa's default)."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    bank = np.maximum(0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=4)
def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II rows [n_out, n_in] (scipy `dct(type=2, norm="ortho")`)."""
    n = np.arange(n_in)
    matrix = np.sqrt(2.0 / n_in) * np.cos(np.pi * np.arange(n_out)[:, None] * (2 * n + 1) / (2 * n_in))
    matrix[0] /= math.sqrt(2.0)
    matrix.setflags(write=False)
    return matrix
