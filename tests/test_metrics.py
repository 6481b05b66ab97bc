"""segment_metrics (docs/metrics.md) against hand-computed cases, an independent per-class oracle and the real AVE
files."""
import math

import numpy as np
import pytest
import torch

from avel_fast.constants import BACKGROUND, NUM_CLASSES
from avel_fast.metrics import segment_metrics

BG = BACKGROUND
FLOAT_KEYS = (
    "accuracy", "weighted_f1", "non_ave_precision", "non_ave_recall", "non_ave_f1",
    "ave_precision", "ave_recall", "ave_f1",
)


def assert_floats(metrics, expected):
    for key in FLOAT_KEYS:
        got, want = metrics[key], expected[key]
        assert isinstance(got, float), key
        if math.isnan(want):
            assert math.isnan(got), f"{key}: expected nan, got {got}"
        else:
            assert got == pytest.approx(want, abs=1e-12), key


def test_hand_computed_mixed_case():
    # (target, pred): (0,0) (0,1) (1,1) (BG,BG) (BG,0) (BG,BG) (2,BG) (1,1)
    target = np.array([0, 0, 1, BG, BG, BG, 2, 1])
    pred = np.array([0, 1, 1, BG, 0, BG, BG, 1])
    m = segment_metrics(pred, target)
    # per-class F1 = 2TP/(support+predicted): class 0: 2/4, class 1: 4/5, class 2: 0, BG: 4/6
    weighted_f1 = (2 * 0.5 + 2 * 0.8 + 1 * 0.0 + 3 * (2 / 3)) / 8
    assert_floats(m, {
        "accuracy": 5 / 8, "weighted_f1": weighted_f1,
        "non_ave_precision": 2 / 3, "non_ave_recall": 2 / 3, "non_ave_f1": 2 / 3,
        "ave_precision": 3 / 5, "ave_recall": 3 / 5, "ave_f1": 3 / 5,
    })
    assert m["num_segments"] == 8
    expected_cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for t, p in zip(target, pred):
        expected_cm[t, p] += 1
    assert m["confusion_matrix"].dtype == np.int64
    np.testing.assert_array_equal(m["confusion_matrix"], expected_cm)
    expected_per_class = np.full(NUM_CLASSES, np.nan)
    expected_per_class[[0, 1, 2, BG]] = [0.5, 1.0, 0.0, 2 / 3]
    assert m["per_class_accuracy"].dtype == np.float64
    np.testing.assert_allclose(m["per_class_accuracy"], expected_per_class, equal_nan=True)


def test_event_precision_needs_exact_class():
    # Both segments are predicted as events, one of the wrong class: AVE P = R = 1/2, not 1.
    m = segment_metrics(np.array([3, 4]), np.array([3, 5]))
    assert_floats(m, {
        "accuracy": 0.5, "weighted_f1": 0.5 * (2 / 2) + 0.5 * 0.0,
        "non_ave_precision": math.nan, "non_ave_recall": math.nan, "non_ave_f1": math.nan,
        "ave_precision": 0.5, "ave_recall": 0.5, "ave_f1": 0.5,
    })


def test_no_background_predicted_is_undefined_precision():
    # GT-repeat in miniature: events everywhere, two background targets never recovered.
    m = segment_metrics(np.array([7, 7, 7, 7]), np.array([BG, 7, 7, BG]))
    assert_floats(m, {
        "accuracy": 0.5, "weighted_f1": (2 * 0.0 + 2 * (4 / 6)) / 4,
        "non_ave_precision": math.nan, "non_ave_recall": 0.0, "non_ave_f1": math.nan,
        "ave_precision": 0.5, "ave_recall": 1.0, "ave_f1": 2 / 3,
    })


def test_all_background_target_and_prediction():
    m = segment_metrics(np.full(5, BG), np.full(5, BG))
    assert_floats(m, {
        "accuracy": 1.0, "weighted_f1": 1.0,
        "non_ave_precision": 1.0, "non_ave_recall": 1.0, "non_ave_f1": 1.0,
        "ave_precision": math.nan, "ave_recall": math.nan, "ave_f1": math.nan,
    })
    assert np.isnan(np.delete(m["per_class_accuracy"], BG)).all()


def test_events_predicted_on_background_video():
    m = segment_metrics(np.array([1, 2, BG]), np.full(3, BG))
    assert_floats(m, {
        "accuracy": 1 / 3, "weighted_f1": 2 / 4,
        "non_ave_precision": 1.0, "non_ave_recall": 1 / 3, "non_ave_f1": 0.5,
        "ave_precision": 0.0, "ave_recall": math.nan, "ave_f1": math.nan,
    })


def test_both_zero_precision_and_recall_give_zero_f1():
    m = segment_metrics(np.array([BG, 0]), np.array([0, BG]))
    assert_floats(m, {
        "accuracy": 0.0, "weighted_f1": 0.0,
        "non_ave_precision": 0.0, "non_ave_recall": 0.0, "non_ave_f1": 0.0,
        "ave_precision": 0.0, "ave_recall": 0.0, "ave_f1": 0.0,
    })


def test_no_segments_is_all_nan():
    m = segment_metrics(np.zeros((0, 10), dtype=np.int64), np.zeros((0, 10), dtype=np.int64))
    assert_floats(m, dict.fromkeys(FLOAT_KEYS, math.nan))
    assert m["num_segments"] == 0
    assert m["confusion_matrix"].sum() == 0
    assert np.isnan(m["per_class_accuracy"]).all()


def test_weighted_f1_matches_per_class_oracle_and_torch_input():
    rng = np.random.default_rng(0)
    target = rng.integers(0, NUM_CLASSES, size=(40, 10))
    pred = np.where(rng.random((40, 10)) < 0.6, target, rng.integers(0, NUM_CLASSES, size=(40, 10)))
    pred[pred == 5] = 6  # a class with support but no prediction counts 0 in the weighted mean
    m = segment_metrics(torch.from_numpy(pred).int(), torch.from_numpy(target))

    weighted, correct = 0.0, 0
    for c in range(NUM_CLASSES):
        tp = int(((pred == c) & (target == c)).sum())
        n_pred, n_true = int((pred == c).sum()), int((target == c).sum())
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        weighted += f1 * n_true
        correct += tp
    assert (target == 5).any()
    assert m["weighted_f1"] == pytest.approx(weighted / target.size, abs=1e-12)
    assert m["accuracy"] == pytest.approx(correct / target.size, abs=1e-12)
    flat = segment_metrics(pred.ravel(), target.ravel())
    assert_floats(m, flat)
    np.testing.assert_array_equal(m["confusion_matrix"], flat["confusion_matrix"])


def test_custom_class_count():
    m = segment_metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), num_classes=3, background=2)
    assert m["confusion_matrix"].shape == (3, 3)
    assert m["non_ave_precision"] == 0.5 and m["non_ave_recall"] == 0.5
    assert m["ave_precision"] == 0.5 and m["ave_recall"] == 0.5


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match=r"pred has shape \(2, 10\) but target has shape \(20,\)"):
        segment_metrics(np.zeros((2, 10), dtype=np.int64), np.zeros(20, dtype=np.int64))


@pytest.mark.parametrize("bad", [-1, NUM_CLASSES])
@pytest.mark.parametrize("which", ["pred", "target"])
def test_out_of_range_class_raises(which, bad):
    values = {"pred": np.array([0, 1]), "target": np.array([0, 1])}
    values[which][1] = bad
    with pytest.raises(ValueError, match=rf"{which} holds class indices .* outside 0\.\.28"):
        segment_metrics(values["pred"], values["target"])


def test_non_integer_input_raises():
    with pytest.raises(ValueError, match="pred must hold integer class indices, got dtype float32"):
        segment_metrics(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_background_outside_classes_raises():
    with pytest.raises(ValueError, match="background=3 is not a class index in 0..2"):
        segment_metrics(np.array([0]), np.array([0]), num_classes=3, background=3)


@pytest.mark.filterwarnings("ignore::avel_fast.data.AVEFormatWarning")  # one zero-length event, not in test
def test_gt_repeat_on_real_test_split(real_ave_dir):
    """Seed 003, Tab. 1: repeating each test video's GT event on all 10 segments scores 82.2 %, non-AVE R = 0."""
    from avel_fast.data import read_annotations, read_split

    labels, _ = read_annotations(real_ave_dir / "Annotations.txt")
    target = labels[read_split(real_ave_dir / "test_order.h5", num_videos=len(labels))]
    assert target.shape == (402, 10)
    video_class = target.min(axis=1)  # the one event class of the video (background = 28 is the largest)
    assert (video_class != BG).all()
    gt_repeat = np.repeat(video_class[:, None], target.shape[1], axis=1)

    m = segment_metrics(gt_repeat, target)
    assert round(m["accuracy"] * 100, 1) == 82.2
    assert m["non_ave_recall"] == 0.0
    assert math.isnan(m["non_ave_precision"]) and math.isnan(m["non_ave_f1"])
    assert m["ave_precision"] == m["accuracy"] and m["ave_recall"] == 1.0
