"""Synthetic AVE: the built-in default dataset, AVE-shaped and with AVEL semantics (docs/data.md#synthetic).

Labels follow the real AVE statistics exactly (figures, not files): the per-class video counts, the event
length histogram and the 3339/402/402 split, each scaled to `num_videos` by the largest-remainder rule (ties
to the lower index); one event per video, its onset uniform among the valid positions; plus background-only
videos, 178 per 4143 event videos unless asked otherwise (`background_videos_for`). The 4142 annotated events of
the length histogram are scaled to `num_videos` like the rest.

Generative model. Every segment has an audio source and a visual source, each a class or nothing; it is an
**event segment exactly when the same class is both heard and seen**, background otherwise.

* Event video of class c, event on [onset, onset+L): both sources are c on the event. Each background run
  (before and after the event) is, with `SyntheticConfig.background_kinds` probabilities, *audible-only*
  (c heard, nothing seen), *visible-only* (c seen, silent) or *neither*. A modality left without a source on a
  segment carries, with probability `distractor_prob`, the video's distractor class d != c instead (an
  off-screen sound, an unrelated object), never in both modalities of one segment, so it stays background.
* Background-only video: a sound class and a different object class, each present on a segment with
  probability `background_video_presence`.
* Classes live in a latent space (`latent_dim`) per modality: class mean = family component (shared by the
  confusable classes of a `FAMILIES` entry, weight `family_similarity`) + own component. A video's source of
  class k is its class mean + a per-video instance deviation (`instance_variation`) + a per-segment deviation
  (`segment_variation`), scaled by a per-segment salience ~ U(`salience_min`, 1); a fixed random embedding maps
  it to 128 audio dimensions / 512 visual channels. Confusions therefore come from the low-dimensional latent
  noise, not from the isotropic feature noise.
* Audio [T, 128] = `audio_scale` * gain * relu(`audio_bias` + per-video ambient sound + `audio_strength` *
  source + `audio_noise` * N(0, 1)); a fixed log-normal per-dimension gain gives VGGish-like heavy tails
  (about 65 % zeros, mean about 0.12, max about 4.5 on the full set).
* Visual [T, 7, 7, 512] = `visual_scale` * relu(`visual_bias` + per-video scene (smooth spatial map x channel
  vector) + `visual_strength` * Gaussian blob (width `object_width`) at the object position x source +
  per-segment channel noise + per-position noise): about 65 % zeros, mean about 0.9, like VGG19 pool5 maps.
  The object position random-walks (`object_drift` cells per segment, reflected at the border); all sources
  of a video share that track.

Determinism: labels come from one generator seeded by ``derive_seed(seed, stream)``; the features of video i
come from its own torch generator seeded from (seed, i) and are computed in chunks of `CHUNK_VIDEOS` videos
(about 0.5 GB of temporaries), so they depend only on the seed and the sizes, never on the chunking, the
pooling or the storage dtype asked for. Pooled visual is the float32 7x7 mean of each chunk, equal to pooling
the full tensor; float16 storage casts each chunk.

Difficulty of the defaults (seed 0, full size, pooled visual standardised per channel, 10 epochs, test split):
a per-segment MLP on [audio, visual] reaches about 71 % segment accuracy (background F1 0.56), audio alone 58 %,
visual alone 47 %; a one-modality model finds few of the background segments that its modality cannot tell
from the event (audible-only for audio: recall 0.11, visible-only for visual: 0.21); a small bidirectional GRU
over time on both modalities reaches about 83 % (background F1 0.68).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avel_fast._rng import derive_seed
from avel_fast.constants import (
    AUDIO_DIM,
    BACKGROUND,
    CLASS_NAMES,
    NUM_CLASSES,
    NUM_EVENT_CLASSES,
    NUM_SEGMENTS,
    VISUAL_SHAPE,
)
from avel_fast.data.dataset import SPLIT_NAMES, AVEData, pool_visual

CLASS_VIDEO_COUNTS = (
    188, 176, 171, 184, 188, 175, 178, 187, 172, 163, 182, 138, 102, 99,
    186, 176, 160, 183, 100, 83, 69, 160, 60, 64, 180, 109, 154, 156,
)  # fmt: skip
EVENT_LENGTH_COUNTS = {2: 214, 3: 220, 4: 217, 5: 196, 6: 200, 7: 139, 8: 111, 9: 95, 10: 2750}
SPLIT_SIZES = {"train": 3339, "val": 402, "test": 402}
NUM_VIDEOS = sum(CLASS_VIDEO_COUNTS)  # 4143
NUM_BACKGROUND_VIDEOS = 178
CHUNK_VIDEOS = 128

# Confusable classes (indices into CLASS_NAMES) that share a prototype component.
FAMILIES = {
    "bells and clocks": (0, 16),
    "human voices": (1, 5, 19),
    "animals": (2, 18, 22, 23, 25),
    "engines and vehicles": (3, 4, 6, 11, 13, 15, 20),
    "strings": (7, 9, 14, 17, 27),
    "wind and reed instruments": (8, 12, 26),
    "household and tools": (10, 21, 24),
}

_LABEL_STREAM, _BACKGROUND_LABEL_STREAM, _PROTOTYPE_STREAM, _FEATURE_STREAM, _BACKGROUND_FEATURE_STREAM = range(5)
NO_SOURCE = -1


@dataclass(frozen=True)
class SyntheticConfig:
    """Difficulty and realism knobs of the synthetic AVE generator (see the module docstring)."""

    # Labels: what the background segments of an event video hold, per run before/after the event.
    background_kinds: tuple[float, float, float] = (0.4, 0.4, 0.2)  # audible-only, visible-only, neither
    distractor_prob: float = 0.3  # a modality without the event class carries the distractor class
    background_video_presence: float = 0.6  # per segment, for the sound and the object of background-only videos
    # Class confusion, in the latent space of each modality (unit-variance components).
    latent_dim: int = 16
    family_similarity: float = 0.6  # share of a class mean's variance from its family component
    instance_variation: float = 0.8  # per-video deviation from the class mean
    segment_variation: float = 0.6  # per-segment deviation
    salience_min: float = 0.2  # a present source has salience ~ U(salience_min, 1)
    # Audio features.
    audio_strength: float = 1.5
    audio_noise: float = 1.0
    audio_ambient: float = 0.5  # per-video ambient sound, on every segment
    audio_bias: float = -0.65  # sets the fraction of zeros (65 %)
    audio_scale: float = 0.3  # sets the mean (0.12)
    audio_gain_spread: float = 0.2  # log-normal per-dimension gain: sets the tail (max 4.5)
    # Visual maps.
    visual_strength: float = 2.5
    visual_noise: float = 1.0  # per position and channel
    visual_segment_noise: float = 0.3  # per segment and channel, shared by the 7x7 positions
    visual_scene: float = 0.5  # per-video scene
    visual_bias: float = -0.5
    visual_scale: float = 3.0  # overall magnitude (pool5-like: mean about 0.9)
    object_width: float = 1.2  # Gaussian blob, in grid cells
    object_drift: float = 0.6  # random-walk step per segment, in grid cells

    def __post_init__(self) -> None:
        kinds = self.background_kinds
        if len(kinds) != 3 or min(kinds) < 0 or not math.isclose(sum(kinds), 1.0):
            raise ValueError(f"SyntheticConfig.background_kinds={kinds}: expected 3 probabilities summing to 1")
        for name in ("distractor_prob", "background_video_presence", "family_similarity", "salience_min"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SyntheticConfig.{name}={getattr(self, name)}: expected a value in [0, 1]")
        if self.latent_dim < 1:
            raise ValueError(f"SyntheticConfig.latent_dim={self.latent_dim}: expected >= 1")


@dataclass
class SyntheticLabels:
    """Labels, splits and the latent sources of a synthetic set (int64 [V, T], -1 = no source)."""

    labels: torch.Tensor
    video_labels: torch.Tensor
    splits: dict[str, torch.Tensor]
    audio_source: torch.Tensor
    visual_source: torch.Tensor
    background: SyntheticLabels | None = None

    def __len__(self) -> int:
        return self.labels.shape[0]


def largest_remainder(counts, total: int) -> np.ndarray:
    """Integers proportional to `counts` summing to `total` (Hamilton's rule, ties to the lower index)."""
    counts = np.asarray(counts, dtype=np.int64)
    scaled = counts * total
    base, remainder = np.divmod(scaled, counts.sum())
    order = np.argsort(-remainder, kind="stable")
    base[order[: total - base.sum()]] += 1
    return base


def background_videos_for(num_videos: int) -> int:
    """The default number of background-only videos next to `num_videos` event videos: AVE's 178 per 4143,
    rounded (178 at full size), and at least 1 so that the weakly supervised setting can read the set."""
    return max(1, (2 * NUM_BACKGROUND_VIDEOS * num_videos + NUM_VIDEOS) // (2 * NUM_VIDEOS))


def _event_latents(rng: np.random.Generator, num_videos: int, config: SyntheticConfig):
    classes = np.repeat(np.arange(NUM_EVENT_CLASSES), largest_remainder(CLASS_VIDEO_COUNTS, num_videos))
    lengths = np.repeat(list(EVENT_LENGTH_COUNTS), largest_remainder(list(EVENT_LENGTH_COUNTS.values()), num_videos))
    rng.shuffle(classes)
    rng.shuffle(lengths)
    onsets = rng.integers(0, NUM_SEGMENTS - lengths + 1)
    t = np.arange(NUM_SEGMENTS)
    event = (t >= onsets[:, None]) & (t < (onsets + lengths)[:, None])
    before = t < onsets[:, None]
    kind_before = rng.choice(3, size=num_videos, p=config.background_kinds)
    kind_after = rng.choice(3, size=num_videos, p=config.background_kinds)
    kind = np.where(before, kind_before[:, None], kind_after[:, None])  # 0 audible-only, 1 visible-only, 2 neither
    heard = event | (kind == 0)
    seen = event | (kind == 1)
    distractor = (classes + rng.integers(1, NUM_EVENT_CLASSES, size=num_videos)) % NUM_EVENT_CLASSES
    audio_distracted = ~heard & (rng.random((num_videos, NUM_SEGMENTS)) < config.distractor_prob)
    visual_distracted = ~seen & ~audio_distracted & (rng.random((num_videos, NUM_SEGMENTS)) < config.distractor_prob)
    audio_source = np.where(heard, classes[:, None], np.where(audio_distracted, distractor[:, None], NO_SOURCE))
    visual_source = np.where(seen, classes[:, None], np.where(visual_distracted, distractor[:, None], NO_SOURCE))
    split_sizes = largest_remainder(list(SPLIT_SIZES.values()), num_videos)
    order = rng.permutation(num_videos)
    bounds = np.cumsum(split_sizes)[:-1]
    splits = {name: torch.from_numpy(np.sort(part)) for name, part in zip(SPLIT_NAMES, np.split(order, bounds))}
    video_labels = np.zeros((num_videos, NUM_CLASSES), dtype=np.float32)
    video_labels[np.arange(num_videos), classes] = 1.0
    return audio_source, visual_source, video_labels, splits


def _background_latents(rng: np.random.Generator, num_videos: int, config: SyntheticConfig):
    sound = rng.integers(0, NUM_EVENT_CLASSES, size=num_videos)
    sight = (sound + rng.integers(1, NUM_EVENT_CLASSES, size=num_videos)) % NUM_EVENT_CLASSES
    shape = (num_videos, NUM_SEGMENTS)
    audio_source = np.where(rng.random(shape) < config.background_video_presence, sound[:, None], NO_SOURCE)
    visual_source = np.where(rng.random(shape) < config.background_video_presence, sight[:, None], NO_SOURCE)
    video_labels = np.zeros((num_videos, NUM_CLASSES), dtype=np.float32)
    video_labels[:, BACKGROUND] = 1.0
    return audio_source, visual_source, video_labels, {}


def _labels_from_sources(audio_source, visual_source, video_labels, splits) -> SyntheticLabels:
    event = (audio_source == visual_source) & (audio_source != NO_SOURCE)
    labels = np.where(event, audio_source, BACKGROUND)
    return SyntheticLabels(
        labels=torch.from_numpy(labels.astype(np.int64)),
        video_labels=torch.from_numpy(video_labels),
        splits=splits,
        audio_source=torch.from_numpy(audio_source.astype(np.int64)),
        visual_source=torch.from_numpy(visual_source.astype(np.int64)),
    )


def synthetic_labels(
    seed: int = 0,
    num_videos: int = NUM_VIDEOS,
    num_background_videos: int | None = None,
    *,
    config: SyntheticConfig | None = None,
) -> SyntheticLabels:
    """Labels, splits and latent sources of `synthetic_ave` (cheap: no features); `num_background_videos=None`
    takes `background_videos_for(num_videos)`."""
    if num_videos < len(SPLIT_SIZES):
        raise ValueError(f"num_videos={num_videos}: need at least {len(SPLIT_SIZES)} (one per split)")
    if num_background_videos is None:
        num_background_videos = background_videos_for(num_videos)
    if num_background_videos < 0:
        raise ValueError(f"num_background_videos={num_background_videos}: expected >= 0")
    config = config or SyntheticConfig()
    main = _event_latents(np.random.default_rng(derive_seed(seed, _LABEL_STREAM)), num_videos, config)
    result = _labels_from_sources(*main)
    if num_background_videos:
        rng = np.random.default_rng(derive_seed(seed, _BACKGROUND_LABEL_STREAM))
        result.background = _labels_from_sources(*_background_latents(rng, num_background_videos, config))
    return result


@dataclass(frozen=True)
class _Prototypes:
    audio_means: torch.Tensor  # [28, latent]
    visual_means: torch.Tensor  # [28, latent]
    audio_embedding: torch.Tensor  # [latent, 128]
    visual_embedding: torch.Tensor  # [latent, 512]
    audio_gain: torch.Tensor  # [128]


def _prototypes(seed: int, config: SyntheticConfig) -> _Prototypes:
    generator = torch.Generator().manual_seed(derive_seed(seed, _PROTOTYPE_STREAM))
    family_of = torch.empty(NUM_EVENT_CLASSES, dtype=torch.int64)
    for family, members in enumerate(FAMILIES.values()):
        family_of[list(members)] = family
    k, share = config.latent_dim, config.family_similarity

    def class_means() -> torch.Tensor:
        families = torch.randn(len(FAMILIES), k, generator=generator)
        own = torch.randn(NUM_EVENT_CLASSES, k, generator=generator)
        return math.sqrt(share) * families[family_of] + math.sqrt(1.0 - share) * own

    audio_means, visual_means = class_means(), class_means()
    channels = VISUAL_SHAPE[-1]
    return _Prototypes(
        audio_means=audio_means,
        visual_means=visual_means,
        audio_embedding=torch.randn(k, AUDIO_DIM, generator=generator) / math.sqrt(k),
        visual_embedding=torch.randn(k, channels, generator=generator) / math.sqrt(k),
        audio_gain=torch.exp(config.audio_gain_spread * torch.randn(AUDIO_DIM, generator=generator)),
    )


class _PerVideo:
    """One torch generator per video: draws for a chunk are the stacked draws of its videos."""

    def __init__(self, stream: int, start: int, stop: int) -> None:
        self.generators = [torch.Generator().manual_seed(derive_seed(stream, video)) for video in range(start, stop)]

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in self.generators])

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.stack([torch.rand(shape, generator=g) for g in self.generators])

    def normal_(self, out: torch.Tensor) -> torch.Tensor:
        """Fill `out` [B, ...] in place, row i from video i's generator (no stacked copy)."""
        for row, g in zip(out, self.generators):
            row.normal_(generator=g)
        return out


def _source_signal(means, source, salience, instance, draws: _PerVideo, config) -> torch.Tensor:
    """Latent [B, T, latent] of each segment's source: salience x (class mean + instance + segment deviation)."""
    present = (source != NO_SOURCE).unsqueeze(-1)
    latent = means[source.clamp(min=0)] + config.instance_variation * instance.unsqueeze(1)
    latent += config.segment_variation * draws.randn(*latent.shape[1:])
    return latent * (salience.unsqueeze(-1) * present)


def _object_track(draws: _PerVideo, config) -> torch.Tensor:
    """Object positions [B, T, 2] in grid cells: a random walk reflected into [0, 6]."""
    side = VISUAL_SHAPE[0] - 1
    start = 0.5 + (side - 1.0) * draws.rand(1, 2)
    steps = config.object_drift * draws.randn(NUM_SEGMENTS, 2)
    steps[:, 0] = 0.0
    walk = (start + steps.cumsum(dim=1)).remainder(2 * side)
    return torch.where(walk > side, 2 * side - walk, walk)


def _chunk_features(audio_source, visual_source, prototypes: _Prototypes, draws: _PerVideo, config):
    """Audio [B, T, 128] and visual [B, T, 7, 7, 512] float32 of one chunk, drawn in a fixed order."""
    b, t = audio_source.shape
    k, (height, width, channels) = config.latent_dim, VISUAL_SHAPE
    ambient = draws.randn(1, AUDIO_DIM)
    audio_instance = draws.randn(k)
    visual_instance = draws.randn(k)
    salience = config.salience_min + (1.0 - config.salience_min) * draws.rand(t, 2)
    audio_latent = _source_signal(
        prototypes.audio_means, audio_source, salience[..., 0], audio_instance, draws, config
    )
    visual_latent = _source_signal(
        prototypes.visual_means, visual_source, salience[..., 1], visual_instance, draws, config
    )
    audio = draws.randn(t, AUDIO_DIM).mul_(config.audio_noise)
    audio += config.audio_bias + config.audio_ambient * ambient
    audio += config.audio_strength * (audio_latent @ prototypes.audio_embedding)
    audio = audio.relu_().mul_(config.audio_scale * prototypes.audio_gain)

    scene_map = F.avg_pool2d(draws.randn(1, height, width), 3, 1, 1, count_include_pad=False)
    scene = (1.0 + scene_map.view(b, 1, height, width, 1)) * draws.randn(1, 1, 1, channels)
    track = _object_track(draws, config)
    rows = torch.arange(height, dtype=torch.float32).view(1, 1, height, 1)
    cols = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width)
    squared = (rows - track[..., 0, None, None]) ** 2 + (cols - track[..., 1, None, None]) ** 2
    blob = torch.exp(squared / (-2.0 * config.object_width**2))
    segment_noise = draws.randn(t, 1, 1, channels)
    visual = draws.normal_(torch.empty(b, t, height, width, channels)).mul_(config.visual_noise)
    visual += config.visual_scene * scene + config.visual_segment_noise * segment_noise + config.visual_bias
    object_channels = config.visual_strength * (visual_latent @ prototypes.visual_embedding)
    visual.addcmul_(blob.unsqueeze(-1), object_channels.view(b, t, 1, 1, channels))
    return audio, visual.relu_().mul_(config.visual_scale)


def synthetic_feature_chunks(
    seed: int,
    labels: SyntheticLabels,
    *,
    background: bool = False,
    config: SyntheticConfig | None = None,
    chunk_videos: int = CHUNK_VIDEOS,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(first video, audio, visual float32) per chunk of `chunk_videos` videos of `labels` (or its background).

    Video i's features do not depend on `chunk_videos`: each video draws from its own generator.
    """
    config = config or SyntheticConfig()
    source = labels.background if background else labels
    if source is None:
        return
    prototypes = _prototypes(seed, config)
    stream = derive_seed(seed, _BACKGROUND_FEATURE_STREAM if background else _FEATURE_STREAM)
    for start in range(0, len(source), chunk_videos):
        stop = min(start + chunk_videos, len(source))
        audio, visual = _chunk_features(
            source.audio_source[start:stop], source.visual_source[start:stop], prototypes,
            _PerVideo(stream, start, stop), config,
        )
        yield start, audio, visual


def _assemble(seed, labels, background, pooled_visual, visual_dtype, config) -> AVEData:
    source = labels.background if background else labels
    num_videos = len(source)
    audio = torch.empty(num_videos, NUM_SEGMENTS, AUDIO_DIM)
    visual_shape = (VISUAL_SHAPE[-1],) if pooled_visual else VISUAL_SHAPE
    visual = torch.empty(num_videos, NUM_SEGMENTS, *visual_shape, dtype=visual_dtype)
    chunks = synthetic_feature_chunks(seed, labels, background=background, config=config)
    for start, audio_chunk, visual_chunk in chunks:
        stop = start + audio_chunk.shape[0]
        audio[start:stop] = audio_chunk
        visual[start:stop] = pool_visual(visual_chunk) if pooled_visual else visual_chunk
    return AVEData(
        audio=audio,
        visual=visual,
        labels=source.labels,
        video_labels=source.video_labels,
        splits=source.splits,
        class_names=CLASS_NAMES,
    )


def synthetic_ave(
    seed: int = 0,
    num_videos: int = NUM_VIDEOS,
    num_background_videos: int | None = None,
    *,
    pooled_visual: bool = False,
    visual_dtype: torch.dtype = torch.float32,
    config: SyntheticConfig | None = None,
) -> AVEData:
    """The synthetic AVE set (module docstring) as `AVEData`; background-only videos in `.background` (by default
    `background_videos_for(num_videos)` of them).

    Full size with 7x7 maps is 4.2 GB in float32: ask for `pooled_visual=True` ([V, T, 512]) or float16 storage.
    """
    if visual_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"visual_dtype={visual_dtype}: expected torch.float32, torch.float16 or torch.bfloat16")
    config = config or SyntheticConfig()
    labels = synthetic_labels(seed, num_videos, num_background_videos, config=config)
    data = _assemble(seed, labels, False, pooled_visual, visual_dtype, config)
    if labels.background is not None:
        data.background = _assemble(seed, labels, True, pooled_visual, visual_dtype, config)
    return data
