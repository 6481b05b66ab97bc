"""MFCC: per clip against librosa 0.11 (skipped without librosa) and a hand numpy oracle, per-clip dB floor in a
batch, the flattened vector, resampling, input errors (`docs/audio.md#mfcc`)."""
import numpy as np
import pytest
import torch

from avel_fast.audio import mfcc, mfcc_vector
from avel_fast.audio.filterbanks import dct_matrix, mel_filters
from avel_fast.audio.mfcc import _power_spectrogram
from avel_fast.audio.signal import squared_magnitude
from avel_fast.reference.textures import fft_resample

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 22_050


def clips(seconds: float = 1.5) -> np.ndarray:
    """White noise, a tone with a harmonic, a chirp, silence and a quiet click train at 22 050 Hz."""
    rng = np.random.default_rng(0)
    t = np.arange(round(seconds * SR)) / SR
    clicks = np.zeros_like(t)
    clicks[:: SR // 10] = 0.01
    return np.stack([
        rng.normal(0, 0.1, t.size),
        0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 1760 * t),
        0.3 * np.sin(2 * np.pi * (100 * t + 2000 * t**2)),
        np.zeros_like(t),
        clicks,
    ])


def numpy_oracle(x: np.ndarray) -> np.ndarray:
    """Hand STFT (zero-padded frames, periodic Hann), Slaney mel, per-clip 80 dB floor, orthonormal DCT-II."""
    padded = np.pad(x, 1024)
    frames = 1 + x.size // 512
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)
    stft = np.stack([np.fft.rfft(padded[i * 512 : i * 512 + 2048] * window) for i in range(frames)], axis=1)
    decibels = 10 * np.log10(np.maximum(mel_filters() @ np.abs(stft) ** 2, 1e-10))
    return dct_matrix(20, 128) @ np.maximum(decibels, decibels.max() - 80)


def test_mel_bank_and_dct_match_librosa_and_scipy():
    librosa = pytest.importorskip("librosa")
    scipy_fft = pytest.importorskip("scipy.fft")
    np.testing.assert_allclose(mel_filters(), librosa.filters.mel(sr=SR, n_fft=2048), atol=1e-8, rtol=0)
    x = np.random.default_rng(1).normal(size=(128, 7))
    np.testing.assert_allclose(dct_matrix(20, 128) @ x, scipy_fft.dct(x, axis=0, norm="ortho")[:20], atol=1e-12)


def test_matches_librosa_per_clip():
    librosa = pytest.importorskip("librosa")
    batch = clips().astype(np.float32)
    expected = np.stack([librosa.feature.mfcc(y=clip, sr=SR) for clip in batch])
    out = mfcc(batch, SR)
    assert out.shape == expected.shape == (5, 20, 65) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-3, rtol=0)


def test_matches_the_numpy_oracle_in_float64():
    batch = clips()
    out = mfcc(torch.from_numpy(batch), SR, dtype=torch.float64, chunk=2).numpy()
    np.testing.assert_allclose(out, np.stack([numpy_oracle(clip) for clip in batch]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_power_spectrogram_clip_by_clip_is_the_batched_one_bit_for_bit(dtype):
    batch = torch.from_numpy(clips(0.7)).to(dtype)
    window = torch.hann_window(2048, periodic=True, dtype=dtype)
    batched = torch.stft(batch, 2048, 512, window=window, center=True, pad_mode="constant", return_complex=True)
    expected = batched.abs().square().transpose(1, 2)
    power = _power_spectrogram(batch, window)
    assert power.shape == expected.shape == (5, 31, 1025)
    assert torch.equal(power, squared_magnitude(batched.transpose(1, 2)))
    torch.testing.assert_close(power, expected)


def test_db_floor_is_per_clip():
    batch = clips()
    per_clip = np.stack([mfcc(clip, SR, dtype=torch.float64).numpy() for clip in batch])
    for chunk in (None, 5):
        np.testing.assert_allclose(mfcc(batch, SR, dtype=torch.float64, chunk=chunk).numpy(), per_clip,
                                   atol=1e-9, rtol=0)
    loud_floor = np.maximum(per_clip[3], per_clip[0].max() - 80)
    assert np.abs(per_clip[3] - loud_floor).max() > 100  # one floor for the whole batch would change silence


def test_vector_is_coefficient_major_and_375_s_gives_3240():
    coefficients = mfcc(clips()[:2], SR)
    assert torch.equal(mfcc_vector(clips()[:2], SR), coefficients.reshape(2, -1))
    assert mfcc_vector(np.zeros(round(3.75 * SR)), SR).shape == (3240,)


def test_other_rates_are_fft_resampled_to_22050():
    t = np.arange(3 * 16_000) / 16_000
    clip = 0.3 * np.sin(2 * np.pi * 440 * t) + np.random.default_rng(2).normal(0, 0.01, t.size)
    out = mfcc(clip, 16_000, dtype=torch.float64)
    np.testing.assert_allclose(out.numpy(), numpy_oracle(fft_resample(clip, 66_150)), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("waveform", "options", "message"),
    [
        (np.full(4096, np.nan), {}, "NaN or inf"),
        (np.zeros((1, 1, 4096)), {}, "3-D"),
        (np.zeros(4096), {"n_mfcc": 0}, "n_mfcc"),
        (np.zeros(4096), {"n_mfcc": 129}, "n_mfcc"),
        (np.zeros(0), {}, "no samples"),
        (np.zeros(4096), {"chunk": -1}, "chunk"),
    ],
)
def test_bad_input_is_refused(waveform, options, message):
    with pytest.raises(ValueError, match=message):
        mfcc(waveform, SR, **options)
    with pytest.raises(ValueError, match="sample_rate"):
        mfcc(np.zeros(4096), 0)
