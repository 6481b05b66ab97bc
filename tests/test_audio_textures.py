"""Sound-texture statistics: filterbank identities, the per-clip reference against an independent scipy oracle,
the batched torch paths against the reference, closed-form properties on white and AM noise, invariances,
batch independence and input errors (`docs/audio.md#textures`)."""
import math

import numpy as np
import pytest
import torch

from avel_fast.audio import TEXTURE_FEATURE_NAMES, segment_windows, texture_envelopes, texture_statistics
from avel_fast.audio.filterbanks import (
    AUDIO_SR,
    EPS,
    FLOOR_DB,
    PAIRS,
    band_cutoffs,
    modulation_centres,
    modulation_filters,
    subband_filters,
    subband_supports,
)
from avel_fast.audio import textures as textures_module
from avel_fast.audio.textures import EXACT_BUFFERS, band_groups, decimation_plan
from avel_fast.reference.textures import fft_resample, texture_envelopes_clip, texture_statistics_clip

pytestmark = pytest.mark.usefixtures("one_thread")

MU, SD, RHO, MOD, LOUD = slice(0, 32), slice(32, 64), slice(64, 181), slice(181, 501), 501
RATES = (16_000, 20_000, 44_100)
SIGNALS = ("white", "pink", "am", "clicks", "tone", "offbin", "chirp", "silence")


def make_signal(kind: str, sample_rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """The test set: noises, clicks, tones (1000 Hz on a 20 kHz bin, 1234.5 Hz off), a chirp and silence."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    white = rng.normal(0.0, 0.1, n)
    if kind == "white":
        return white
    if kind == "pink":
        spectrum = np.fft.rfft(white)
        spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
        pink = np.fft.irfft(spectrum, n)
        return pink * (0.1 / pink.std())
    if kind == "am":
        return white * (1 + 0.9 * np.sin(2 * np.pi * 4 * t))
    if kind == "clicks":
        clicks = np.zeros(n)
        clicks[rng.choice(n, size=max(1, int(20 * seconds)), replace=False)] = 0.5
        return clicks + rng.normal(0.0, 1e-3, n)
    if kind == "tone":
        return 0.3 * np.sin(2 * np.pi * 1000 * t)
    if kind == "offbin":
        return 0.3 * np.sin(2 * np.pi * 1234.5 * t)
    if kind == "chirp":
        return 0.3 * np.sin(2 * np.pi * (100 * t + (8000 - 100) / (2 * seconds) * t**2))
    assert kind == "silence"
    return np.zeros(n)


def scipy_oracle(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """An independent, literal version: scipy's resample and hilbert on time-domain subbands, one irfft per
    modulation filter, loops over pairs, np.median."""
    signal = pytest.importorskip("scipy.signal")
    x = np.clip(x, -1, 1)
    if sample_rate != AUDIO_SR:
        x = np.clip(signal.resample(x, int(math.floor(x.size * AUDIO_SR / sample_rate + 0.5))), -1, 1)
    num_env = x.size // 50
    x = x[: num_env * 50]
    bank = subband_filters(x.size)
    spectrum = np.fft.rfft(x)
    floor = 10 ** (-FLOOR_DB / 10) * np.mean(x**2)
    envelopes = np.empty((32, num_env))
    for band in range(32):
        subband = np.fft.irfft(spectrum * bank[:, band], x.size)
        compressed = (np.abs(signal.hilbert(subband)) ** 2 + floor) ** 0.15
        envelopes[band] = np.clip(signal.resample(compressed, num_env), -1, 1)
    loudness = np.median(np.sqrt((envelopes**2).sum(axis=0)))
    e = envelopes / loudness if loudness > 0 else np.zeros_like(envelopes)
    mean, var = e.mean(axis=1), e.var(axis=1)
    out = list(mean) + list(np.sqrt(var / (EPS + mean**2)))
    for i, j in PAIRS:
        out.append(np.mean((e[i] - mean[i]) * (e[j] - mean[j])) / np.sqrt((EPS + var[i]) * (EPS + var[j])))
    mod_bank = modulation_filters(num_env)
    for band in range(32):
        for k in range(10):
            filtered = np.fft.irfft(np.fft.rfft(e[band]) * mod_bank[:, k], num_env)
            out.append(np.sqrt(np.mean(filtered**2) / (EPS + var[band])))
    return np.array(out + [loudness])


@pytest.fixture(scope="module")
def signal_sets():
    """{rate: (clips [8, S] float64, reference statistics [8, 502])} at 1.5 s."""
    sets = {}
    for rate in RATES:
        clips = np.stack([make_signal(kind, rate, 1.5) for kind in SIGNALS])
        sets[rate] = clips, np.stack([texture_statistics_clip(clip, rate) for clip in clips])
    return sets


def fast(x, rate=AUDIO_SR, **options):
    options.setdefault("dtype", torch.float64)
    return texture_statistics(torch.as_tensor(x), rate, **options).numpy()


# --- filterbanks -----------------------------------------------------------------------------------------------

def test_band_cutoffs_are_the_erb_spaced_table():
    expected = [20.0, 51.7, 87.4, 127.7, 173.1, 224.3, 282.0, 347.1, 420.4, 503.1, 596.3, 701.4, 819.9, 953.4,
                1104.0, 1273.8, 1465.1, 1680.9, 1924.1, 2198.3, 2507.4, 2855.9, 3248.7, 3691.6, 4190.9, 4753.8,
                5388.4, 6103.8, 6910.2, 7819.5, 8844.5, 10000.0]
    np.testing.assert_allclose(band_cutoffs(), expected, atol=0.051)


@pytest.mark.parametrize("length", [20_050, 75_000])
def test_subband_filters_tile_the_spectrum(length):
    bank = subband_filters(length)
    freqs = np.arange(length // 2 + 1) * AUDIO_SR / length
    cut = band_cutoffs()
    np.testing.assert_allclose((bank**2).sum(axis=1), 1.0, atol=1e-12)
    assert bank.min() >= 0
    for k in range(1, 31):
        nearest = np.argmin(np.abs(freqs - cut[k]))
        assert bank[:, k].max() >= 0.999 and np.argmax(bank[:, k]) == nearest
        inside = (freqs > cut[k - 1]) & (freqs < cut[k + 1])
        assert np.all(bank[inside, k] > 0) and np.all(bank[~inside, k] == 0)
    assert np.all(bank[freqs >= cut[1], 0] == 0) and np.all(bank[freqs < cut[1], 0] > 0)
    assert np.all(bank[freqs <= cut[30], 31] == 0) and np.all(bank[freqs > cut[30], 31] > 0)


@pytest.mark.parametrize("length", [20_050, 75_000, 75_001])
def test_subband_supports_are_the_filterbank_without_its_zeros(length):
    bank = subband_filters(length)
    for band, (first, values) in enumerate(subband_supports(length)):
        nonzero = np.flatnonzero(bank[:, band])
        assert first == nonzero[0] and values.size == nonzero.size == nonzero[-1] - first + 1
        np.testing.assert_array_equal(values, bank[nonzero, band])


@pytest.mark.parametrize("seconds", [3.75, 300.0])
def test_the_working_memory_of_long_clips_is_bounded(seconds):
    """`docs/audio.md#long-files`: the filterbank is stored by its supports (about 2 F values, not 32 F) and the
    per-band buffers of a group of bands stay within the budget, whatever the length."""
    length = round(seconds * AUDIO_SR)
    supports = subband_supports(length)
    assert sum(values.size for _, values in supports) <= 2 * (length // 2 + 1)
    per_band = EXACT_BUFFERS * length * 4
    groups = band_groups(32, per_band)
    assert [band for group in groups for band in range(32)[group]] == list(range(32))
    assert all(len(range(32)[group]) == 1 or len(range(32)[group]) * per_band <= textures_module.BAND_BUDGET_BYTES
               for group in groups)
    assert len(groups) == 1 or seconds > 3.75


@pytest.mark.parametrize("method", ["exact", "decimated"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bands_in_groups_give_the_numbers_of_all_bands_at_once(monkeypatch, method, dtype):
    """One band per group (a long file's plan) against all 32 at once: equal up to the rounding of the FFT
    library, which computes a single transform and a batch of them with different kernels."""
    x = torch.from_numpy(make_signal("am", 16_000, 1.5)).to(dtype)
    whole = texture_statistics(x, 16_000, method=method, dtype=dtype)
    monkeypatch.setattr(textures_module, "BAND_BUDGET_BYTES", 1)
    torch.testing.assert_close(texture_statistics(x, 16_000, method=method, dtype=dtype), whole,
                               rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-14)


def test_modulation_filters_have_unit_mean_power_in_the_flat_range():
    centres = modulation_centres()
    np.testing.assert_allclose(centres, [0.5, 0.9729, 1.8932, 3.684, 7.1687, 13.9495, 27.1442, 52.8195,
                                         102.7809, 200.0], rtol=1e-4)
    bank = modulation_filters(1500)
    freqs = np.arange(751) * 400 / 1500
    total = (bank**2).sum(axis=1)
    assert total[(freqs >= centres[3]) & (freqs <= centres[6])].mean() == pytest.approx(1.0, abs=1e-12)
    assert np.count_nonzero(bank, axis=0).tolist() == [3, 7, 14, 27, 53, 104, 203, 396, 750, 750]
    assert np.all(bank[0] == 0)
    assert total[np.argmin(np.abs(freqs - 128))] == pytest.approx(0.87, abs=0.02)


def test_feature_names_follow_the_output_layout():
    names = TEXTURE_FEATURE_NAMES
    assert len(names) == len(set(names)) == 502
    assert names[0] == "mu[0]" and names[32] == "sd[0]" and names[64:69] == ("rho[0,1]", "rho[0,2]", "rho[0,3]",
                                                                              "rho[0,5]", "rho[1,2]")
    assert names[180] == "rho[30,31]" and names[181] == "mod[0,0]" and names[181 + 10 * 3 + 5] == "mod[3,5]"
    assert names[501] == "loudness"


def test_decimation_plan_of_a_375_s_clip():
    plan = {factor: bands for factor, bands in decimation_plan(75_000)}
    assert plan == {25: tuple(range(0, 5)), 10: tuple(range(5, 16)), 5: tuple(range(16, 23)), 2: tuple(range(23, 32))}


# --- reference, oracle and fast paths --------------------------------------------------------------------------

@pytest.mark.parametrize("rate", RATES)
def test_reference_matches_the_scipy_oracle(signal_sets, rate):
    clips, reference = signal_sets[rate]
    for kind in ("am", "offbin", "silence") if rate != AUDIO_SR else SIGNALS:
        index = SIGNALS.index(kind)
        np.testing.assert_allclose(reference[index], scipy_oracle(clips[index], rate), atol=1e-9, rtol=0,
                                   err_msg=kind)


@pytest.mark.parametrize("rate", RATES)
def test_fast_exact_matches_the_reference(signal_sets, rate):
    clips, reference = signal_sets[rate]
    np.testing.assert_allclose(fast(clips, rate, chunk=3), reference, atol=1e-9, rtol=0)
    np.testing.assert_allclose(fast(clips, rate, dtype=torch.float32), reference, atol=5e-4, rtol=0)


@pytest.mark.parametrize("rate", RATES)
def test_decimated_is_close_to_exact(signal_sets, rate):
    clips, reference = signal_sets[rate]
    decimated = fast(clips, rate, method="decimated")
    np.testing.assert_allclose(decimated, reference, atol=5e-3, rtol=0)
    assert np.abs(decimated - reference).max() > 1e-9  # an approximation, not a copy of the exact path
    np.testing.assert_allclose(fast(clips, rate, method="decimated", dtype=torch.float32), decimated, atol=5e-4)


def test_envelopes_match_the_reference():
    clip = make_signal("chirp", 16_000, 1.5)
    envelopes = texture_envelopes(torch.from_numpy(clip), 16_000, dtype=torch.float64)
    assert envelopes.shape == (32, 600)
    np.testing.assert_allclose(envelopes.numpy(), texture_envelopes_clip(clip, 16_000), atol=1e-12, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["exact", "decimated"])
def test_cuda_matches_the_cpu(signal_sets, method):
    clips, _ = signal_sets[44_100]
    cpu = fast(clips, 44_100, method=method)
    cuda = texture_statistics(torch.from_numpy(clips).cuda(), 44_100, dtype=torch.float64, method=method)
    assert cuda.device.type == "cuda"
    np.testing.assert_allclose(cuda.cpu().numpy(), cpu, atol=1e-9, rtol=0)
    single = texture_statistics(torch.from_numpy(clips).float().cuda(), 44_100, method=method, chunk=None)
    np.testing.assert_allclose(single.cpu().numpy(), cpu, atol=5e-4, rtol=0)


# --- closed-form properties --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def white_stats():
    clips = np.stack([make_signal("white", AUDIO_SR, 3.75, seed) for seed in (1, 2)])
    return fast(clips)


def test_white_noise_statistics(white_stats):
    bank_power = (subband_filters(75_000) ** 2).sum(axis=0)
    for stats in white_stats:
        mean, spread, corr = stats[MU], stats[SD], stats[RHO]
        shape = mean / bank_power**0.15
        assert np.all(np.abs(shape / shape.mean() - 1) <= 0.05)
        assert mean[0] == pytest.approx(0.133, abs=0.01) and mean[30] == pytest.approx(0.222, abs=0.01)
        rayleigh = math.sqrt(math.gamma(1.3) / math.gamma(1.15) ** 2 - 1)
        assert np.abs(spread[:14] - rayleigh).max() < 0.02 and spread[30] == pytest.approx(0.085, abs=0.015)
        assert np.all((spread >= 0.07) & (spread <= 0.21))
        offsets = np.array([j - i for i, j in PAIRS])
        assert corr[offsets == 1].mean() == pytest.approx(0.10, abs=0.04)
        assert abs(corr[offsets > 1].mean()) < 0.03 and np.abs(corr[offsets > 1]).max() < 0.2
        modulation = stats[MOD].reshape(32, 10)
        assert np.all(np.diff(modulation[:, :9].mean(axis=0)) > 0)
        assert modulation[:, 0].mean() == pytest.approx(0.055, abs=0.02)
        assert np.all(((modulation**2).sum(axis=1) >= 0.8) & ((modulation**2).sum(axis=1) <= 1.05))
        assert stats[LOUD] == pytest.approx(1.676, abs=0.01)


def test_amplitude_modulated_noise_peaks_at_its_rate(white_stats):
    stats = fast(make_signal("am", AUDIO_SR, 3.75, seed=1))
    modulation = stats[MOD].reshape(32, 10)
    assert np.all(modulation.argmax(axis=1) == 3)
    assert np.all(modulation[:, 3] / white_stats[0][MOD].reshape(32, 10)[:, 3] >= 1.5)
    assert stats[RHO].min() >= 0.5 and stats[RHO].mean() == pytest.approx(0.72, abs=0.06)
    assert np.all(np.abs((modulation**2).sum(axis=1) - 1) <= 0.05)


def test_band_above_8_khz_of_16_khz_audio_is_floor_only():
    stats = fast(make_signal("white", 16_000, 2.0), 16_000)
    assert stats[SD][31] < 1e-9
    assert np.abs(stats[RHO][[j == 31 for _, j in PAIRS]]).max() < 1e-9
    assert stats[MOD].reshape(32, 10)[31].max() < 1e-9
    assert stats[MU][31] == pytest.approx(0.0135, abs=0.002)


def test_silence_gives_zeros():
    silence = np.zeros((2, 30_000))
    assert np.all(texture_statistics_clip(silence[0], AUDIO_SR) == 0)
    for method in ("exact", "decimated"):
        for dtype in (torch.float32, torch.float64):
            assert torch.all(texture_statistics(silence, AUDIO_SR, dtype=dtype, method=method) == 0)


@pytest.mark.parametrize("gain", [0.5, 1.7])
@pytest.mark.parametrize("method", ["exact", "decimated"])
def test_gain_changes_only_the_loudness(method, gain):
    clip = make_signal("pink", AUDIO_SR, 1.5)
    base, scaled = fast(np.stack([clip, gain * clip]), method=method)
    np.testing.assert_allclose(scaled[:LOUD], base[:LOUD], atol=1e-12, rtol=0)
    assert scaled[LOUD] / base[LOUD] == pytest.approx(gain**0.3, rel=1e-12)
    single = texture_statistics(torch.from_numpy(np.stack([clip, gain * clip])).float(), AUDIO_SR, method=method)
    np.testing.assert_allclose(single[1, :LOUD].numpy(), single[0, :LOUD].numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["exact", "decimated"])
def test_circular_shifts_by_whole_envelope_samples_change_nothing(method):
    clip = make_signal("am", AUDIO_SR, 1.5)
    base = fast(clip, method=method)
    for shift in (50, 50 * 137):
        np.testing.assert_allclose(fast(np.roll(clip, shift), method=method), base, atol=1e-12, rtol=0)
    low_rate = make_signal("am", 16_000, 1.5)
    np.testing.assert_allclose(fast(np.roll(low_rate, 40 * 11), 16_000, method=method), fast(low_rate, 16_000,
                                                                                           method=method), atol=1e-12)
    assert np.abs(fast(np.roll(clip, 7), method=method) - base).max() > 1e-6  # not a multiple of 50: not exact


@pytest.mark.parametrize("method", ["exact", "decimated"])
def test_time_reversal_and_polarity_change_nothing(method):
    clip = make_signal("chirp", AUDIO_SR, 1.5)
    base = fast(clip, method=method)
    np.testing.assert_allclose(fast(np.roll(clip[::-1], 1), method=method), base, atol=1e-12, rtol=0)
    np.testing.assert_allclose(fast(-clip, method=method), base, atol=1e-12, rtol=0)


def test_fft_upsampled_clip_has_the_same_statistics():
    clip = make_signal("pink", AUDIO_SR, 1.5)
    upsampled = fft_resample(clip, 66_150)
    np.testing.assert_allclose(fast(upsampled, 44_100), fast(clip), atol=1e-12, rtol=0)
    np.testing.assert_allclose(texture_statistics_clip(upsampled, 44_100), texture_statistics_clip(clip, AUDIO_SR),
                               atol=1e-12, rtol=0)


def test_windows_of_one_stationary_texture_agree_within_sampling_error():
    clip = make_signal("white", AUDIO_SR, 7.5, seed=3)
    first, second = fast(np.stack([clip[:75_000], clip[75_000:]]))
    assert np.abs(first[MU] - second[MU]).max() <= 0.01
    assert np.abs(first[SD] - second[SD]).max() <= 0.04
    assert np.abs(first[RHO] - second[RHO]).max() <= 0.3  # measured 0.12-0.19 over five seeds
    assert np.abs(first[MOD] - second[MOD]).max() <= 0.15  # measured 0.08-0.11


@pytest.mark.parametrize("method", ["exact", "decimated"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_do_not_depend_on_the_batch(method, dtype):
    rng = np.random.default_rng(5)
    clips = np.stack([make_signal(kind, AUDIO_SR, 1.2, seed) for seed, kind in enumerate(SIGNALS)])
    mixed = clips[rng.permutation(np.r_[np.arange(len(clips)), [0, 7]])]  # duplicates and silence
    singles = np.stack([fast(clip, method=method, dtype=dtype) for clip in mixed])
    for chunk in (1, 3, None):
        batched = fast(mixed, method=method, dtype=dtype, chunk=chunk)
        np.testing.assert_allclose(batched, singles, atol=1e-12 if dtype == torch.float64 else 2e-4, rtol=0)


def test_float32_input_and_empty_batch():
    clip = make_signal("white", AUDIO_SR, 1.1).astype(np.float32)
    out = texture_statistics(clip, AUDIO_SR)
    assert out.shape == (502,) and out.dtype == torch.float32
    assert texture_statistics(np.zeros((0, 30_000)), AUDIO_SR).shape == (0, 502)
    assert texture_envelopes(np.zeros((0, 30_000)), AUDIO_SR).shape == (0, 32, 600)


# --- input errors ------------------------------------------------------------------------------------------------

def test_shortest_clip_is_accepted_and_one_sample_less_refused():
    texture_statistics(make_signal("white", AUDIO_SR, 1.0025), AUDIO_SR)
    with pytest.raises(ValueError, match="too short"):
        texture_statistics(np.zeros(20_049), AUDIO_SR)
    with pytest.raises(ValueError, match="too short"):
        texture_statistics_clip(np.zeros(20_049), AUDIO_SR)


@pytest.mark.parametrize(
    ("waveform", "rate", "options", "message"),
    [
        (np.full(30_000, np.nan), AUDIO_SR, {}, "NaN or inf"),
        (np.r_[np.zeros(29_999), np.inf], AUDIO_SR, {}, "NaN or inf"),
        (np.zeros((2, 2, 30_000)), AUDIO_SR, {}, "3-D"),
        (np.zeros(30_000, dtype=np.int16), AUDIO_SR, {}, "floating point"),
        ([0.0] * 30_000, AUDIO_SR, {}, "torch.Tensor or numpy array"),
        (np.zeros(30_000), 0, {}, "sample_rate"),
        (np.zeros(30_000), -16_000, {}, "sample_rate"),
        (np.zeros(30_000), 16_000.0, {}, "sample_rate"),
        (np.zeros(30_000), AUDIO_SR, {"dtype": torch.float16}, "dtype"),
        (np.zeros(30_000), AUDIO_SR, {"method": "fast"}, "method"),
        (np.zeros(30_000), AUDIO_SR, {"chunk": 0}, "chunk"),
        (np.zeros(30_000), AUDIO_SR, {"device": "gpu"}, "not a torch device"),
    ],
)
def test_bad_input_is_refused(waveform, rate, options, message):
    with pytest.raises(ValueError, match=message):
        texture_statistics(waveform, rate, **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available"):
        texture_statistics(np.zeros(30_000), AUDIO_SR, device="cuda")


# --- per-segment windows ------------------------------------------------------------------------------------------

def test_segment_windows_of_a_10_s_clip():
    clip = torch.arange(160_000, dtype=torch.float64) / 160_000
    windows = segment_windows(clip, 16_000)
    assert windows.shape == (10, 60_000) and windows.dtype == torch.float64
    starts = (windows[:, 0] * 160_000).round().long().tolist()
    expected = [max(0, min(round((t + 0.5 - 1.875) * 16_000), 100_000)) for t in range(10)]
    assert starts == expected == [0, 0, 10_000, 26_000, 42_000, 58_000, 74_000, 90_000, 100_000, 100_000]
    assert torch.equal(windows[4], clip[42_000:102_000])
    assert segment_windows(np.zeros((3, 160_000), dtype=np.float32), 16_000).shape == (3, 10, 60_000)
    assert segment_windows(np.zeros(152_000), 16_000).shape == (10, 60_000)  # 9.5 s: the last centre is inside
    for samples in (151_999, 50_000):
        with pytest.raises(ValueError, match="too short"):
            segment_windows(np.zeros(samples), 16_000)
