"""Paired synthetic scenes: sounds and images drawn from the same scene (`docs/audio.md#synthetic-scenes`).

A stand-in for the frame/sound pairs of Owens et al. (seed paper §3): no such data set can be downloaded here.
Each scene has a sound recipe (spectral centre and tilt, amplitude-modulation rate 0.5-32 Hz and depth, click
rate) and an image pattern (an oriented colour grating); every example draws both from its scene with nuisances
(level, phases, jitter, pixel noise), so the sound's texture clusters carry the scene and the image has to be
read to predict them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SCENE_SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class SceneRecipe:
    centre_hz: float
    tilt_db_per_octave: float
    am_rate_hz: float
    am_depth: float
    clicks_per_second: float
    orientation: float
    """Grating orientation (radians)."""
    cycles: float
    """Grating cycles across the image."""
    colour: tuple[float, float, float]


@dataclass(frozen=True)
class SyntheticScenes:
    waveforms: torch.Tensor
    """float32 [n, S] full-scale mono sound at `sample_rate`."""
    images: torch.Tensor
    """float32 [n, 3, H, W], roughly zero-mean."""
    labels: torch.Tensor
    """int64 [n] scene of each example."""
    recipes: tuple[SceneRecipe, ...]
    sample_rate: int


def scene_recipes(seed: int, num_scenes: int) -> tuple[SceneRecipe, ...]:
    """Scenes spread over each parameter's range (a shuffled grid per parameter), drawn from `seed`."""
    rng = np.random.default_rng([seed, 0])
    grid = (np.arange(num_scenes) + 0.5) / num_scenes

    def spread(low, high, log=False):
        values = rng.permutation(grid)
        return np.exp(np.log(low) + values * np.log(high / low)) if log else low + values * (high - low)

    centres, tilts = spread(300.0, 5000.0, log=True), spread(-6.0, 3.0)
    rates, depths, clicks = spread(0.5, 32.0, log=True), spread(0.2, 0.9), spread(0.0, 20.0)
    orientations, cycles = spread(0.0, np.pi), spread(2.0, 8.0)
    colours = rng.uniform(0.2, 1.0, (num_scenes, 3))
    return tuple(
        SceneRecipe(float(centres[s]), float(tilts[s]), float(rates[s]), float(depths[s]), float(clicks[s]),
                    float(orientations[s]), float(cycles[s]), tuple(float(c) for c in colours[s]))
        for s in range(num_scenes)
    )


def _sound(recipe: SceneRecipe, rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(num_samples, 1 / sample_rate)
    centre = recipe.centre_hz * np.exp(rng.normal(0, 0.1))
    octaves = np.log2(np.maximum(freqs, 1.0) / centre)
    gain_db = recipe.tilt_db_per_octave * octaves - 6.0 * octaves**2
    spectrum = np.fft.rfft(rng.normal(size=num_samples)) * 10 ** (gain_db / 20)
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, num_samples)
    t = np.arange(num_samples) / sample_rate
    rate = recipe.am_rate_hz * np.exp(rng.normal(0, 0.05))
    noise *= 1 + recipe.am_depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    clicks = rng.poisson(recipe.clicks_per_second * num_samples / sample_rate)
    noise[rng.integers(0, num_samples, clicks)] += rng.choice([-1.0, 1.0], clicks) * 4 * noise.std()
    level = 10 ** (rng.uniform(-30, -15) / 20)
    return np.clip(noise * (level / noise.std()), -1, 1)


def _grating(size: int, angle: float, cycles: float, phase: float) -> np.ndarray:
    coords = np.arange(size) / size
    y, x = np.meshgrid(coords, coords, indexing="ij")
    return np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)) + phase)


def _image(recipe: SceneRecipe, rng: np.random.Generator, size: int) -> np.ndarray:
    """The scene's grating in a jittered scene colour, over a random distractor grating and pixel noise."""
    scene = _grating(size, recipe.orientation + rng.normal(0, 0.05), recipe.cycles, rng.uniform(0, 2 * np.pi))
    distractor = _grating(size, rng.uniform(0, np.pi), rng.uniform(2, 8), rng.uniform(0, 2 * np.pi))
    colour = np.clip(np.array(recipe.colour) + rng.normal(0, 0.3, 3), 0, 1)
    image = (rng.uniform(0.5, 1.0) * colour[:, None, None] * scene
             + rng.uniform(0.5, 1.0) * rng.uniform(0, 1, 3)[:, None, None] * distractor)
    return image + rng.normal(0, 0.8, (3, size, size))


def synthetic_scenes(seed: int, n: int, *, num_scenes: int = 6, seconds: float = 2.0,
                     sample_rate: int = SCENE_SAMPLE_RATE, image_size: int = 32) -> SyntheticScenes:
    """`n` paired (sound, image) examples of `num_scenes` scenes, balanced and shuffled, deterministic in `seed`."""
    if n < 1 or num_scenes < 2 or seconds <= 0 or sample_rate <= 0 or image_size < 8:
        raise ValueError(
            f"need n >= 1, num_scenes >= 2, seconds > 0, sample_rate > 0, image_size >= 8; got n={n}, "
            f"num_scenes={num_scenes}, seconds={seconds}, sample_rate={sample_rate}, image_size={image_size}"
        )
    recipes = scene_recipes(seed, num_scenes)
    rng = np.random.default_rng([seed, 1])
    labels = rng.permutation(np.arange(n) % num_scenes)
    num_samples = round(seconds * sample_rate)
    waveforms = np.stack([_sound(recipes[s], rng, num_samples, sample_rate) for s in labels])
    images = np.stack([_image(recipes[s], rng, image_size) for s in labels])
    return SyntheticScenes(
        torch.from_numpy(waveforms.astype(np.float32)), torch.from_numpy(images.astype(np.float32)),
        torch.from_numpy(labels.astype(np.int64)), recipes, sample_rate,
    )
