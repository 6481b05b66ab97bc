"""Gathering fused/replica features from sampler indices, and the Link layout (docs/augmentations.md, DPNet §3.4)."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import avel_fast.reference
from avel_fast.augment import ReplicaSampler, gather_segments, interleave, smb_fusion
from avel_fast.constants import BACKGROUND, NUM_EVENT_CLASSES


@pytest.mark.parametrize("tail", [(), (3,), (2, 2, 3)])
def test_gather_matches_loop(tail):
    features = torch.randn(5, 4, *tail)
    video = np.array([[0, 4, 4, 1], [2, 2, 3, 0]])
    segment = np.array([[3, 0, 1, 2], [0, 0, 3, 1]])
    out = gather_segments(features, video, segment)
    expected = torch.stack([torch.stack([features[v, s] for v, s in zip(vr, sr)]) for vr, sr in zip(video, segment)])
    assert out.shape == (2, 4, *tail)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(gather_segments(features, torch.from_numpy(video), torch.from_numpy(segment)), expected)


def test_gathered_labels_are_the_sampled_labels():
    labels = np.full((NUM_EVENT_CLASSES + 2, 6), BACKGROUND, dtype=np.int64)
    labels[:NUM_EVENT_CLASSES, 1:] = np.arange(NUM_EVENT_CLASSES)[:, None]
    labels[-2, :4] = 3
    fused = smb_fusion(labels, per_class=4, seed=1)
    gathered = gather_segments(torch.from_numpy(labels), fused.video_idx, fused.segment_idx)
    np.testing.assert_array_equal(gathered.numpy(), fused.labels)
    batch = np.array([NUM_EVENT_CLASSES, 3, NUM_EVENT_CLASSES + 1])
    replica = gather_segments(torch.from_numpy(labels), *ReplicaSampler(labels).sample(batch, seed=4))
    np.testing.assert_array_equal(replica.numpy(), labels[batch])


def test_interleave_link_layout():
    originals = torch.arange(6.0).reshape(3, 2)
    replicas = -originals
    out = interleave(originals, replicas)
    assert out.tolist() == [[0, 1], [-0.0, -1], [2, 3], [-2, -3], [4, 5], [-4, -5]]


@pytest.mark.parametrize(
    ("features", "video", "segment", "message"),
    [
        (torch.zeros(4), [[0]], [[0]], r"features must have shape \[videos, segments, ...\], got \(4,\)"),
        (torch.zeros(2, 3), [[0, 1]], [[0]], r"video_idx and segment_idx must share one shape \[M, T\]"),
        (torch.zeros(2, 3), [[0, 2]], [[0, 1]], r"video_idx must be in 0..1, got values in 0..2"),
        (torch.zeros(2, 3), [[0, 1]], [[-1, 1]], r"segment_idx must be in 0..2, got values in -1..1"),
        (torch.zeros(2, 3), [[0.0, 1.0]], [[0, 1]], "video_idx must be an integer array, got dtype float64"),
        (torch.zeros(2, 3), [[0, 1]], torch.tensor([[0.5, 1.0]]),
         "segment_idx must be an integer array, got dtype torch.float32"),
    ],
)
def test_gather_bad_inputs(features, video, segment, message):
    with pytest.raises(ValueError, match=message):
        gather_segments(features, video, segment)


def test_interleave_shape_mismatch():
    with pytest.raises(ValueError, match=r"originals and replicas must have the same shape, got \(2, 3\) and \(3, 3\)"):
        interleave(torch.zeros(2, 3), torch.zeros(3, 3))


def test_empty_indices_gather_nothing_even_from_no_videos():
    empty = np.zeros((0, 10), dtype=np.int64)
    for features in (torch.zeros(0, 10, 3), torch.zeros(4, 10, 3)):
        assert gather_segments(features, empty, empty).shape == (0, 10, 3)
        assert gather_segments(features, torch.from_numpy(empty), torch.from_numpy(empty)).shape == (0, 10, 3)


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_the_reference_layer_imports_nothing_from_augment():
    """`avel_fast.reference` (label refinement's synthetic videos among it) sits below `avel_fast.augment`: the gather
    lives in the reference layer and augment's `gather_segments` is that one."""
    for path in Path(avel_fast.reference.__file__).parent.glob("*.py"):
        above = {name for name in _imported_modules(path) if name.split(".")[:2] == ["avel_fast", "augment"]}
        assert not above, f"{path.name} imports {sorted(above)}"
    from avel_fast.reference.gather import gather_segments as reference_gather

    assert gather_segments is reference_gather
