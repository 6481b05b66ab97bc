"""Sampler benchmarks (docs/fast-path.md#speed): SMB fusion of 28 x 250 videos and replicas for a batch of 48, native
sampler ("cpp") vs its pure-Python twin ("python"), on the real training labels when ../shared holds them,
else on the synthetic AVE training labels."""
import warnings
from pathlib import Path

import numpy as np
import pytest

from avel_fast.augment import ReplicaSampler, smb_fusion

SHARED_AVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ave"
IMPLS = ["python", "cpp"]


@pytest.fixture(scope="module")
def train_labels() -> tuple[np.ndarray, str]:
    if (SHARED_AVE / "Annotations.txt").is_file() and (SHARED_AVE / "train_order.h5").is_file():
        from avel_fast.data import split_labels

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the one video with StartTime == EndTime
            return split_labels(SHARED_AVE, "train"), "real"
    from avel_fast.data import synthetic_labels

    synthetic = synthetic_labels(seed=0)
    return synthetic.labels[synthetic.splits["train"]].numpy(), "synthetic"


@pytest.mark.parametrize("impl", IMPLS)
def test_smb_fusion_28x250(benchmark, train_labels, impl):
    labels, source = train_labels
    benchmark.group = "smb/28x250"
    benchmark.extra_info.update(impl=impl, labels=source)
    fused = benchmark(smb_fusion, labels, per_class=250, seed=0, backend=impl)
    assert fused.labels.shape == (28 * 250, labels.shape[1])


@pytest.mark.parametrize("impl", IMPLS)
def test_replicas_batch_48(benchmark, train_labels, impl):
    labels, source = train_labels
    sampler = ReplicaSampler(labels, backend=impl)
    batch = np.random.default_rng(0).choice(len(labels), 48, replace=False)
    benchmark.group = "replica/b48"
    benchmark.extra_info.update(impl=impl, labels=source)
    video, segment = benchmark(sampler.sample, batch, seed=7)
    np.testing.assert_array_equal(labels[video, segment], labels[batch])
