"""Saved predictions (write/read, atomic, validated), the broadcast protocol on hand-built scores, and label sets
loaded from files of the AVE layout (one test per kind of bad file)."""
import math

import h5py
import numpy as np
import pytest
import torch

from avel_fast.constants import BACKGROUND, NUM_CLASSES, NUM_SEGMENTS
from avel_fast.data import AVEFormatError, read_annotations, synthetic_ave
from avel_fast.data.files import load_segment_labels
from avel_fast.metrics import segment_metrics
from avel_fast.predictions import (
    broadcast_predictions,
    dataset_segment_labels,
    predictions_file,
    protocol_predictions,
    read_predictions,
    score_predictions,
    write_predictions,
)

BG = BACKGROUND


def random_predictions(num_videos=7, total_videos=40, seed=0):
    rng = np.random.default_rng(seed)
    video_index = rng.choice(total_videos, num_videos, replace=False)
    scores = rng.standard_normal((num_videos, NUM_SEGMENTS, NUM_CLASSES)).astype(np.float32)
    return video_index, scores.argmax(-1), scores


def h5_write(path, array, key="avadataset"):
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=array)
    return path


def one_hot(labels):
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


# ---------------------------------------------------------------------------------------------- predictions file


def test_round_trip_from_tensors(tmp_path):
    video_index, pred, scores = random_predictions()
    path = tmp_path / predictions_file("test")
    write_predictions(path, torch.from_numpy(video_index), torch.from_numpy(pred), torch.from_numpy(scores))
    saved = read_predictions(path)
    assert path.name == "test_predictions.h5" and saved.protocol == "argmax"
    assert saved.video_index.dtype == np.int64 and saved.pred.dtype == np.int64 and saved.scores.dtype == np.float32
    np.testing.assert_array_equal(saved.video_index, video_index)
    np.testing.assert_array_equal(saved.pred, pred)
    np.testing.assert_array_equal(saved.scores, scores)
    with h5py.File(path, "r") as f:  # readable without the package
        assert sorted(f) == ["pred", "scores", "video_index"] and f.attrs["protocol"] == "argmax"
        assert f.attrs["labels"] == "data"
    write_predictions(path, video_index, pred, scores, protocol="broadcast", labels="/data/right_labels.h5")
    assert (read_predictions(path).protocol, read_predictions(path).labels) == ("broadcast", "/data/right_labels.h5")


def test_write_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "val_predictions.h5"
    video_index, pred, scores = random_predictions(seed=1)
    write_predictions(path, video_index, pred, scores)
    write_predictions(path, video_index[:3], pred[:3], scores[:3], protocol="broadcast")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    saved = read_predictions(path)
    assert saved.protocol == "broadcast" and saved.pred.shape == (3, NUM_SEGMENTS)
    with pytest.raises(ValueError, match="pred"):
        write_predictions(path, video_index, pred[:, :, None], scores)
    assert read_predictions(path).protocol == "broadcast"  # a refused write leaves the old file
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda v, p, s: (v[:, None], p, s), "video_index: expected integer"),
        (lambda v, p, s: (v.astype(float), p, s), "video_index: expected integer"),
        (lambda v, p, s: (-v - 1, p, s), "video_index: negative"),
        (lambda v, p, s: (np.zeros_like(v), p, s), "video_index: a video appears twice"),
        (lambda v, p, s: (v, p[1:], s), "pred: expected integer"),
        (lambda v, p, s: (v, p.astype(np.float32), s), "pred: expected integer"),
        (lambda v, p, s: (v, p + NUM_CLASSES, s), "pred: class indices"),
        (lambda v, p, s: (v, p, s[..., 1:]), "scores: expected floating"),
        (lambda v, p, s: (v, p, s.astype(np.int64)), "scores: expected floating"),
    ],
)
def test_write_refuses_inconsistent_arrays(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        write_predictions(tmp_path / "p.h5", *change(*random_predictions()))
    assert not list(tmp_path.iterdir())


def test_unknown_protocol(tmp_path):
    with pytest.raises(ValueError, match="protocol='mean'"):
        write_predictions(tmp_path / "p.h5", *random_predictions(), protocol="mean")
    with pytest.raises(ValueError, match="protocol='mean'"):
        protocol_predictions(torch.zeros(1, 2, NUM_CLASSES), "mean")


def test_read_refuses_bad_files(tmp_path):
    with pytest.raises(AVEFormatError, match="missing.h5.*file not found"):
        read_predictions(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(AVEFormatError, match="text.h5.*not a readable HDF5 file"):
        read_predictions(tmp_path / "text.h5")
    video_index, pred, scores = random_predictions()
    with h5py.File(tmp_path / "no_scores.h5", "w") as f:
        f.attrs["protocol"] = "argmax"
        f["video_index"], f["pred"] = video_index, pred
    with pytest.raises(AVEFormatError, match=r"no_scores.h5 \[scores\]: dataset missing"):
        read_predictions(tmp_path / "no_scores.h5")
    with h5py.File(tmp_path / "short.h5", "w") as f:
        f.attrs["protocol"] = "argmax"
        f["video_index"], f["pred"], f["scores"] = video_index, pred, scores[:, :5]
    with pytest.raises(AVEFormatError, match=r"short.h5 \[scores\]: expected floating \[7, 10, 29\]"):
        read_predictions(tmp_path / "short.h5")
    with h5py.File(tmp_path / "protocol.h5", "w") as f:
        f["video_index"], f["pred"], f["scores"] = video_index, pred, scores
    with pytest.raises(AVEFormatError, match="protocol.h5.*attribute protocol=None"):
        read_predictions(tmp_path / "protocol.h5")


def test_metrics_recomputed_from_the_file_equal_the_direct_ones(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, NUM_CLASSES, (40, NUM_SEGMENTS))
    video_index, pred, scores = random_predictions(num_videos=12, total_videos=40, seed=3)
    pred[:, :4] = labels[video_index, :4]  # some right, some wrong
    write_predictions(tmp_path / "p.h5", video_index, pred, scores)
    recomputed = score_predictions(read_predictions(tmp_path / "p.h5"), labels)
    direct = segment_metrics(pred, labels[video_index])
    assert recomputed["accuracy"] == direct["accuracy"] and 0.4 <= direct["accuracy"] < 1
    np.testing.assert_array_equal(recomputed["confusion_matrix"], direct["confusion_matrix"])
    last = int(video_index.max())
    with pytest.raises(ValueError, match=f"video index {last} is outside the {last} labelled videos"):
        score_predictions(read_predictions(tmp_path / "p.h5"), labels[:last])


# ---------------------------------------------------------------------------------------------- protocols


def scores_from_probs(segment_probs):
    """Raw scores whose softmax is `segment_probs` ([V, T, 29], rows summing to 1)."""
    return torch.from_numpy(np.array(segment_probs)).log().float()


def segment(background_prob, events):
    """A probability row: `background_prob` on background, `events` {class: prob}, the rest spread evenly."""
    row = np.zeros(NUM_CLASSES)
    row[BG] = background_prob
    for cls, prob in events.items():
        row[cls] = prob
    rest = 1.0 - row.sum()
    free = row == 0
    row[free] = rest / free.sum()
    return row


def test_broadcast_gives_the_video_class_to_event_segments():
    # Video 0: segments 0-1 vote class 3, segments 2-3 vote class 7 more strongly, so the video's class is 7,
    # given to every segment with event probability >= 0.5 whatever its own argmax.
    video0 = [segment(0.1, {3: 0.6}), segment(0.49, {3: 0.4}), segment(0.05, {7: 0.9}), segment(0.3, {7: 0.6}),
              segment(0.51, {3: 0.4}), segment(0.9, {7: 0.05})]
    # Video 1: background is the most probable class of the video, which still takes its best event class (5).
    video1 = [segment(0.95, {5: 0.02}), segment(0.4, {5: 0.5}), segment(0.97, {}), segment(0.97, {}),
              segment(0.97, {}), segment(0.97, {})]
    scores = scores_from_probs([video0, video1])
    pred = broadcast_predictions(scores)
    assert pred.dtype == torch.int64
    assert pred.tolist() == [[7, 7, 7, 7, BG, BG], [BG, 5, BG, BG, BG, BG]]
    assert protocol_predictions(scores, "argmax").tolist() == [[3, BG, 7, 7, BG, BG], [BG, 5, BG, BG, BG, BG]]
    assert torch.equal(protocol_predictions(scores, "broadcast"), pred)


def test_broadcast_takes_the_models_video_probabilities():
    scores = scores_from_probs([[segment(0.2, {3: 0.7}), segment(0.8, {3: 0.1})]])
    video_probs = torch.zeros(1, NUM_CLASSES)
    video_probs[0, 11] = 0.6
    video_probs[0, BG] = 0.9
    assert broadcast_predictions(scores, video_probs).tolist() == [[11, BG]]
    assert broadcast_predictions(scores, video_probs, threshold=0.1).tolist() == [[11, 11]]
    assert broadcast_predictions(scores, video_probs, threshold=0.9).tolist() == [[BG, BG]]


def test_broadcast_default_pool_is_the_segment_softmax_mean():
    scores = torch.randn(5, NUM_SEGMENTS, NUM_CLASSES, generator=torch.Generator().manual_seed(0)) * 3
    pooled = scores.softmax(-1).mean(1)
    assert torch.equal(broadcast_predictions(scores), broadcast_predictions(scores, pooled))


def test_broadcast_on_numpy_and_bad_input():
    scores = scores_from_probs([[segment(0.2, {4: 0.7}), segment(0.8, {4: 0.1})]]).numpy()
    pred = broadcast_predictions(scores)
    assert isinstance(pred, np.ndarray) and pred.dtype == np.int64 and pred.tolist() == [[4, BG]]
    with pytest.raises(ValueError, match=r"video_probs must have shape \[1, 29\]"):
        broadcast_predictions(scores, np.zeros((2, NUM_CLASSES)))
    with pytest.raises(ValueError, match="threshold must lie in"):
        broadcast_predictions(scores, threshold=1.5)
    with pytest.raises(ValueError, match="scores must be floating"):
        broadcast_predictions(torch.zeros(2, NUM_CLASSES))
    with pytest.raises(TypeError, match="scores must be"):
        broadcast_predictions([[0.0]])
    with pytest.raises(ValueError, match="used by the broadcast protocol only"):
        protocol_predictions(scores, "argmax", np.zeros((1, NUM_CLASSES)))


# ---------------------------------------------------------------------------------------------- label sets


def test_load_segment_labels_round_trip(tmp_path):
    labels = np.random.default_rng(0).integers(0, NUM_CLASSES, (6, NUM_SEGMENTS))
    path = h5_write(tmp_path / "right_labels.h5", one_hot(labels))
    loaded = load_segment_labels(path, 6)
    assert loaded.dtype == np.int64
    np.testing.assert_array_equal(loaded, labels)
    np.testing.assert_array_equal(load_segment_labels(path, None), labels)


def bad_label_files(tmp_path):
    good = one_hot(np.full((6, NUM_SEGMENTS), BG))
    two_hot, half, nan = good.copy(), good.copy(), good.copy()
    two_hot[2, 3, 0] = 1
    half[1, 0, BG] = 0.5
    nan[4, 9, 5] = math.nan
    return {
        "missing.h5": (None, "file not found"),
        "wrong_key.h5": (h5_write(tmp_path / "wrong_key.h5", good, key="labels"),
                         r"\[avadataset\]: dataset missing \(file has: labels\)"),
        "flat.h5": (h5_write(tmp_path / "flat.h5", good.argmax(-1)), r"shape \(6, 10\), expected one-hot"),
        "classes.h5": (h5_write(tmp_path / "classes.h5", good[..., :28]), r"shape \(6, 10, 28\), expected one-hot"),
        "count.h5": (h5_write(tmp_path / "count.h5", good[:5]), r"5 videos, but the other files hold 6"),
        "two_hot.h5": (h5_write(tmp_path / "two_hot.h5", two_hot), "1 label rows are not one-hot.*video 2, segment 3"),
        "half.h5": (h5_write(tmp_path / "half.h5", half), "1 label rows are not one-hot.*video 1, segment 0"),
        "nan.h5": (h5_write(tmp_path / "nan.h5", nan), "1 label rows are not one-hot.*video 4, segment 9.*nan"),
    }


@pytest.mark.parametrize(
    "name", ["missing.h5", "wrong_key.h5", "flat.h5", "classes.h5", "count.h5", "two_hot.h5", "half.h5", "nan.h5"]
)
def test_bad_label_files_are_named_errors(tmp_path, name):
    _, problem = bad_label_files(tmp_path)[name]
    with pytest.raises(AVEFormatError, match=f"{name}.*{problem}"):
        load_segment_labels(tmp_path / name, 6)


def test_real_files_of_another_layout_are_refused(real_ave_dir):
    with pytest.raises(AVEFormatError, match=r"labels_closs.h5 \[avadataset\]: shape \(4143, 10\), expected one-hot"):
        load_segment_labels(real_ave_dir / "labels_closs.h5", 4143)
    with pytest.raises(AVEFormatError, match=r"mil_labels.h5 \[avadataset\]: shape \(4143, 29\)"):
        load_segment_labels(real_ave_dir / "mil_labels.h5", 4143)


def test_dataset_segment_labels(tmp_path, real_ave_dir):
    data = synthetic_ave(seed=5, num_videos=30, num_background_videos=0, pooled_visual=True)
    np.testing.assert_array_equal(dataset_segment_labels(None, 5, 30), data.labels.numpy())
    with pytest.warns(UserWarning):
        from_annotations = dataset_segment_labels(real_ave_dir)
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(from_annotations, read_annotations(real_ave_dir / "Annotations.txt")[0])
    labels = np.random.default_rng(1).integers(0, NUM_CLASSES, (9, NUM_SEGMENTS))
    h5_write(tmp_path / "labels.h5", one_hot(labels))
    np.testing.assert_array_equal(dataset_segment_labels(tmp_path), labels)
