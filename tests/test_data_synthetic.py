"""Synthetic AVE (docs/data.md#synthetic): exact label statistics, AVEL semantics, determinism, chunking, audio
statistics."""
import numpy as np
import pytest
import torch

from avel_fast.constants import BACKGROUND, CLASS_NAMES, NUM_EVENT_CLASSES
from avel_fast.data import SyntheticConfig, synthetic_ave, synthetic_labels
from avel_fast.data.synthetic import (
    CLASS_VIDEO_COUNTS,
    CHUNK_VIDEOS,
    FAMILIES,
    NO_SOURCE,
    largest_remainder,
    synthetic_feature_chunks,
)

# The AVE event-length histogram has 4142 events; scaled to 4143 videos the largest remainder goes to length 10.
FULL_SIZE_LENGTHS = {2: 214, 3: 220, 4: 217, 5: 196, 6: 200, 7: 139, 8: 111, 9: 95, 10: 2751}


@pytest.fixture(scope="module")
def full_labels():
    return synthetic_labels(seed=0)


def test_largest_remainder_by_hand():
    assert largest_remainder([5, 3], 4).tolist() == [3, 1]  # quotas 2.5, 1.5: the tie goes to the lower index
    assert largest_remainder([1, 1, 1], 2).tolist() == [1, 1, 0]
    assert largest_remainder([3339, 402, 402], 40).tolist() == [32, 4, 4]  # quotas 32.24, 3.88, 3.88


def test_full_size_class_counts_lengths_and_splits(full_labels):
    labels, video_labels = full_labels.labels, full_labels.video_labels
    assert labels.shape == (4143, 10)
    assert video_labels[:, BACKGROUND].sum() == 0 and (video_labels.sum(dim=1) == 1).all()
    assert video_labels.sum(dim=0)[:NUM_EVENT_CLASSES].long().tolist() == list(CLASS_VIDEO_COUNTS)
    lengths = (labels != BACKGROUND).sum(dim=1)
    assert dict(zip(*np.unique(lengths.numpy(), return_counts=True))) == FULL_SIZE_LENGTHS
    sizes = {name: len(index) for name, index in full_labels.splits.items()}
    assert sizes == {"train": 3339, "val": 402, "test": 402}
    everything = torch.cat(list(full_labels.splits.values())).sort().values
    assert torch.equal(everything, torch.arange(4143))


def test_one_contiguous_event_of_the_video_class(full_labels):
    labels = full_labels.labels
    event = labels != BACKGROUND
    video_class = full_labels.video_labels.argmax(dim=1)
    assert (labels[event] == video_class.unsqueeze(1).expand_as(labels)[event]).all()
    first, last = event.int().argmax(dim=1), 9 - event.flip(1).int().argmax(dim=1)
    assert torch.equal(last - first + 1, event.sum(dim=1))


def test_onsets_uniform_among_valid_positions(full_labels):
    event = full_labels.labels != BACKGROUND
    lengths = event.sum(dim=1)
    onsets = event.int().argmax(dim=1)
    short = lengths < 10
    relative = onsets[short].double() / (10 - lengths[short]).double()  # uniform on {0, 1/n, ..., 1}: mean 0.5
    assert abs(relative.mean().item() - 0.5) < 0.03
    for length in (2, 5, 9):
        positions = torch.bincount(onsets[lengths == length], minlength=11 - length)
        assert len(positions) == 11 - length and positions.min() > 0


def test_event_iff_same_class_heard_and_seen(full_labels):
    for part in (full_labels, full_labels.background):
        audio, visual = part.audio_source, part.visual_source
        event = (audio == visual) & (audio != NO_SOURCE)
        assert torch.equal(part.labels != BACKGROUND, event)
    background_segments = full_labels.labels == BACKGROUND
    video_class = full_labels.video_labels.argmax(dim=1, keepdim=True).expand(-1, 10)
    heard = full_labels.audio_source == video_class
    seen = full_labels.visual_source == video_class
    audible_only = (background_segments & heard & ~seen).float().mean()
    visible_only = (background_segments & seen & ~heard).float().mean()
    assert audible_only > 0.04 and visible_only > 0.04  # each kind is ~40 % of the ~17 % background segments


def test_background_videos(full_labels):
    background = full_labels.background
    assert len(background) == 178
    assert (background.labels == BACKGROUND).all()
    assert (background.video_labels[:, BACKGROUND] == 1).all() and background.video_labels.sum() == 178
    assert background.splits == {}


def test_scaled_statistics():
    labels = synthetic_labels(seed=1, num_videos=400, num_background_videos=0)
    counts = labels.video_labels.sum(dim=0)[:NUM_EVENT_CLASSES].long()
    assert counts.tolist() == largest_remainder(CLASS_VIDEO_COUNTS, 400).tolist() and counts.sum() == 400
    assert [len(labels.splits[name]) for name in ("train", "val", "test")] == [322, 39, 39]
    assert labels.background is None


def test_families_partition_the_classes():
    members = sorted(index for family in FAMILIES.values() for index in family)
    assert members == list(range(len(CLASS_NAMES)))


def test_deterministic_for_a_seed():
    first = synthetic_ave(seed=5, num_videos=12, num_background_videos=2)
    torch.set_num_threads(1)
    try:
        again = synthetic_ave(seed=5, num_videos=12, num_background_videos=2)
    finally:
        torch.set_num_threads(2)
    other = synthetic_ave(seed=6, num_videos=12, num_background_videos=2)
    for name in ("audio", "visual", "labels", "video_labels"):
        assert torch.equal(getattr(first, name), getattr(again, name))
        assert torch.equal(getattr(first.background, name), getattr(again.background, name))
    assert not torch.equal(first.audio, other.audio)
    assert not torch.equal(first.visual, other.visual)


def test_independent_of_chunking():
    labels = synthetic_labels(seed=2, num_videos=20, num_background_videos=0)
    (whole,) = synthetic_feature_chunks(2, labels, chunk_videos=CHUNK_VIDEOS)
    pieces = list(synthetic_feature_chunks(2, labels, chunk_videos=7))
    assert [start for start, _, _ in pieces] == [0, 7, 14]
    assert torch.equal(whole[1], torch.cat([audio for _, audio, _ in pieces]))
    assert torch.equal(whole[2], torch.cat([visual for _, _, visual in pieces]))


def test_pooled_and_float16_equal_the_full_tensor():
    full = synthetic_ave(seed=3, num_videos=16, num_background_videos=2)
    pooled = synthetic_ave(seed=3, num_videos=16, num_background_videos=2, pooled_visual=True)
    half = synthetic_ave(seed=3, num_videos=16, num_background_videos=2, visual_dtype=torch.float16)
    assert pooled.visual_pooled and pooled.visual.shape == (16, 10, 512)
    assert torch.equal(pooled.visual, full.visual.mean(dim=(2, 3)))
    assert torch.equal(pooled.background.visual, full.background.visual.mean(dim=(2, 3)))
    assert half.visual.dtype == torch.float16 and torch.equal(half.visual, full.visual.half())
    assert torch.equal(pooled.audio, full.audio)


def test_feature_statistics():
    data = synthetic_ave(seed=0, num_videos=300, num_background_videos=0, pooled_visual=True)
    audio = data.audio
    assert (audio >= 0).all() and (data.visual >= 0).all()
    assert 0.6 < (audio == 0).float().mean() < 0.7  # real VGGish: 65 % zeros
    assert 0.1 < audio.mean() < 0.14  # real: 0.12
    assert 2.5 < audio.max() < 6.0  # real, 4143 videos: 4.5


def test_object_drifts_over_time():
    data = synthetic_ave(seed=4, num_videos=8, num_background_videos=0, config=SyntheticConfig(visual_noise=0.0))
    event = data.labels != BACKGROUND
    video, = torch.nonzero(event.all(dim=1))[:1, 0].tolist()
    energy = data.visual[video].sum(dim=-1)  # [T, 7, 7]: the object dominates without the per-position noise
    peaks = {divmod(int(energy[t].argmax()), 7) for t in range(10)}
    assert len(peaks) > 1


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="background_kinds"):
        SyntheticConfig(background_kinds=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="distractor_prob"):
        SyntheticConfig(distractor_prob=1.5)
