"""`AVEData` (docs/data.md#contract): shape contract, split subsets, background concatenation, pooling."""
import pytest
import torch

from avel_fast.constants import BACKGROUND
from avel_fast.data import AVEData, synthetic_ave
from avel_fast.data.dataset import video_labels_from_segments


@pytest.fixture(scope="module")
def data():
    return synthetic_ave(seed=9, num_videos=15, num_background_videos=4, pooled_visual=True)


def test_subset_of_a_split(data):
    val = data.subset("val")
    index = data.splits["val"]
    assert len(val) == len(index) == 2 and val.splits == {}  # 15 videos split 12/2/1 (largest remainder)
    assert torch.equal(val.audio, data.audio[index]) and torch.equal(val.labels, data.labels[index])
    assert torch.equal(data.subset(torch.tensor([3, 1])).video_labels, data.video_labels[[3, 1]])
    with pytest.raises(KeyError, match="no split 'dev'"):
        data.subset("dev")
    with pytest.raises(ValueError, match="integer row indices, got dtype torch.bool"):
        data.subset(torch.ones(len(data), dtype=torch.bool))


def test_with_background(data):
    train = data.subset("train").with_background()
    assert len(train) == len(data.splits["train"]) + 4
    assert (train.labels[-4:] == BACKGROUND).all() and (train.video_labels[-4:, BACKGROUND] == 1).all()
    assert train.background is None


def test_video_labels_from_segments():
    labels = torch.tensor([[28] * 8 + [3, 3], [28] * 10, [5] * 10])
    expected = torch.zeros(3, 29)
    expected[0, 3] = expected[1, 28] = expected[2, 5] = 1.0
    assert torch.equal(video_labels_from_segments(labels), expected)


def test_shape_contract(data):
    with pytest.raises(ValueError, match=r"AVEData.audio: shape \(15, 9, 128\)"):
        AVEData(torch.zeros(15, 9, 128), data.visual, data.labels, data.video_labels)
    with pytest.raises(ValueError, match=r"AVEData.audio: shape \(15, 10, 0\), expected \(V, 10, D\), D >= 1"):
        AVEData(torch.zeros(15, 10, 0), data.visual, data.labels, data.video_labels)
    assert AVEData(torch.zeros(15, 10, 502), data.visual, data.labels, data.video_labels).audio_dim == 502
    narrow = AVEData(torch.zeros(2, 10, 7), data.visual[:2], data.labels[:2], data.video_labels[:2])
    with pytest.raises(ValueError, match="AVEData.background: audio width 7, but the videos have 128"):
        AVEData(data.audio, data.visual, data.labels, data.video_labels, background=narrow)
    with pytest.raises(ValueError, match="AVEData.labels: dtype torch.int32"):
        AVEData(data.audio, data.visual, data.labels.int(), data.video_labels)
