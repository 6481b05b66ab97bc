"""Data pipeline benchmarks (docs/data.md#resident, docs/fast-path.md#speed): load the training split and iterate
one epoch of batches.

"h5-loop" is the public AVE loaders' pattern: a torch Dataset reading one video per index from the h5 files,
batched by a DataLoader. "resident" loads the directory once with `load_ave` and draws batches from a
`ResidentDataset` by `index_select`; "resident-pooled" is the same for models that start with global average
pooling (visual pooled per chunk while loading). Group "data/epoch" includes the loading, "data/epoch-warm"
is a later epoch (files open, data resident).
"""
import h5py
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from avel_fast.data import ResidentDataset, load_ave, synthetic_ave, write_ave

NUM_VIDEOS = 160
BATCH_SIZE = 32
ROUNDS = 3


class H5Videos(Dataset):
    """One video per `__getitem__`, read from the h5 files like the public AVE loaders."""

    def __init__(self, root, index):
        self.audio = h5py.File(root / "audio_feature.h5", "r")["avadataset"]
        self.visual = h5py.File(root / "visual_feature.h5", "r")["avadataset"]
        self.labels = h5py.File(root / "labels.h5", "r")["avadataset"]
        self.index = index

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        video = int(self.index[i])
        return (
            torch.from_numpy(self.audio[video]),
            torch.from_numpy(self.visual[video]),
            torch.from_numpy(self.labels[video]).argmax(dim=-1),
        )


def h5_epoch(loader):
    return sum(int(labels.numel()) for _, _, labels in loader)


def h5_load_and_epoch(root, train_index):
    loader = DataLoader(H5Videos(root, train_index), batch_size=BATCH_SIZE, shuffle=True, num_workers=0)
    return h5_epoch(loader)


def resident_epoch(dataset, pooled):
    return sum(int(batch.labels.numel()) for batch in dataset.batches(BATCH_SIZE, seed=0, pooled=pooled))


def resident_load_and_epoch(root, pooled):
    dataset = ResidentDataset(load_ave(root, pooled_visual=pooled).subset("train"))
    return resident_epoch(dataset, pooled)


@pytest.fixture(scope="module")
def ave_root(tmp_path_factory):
    data = synthetic_ave(seed=0, num_videos=NUM_VIDEOS, num_background_videos=0)
    return write_ave(data, tmp_path_factory.mktemp("bench_data") / "ave"), data.splits["train"]


@pytest.mark.parametrize("impl", ["h5-loop", "resident", "resident-pooled"])
def test_load_and_epoch(benchmark, ave_root, impl):
    root, train_index = ave_root
    benchmark.group = "data/epoch"
    benchmark.extra_info.update(impl=impl, videos=len(train_index), batch_size=BATCH_SIZE)
    if impl == "h5-loop":
        segments = benchmark.pedantic(h5_load_and_epoch, args=(root, train_index), rounds=ROUNDS, iterations=1)
    else:
        segments = benchmark.pedantic(
            resident_load_and_epoch, args=(root, impl == "resident-pooled"), rounds=ROUNDS, iterations=1
        )
    assert segments == len(train_index) * 10


@pytest.mark.parametrize("impl", ["h5-loop", "resident", "resident-pooled"])
def test_warm_epoch(benchmark, ave_root, impl):
    root, train_index = ave_root
    benchmark.group = "data/epoch-warm"
    benchmark.extra_info.update(impl=impl, videos=len(train_index), batch_size=BATCH_SIZE)
    if impl == "h5-loop":
        loader = DataLoader(H5Videos(root, train_index), batch_size=BATCH_SIZE, shuffle=True, num_workers=0)
        segments = benchmark.pedantic(h5_epoch, args=(loader,), rounds=ROUNDS, iterations=1)
    else:
        pooled = impl == "resident-pooled"
        dataset = ResidentDataset(load_ave(root, pooled_visual=pooled).subset("train"))
        segments = benchmark.pedantic(resident_epoch, args=(dataset, pooled), rounds=ROUNDS, iterations=1)
    assert segments == len(train_index) * 10
