"""Label refinement that reports its own label quality (docs/weak.md#label-quality): the comparison of the refined
window labels with the trivial and ground-truth ones, the event videos left without an event window,
``--keep-video-label``, ``--refine oracle`` and one definition of each weak loss g."""
import json

import pytest
import torch

from avel_fast.constants import BACKGROUND, NUM_CLASSES
from avel_fast.data.dataset import video_labels_from_segments
from avel_fast.reference.ave import soft_margin_on_probs
from avel_fast.reference.label_refinement import (
    WeakBase,
    all_background_event_videos,
    dummy_window_labels,
    keep_video_label,
    oracle_window_labels,
    window_label_comparison,
)
from avel_fast.reference.psp import bce_on_probs
from avel_fast.train import TrainingError, family_of, resolve_config, train
from avel_fast.train.progress import TrainProgress
from avel_fast.train.refine import STEP1_DIR, read_labels

# video 0: event 3 on segments 0-3; video 1: event 5 on segments 6-9; video 2: background only
SEGMENTS = torch.full((3, 10), BACKGROUND)
SEGMENTS[0, :4], SEGMENTS[1, 6:] = 3, 5
VIDEO_LABELS = video_labels_from_segments(SEGMENTS)
BG = torch.eye(NUM_CLASSES)[BACKGROUND]


def all_background_windows(videos: int) -> torch.Tensor:
    return BG.expand(videos, 4, NUM_CLASSES).clone()


def test_all_background_event_videos_counts_event_videos_only():
    labels = oracle_window_labels(SEGMENTS)
    assert all_background_event_videos(labels, VIDEO_LABELS).tolist() == [False, False, False]
    labels[1] = BG  # video 1 lost its event windows; video 2 is background only and stays uncounted
    assert all_background_event_videos(labels, VIDEO_LABELS).tolist() == [False, True, False]
    assert all_background_event_videos(all_background_windows(3), VIDEO_LABELS).tolist() == [True, True, False]


def test_keep_video_label_restores_only_event_videos_without_event_windows():
    labels = oracle_window_labels(SEGMENTS)
    labels[1] = BG
    kept = keep_video_label(labels, VIDEO_LABELS)
    torch.testing.assert_close(kept[1], dummy_window_labels(VIDEO_LABELS)[1], rtol=0, atol=0)
    torch.testing.assert_close(kept[[0, 2]], labels[[0, 2]], rtol=0, atol=0)
    assert kept.dtype == labels.dtype


def test_window_label_comparison_puts_refined_next_to_trivial_and_ground_truth():
    refined = oracle_window_labels(SEGMENTS)
    refined[1] = BG  # 2 of video 1's event windows missed (windows 6-9 and 4-7 hold event 5)
    compared = window_label_comparison(refined, VIDEO_LABELS, SEGMENTS)
    assert set(compared) == {"refined", "trivial", "ground_truth"}
    assert compared["ground_truth"]["window_accuracy"] == compared["ground_truth"]["event_recall"] == 1.0
    # trivial: every window of videos 0 and 1 an event window: 4 of 12 windows wrong (2 per event video)
    assert compared["trivial"]["window_accuracy"] == pytest.approx(8 / 12)
    assert compared["trivial"]["event_recall"] == 1.0
    assert compared["refined"]["window_accuracy"] == pytest.approx(10 / 12)
    assert compared["refined"]["event_recall"] == pytest.approx(2 / 4)


def test_the_weak_base_uses_the_families_weak_losses():
    """One definition of each weak loss g: `WeakBase` (L_A, L_LR) and the families (L_MIL) call the same function."""
    model = torch.nn.Linear(1, 1)
    assert WeakBase.ave(model, splice_features=False).loss is soft_margin_on_probs
    assert WeakBase.psp(model, splice_features=False).loss is bce_on_probs
    probabilities, targets = torch.rand(4, NUM_CLASSES).softmax(dim=-1), VIDEO_LABELS[[0, 1, 2, 0]]
    for name, loss in (("ave", soft_margin_on_probs), ("psp", bce_on_probs)):
        assert torch.equal(family_of(name).weak_loss(probabilities, targets), loss(probabilities, targets))
