"""Resident dataset (docs/data.md#resident): epochs cover every row once, seeded shuffles, the pooled cache, fp16
storage."""
import pytest
import torch

from avel_fast.data import ResidentDataset, synthetic_ave


@pytest.fixture(scope="module")
def data():
    return synthetic_ave(seed=11, num_videos=23, num_background_videos=0)


def epoch_index(dataset, **kwargs):
    return torch.cat([batch.index for batch in dataset.batches(5, **kwargs)])


def test_every_row_once_per_epoch(data):
    dataset = ResidentDataset(data)
    batches = list(dataset.batches(5, seed=1, epoch=0))
    assert [len(b.index) for b in batches] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat([b.index for b in batches]).sort().values, torch.arange(23))
    for batch in batches:
        assert torch.equal(batch.audio, data.audio[batch.index])
        assert torch.equal(batch.visual, data.visual[batch.index])
        assert torch.equal(batch.labels, data.labels[batch.index])
        assert torch.equal(batch.video_labels, data.video_labels[batch.index])


def test_drop_last_and_no_shuffle(data):
    dataset = ResidentDataset(data)
    assert [len(b.index) for b in dataset.batches(5, drop_last=True)] == [5, 5, 5, 5]
    assert dataset.num_batches(5, drop_last=True) == 4 and dataset.num_batches(5) == 5
    assert torch.equal(epoch_index(dataset, shuffle=False), torch.arange(23))
    with pytest.raises(ValueError, match="batch_size=0"):
        next(dataset.batches(0))
    with pytest.raises(ValueError, match="batch_size=0"):
        dataset.num_batches(0)


def test_seeded_shuffle(data):
    dataset = ResidentDataset(data)
    first = epoch_index(dataset, seed=3, epoch=0)
    assert torch.equal(first, epoch_index(ResidentDataset(data), seed=3, epoch=0))
    assert not torch.equal(first, epoch_index(dataset, seed=3, epoch=1))
    assert not torch.equal(first, epoch_index(dataset, seed=4, epoch=0))
    assert not torch.equal(first, torch.arange(23))


def test_pooled_cache(data):
    dataset = ResidentDataset(data, visual_dtype=torch.float16)
    assert dataset.visual.dtype == torch.float16
    pooled = dataset.pooled_visual
    assert pooled.shape == (23, 10, 512) and pooled.dtype == torch.float32
    assert torch.equal(pooled, data.visual.half().float().mean(dim=(2, 3)))
    assert dataset.pooled_visual is pooled
    batch = next(dataset.batches(4, seed=0, pooled=True))
    assert torch.equal(batch.visual, pooled[batch.index])
    maps = next(dataset.batches(4, seed=0))
    assert maps.visual.dtype == torch.float32 and torch.equal(maps.visual, data.visual[maps.index].half().float())


def test_from_pooled_data(data):
    dataset = ResidentDataset(data.pooled())
    assert dataset.visual_pooled
    assert torch.equal(dataset.pooled_visual, data.visual.mean(dim=(2, 3)))
    assert next(dataset.batches(4)).visual.shape == (4, 10, 512)
