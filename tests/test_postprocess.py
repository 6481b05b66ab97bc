"""b2ilc (EDRNet B2ILC, docs/models.md#b2ilc): hand-made bags, a per-video loop oracle, types and bad input."""
import numpy as np
import pytest
import torch

from avel_fast.constants import BACKGROUND
from avel_fast.postprocess import b2ilc

BG = BACKGROUND


def correct(rows, witness_rate=0.5):
    return b2ilc(torch.tensor(rows), witness_rate).tolist()


def loop_b2ilc(pred: np.ndarray, witness_rate: float) -> np.ndarray:
    """Oracle: scan each video for runs of foreground and vote inside each run."""
    out = pred.copy()
    for video in out:
        t = 0
        while t < len(video):
            if video[t] == BG:
                t += 1
                continue
            end = t
            while end < len(video) and video[end] != BG:
                end += 1
            classes, counts = np.unique(video[t:end], return_counts=True)
            if counts.max() > witness_rate * (end - t):
                video[t:end] = classes[np.argmax(counts)]
            t = end
    return out


def test_exactly_half_is_unchanged():
    row = [BG, 1, 1, 2, 2, BG, BG, BG, BG, BG]
    assert correct([row]) == [row]


def test_strict_majority_takes_the_bag():
    assert correct([[BG, 1, 2, 1, BG, BG, BG, BG, BG, BG]]) == [[BG, 1, 1, 1, BG, BG, BG, BG, BG, BG]]


def test_witness_rate_is_strict():
    row = [3, 3, 3, 4, 4, BG, BG, BG, BG, BG]  # 3/5 = 0.6
    assert correct([row], 0.6) == [row]
    assert correct([row], 0.59) == [[3, 3, 3, 3, 3, BG, BG, BG, BG, BG]]


def test_ties_passing_a_low_witness_rate_pick_lowest_class():
    assert correct([[BG, 2, 2, 1, 1, BG, 9, 7, 8, BG]], 0.3) == [[BG, 1, 1, 1, 1, BG, 7, 7, 7, BG]]


def test_several_bags_per_video():
    pred = [[BG, 1, 1, 2, BG, 3, 3, 4, 4, BG], [5, 5, 5, 6, BG, BG, 7, 7, 8, 9]]
    assert correct(pred) == [[BG, 1, 1, 1, BG, 3, 3, 4, 4, BG], [5, 5, 5, 5, BG, BG, 7, 7, 8, 9]]


def test_bags_do_not_cross_video_boundaries():
    # Merged across the boundary, [4, 4, 6] would pass and turn the second video's first segment into 4.
    pred = [[BG] * 8 + [4, 4], [6] + [BG] * 9]
    assert correct(pred) == pred


def test_all_background_is_unchanged():
    pred = torch.full((3, 10), BG)
    torch.testing.assert_close(b2ilc(pred), pred)


def test_all_one_class_is_unchanged_and_whole_video_bag_votes():
    assert correct([[12] * 10]) == [[12] * 10]
    assert correct([[5] * 6 + [6] * 4]) == [[5] * 10]


def test_extreme_witness_rates():
    row = [BG, 1, 2, 3, 3, BG, 4, 5, BG, 6]
    assert correct([row], 1.0) == [row]
    assert correct([row], 0.0) == [[BG, 3, 3, 3, 3, BG, 4, 4, BG, 6]]


@pytest.mark.parametrize("witness_rate", [0.0, 0.3, 0.5, 0.7])
def test_matches_loop_oracle_on_random_predictions(witness_rate):
    rng = np.random.default_rng(1)
    pred = np.where(rng.random((300, 10)) < 0.3, BG, rng.integers(0, 4, size=(300, 10)))
    np.testing.assert_array_equal(b2ilc(pred, witness_rate), loop_b2ilc(pred, witness_rate))


def test_numpy_in_numpy_out_same_dtype_and_input_untouched():
    pred = np.array([[BG, 1, 2, 1, BG, BG, BG, BG, BG, BG]], dtype=np.int32)
    before = pred.copy()
    out = b2ilc(pred)
    assert isinstance(out, np.ndarray) and out.dtype == np.int32
    np.testing.assert_array_equal(out, [[BG, 1, 1, 1, BG, BG, BG, BG, BG, BG]])
    np.testing.assert_array_equal(pred, before)


def test_torch_dtype_kept_and_input_untouched():
    pred = torch.tensor([[BG, 1, 2, 1, BG, BG, BG, BG, BG, BG]], dtype=torch.int16)
    before = pred.clone()
    out = b2ilc(pred)
    assert out.dtype == torch.int16
    assert out.tolist() == [[BG, 1, 1, 1, BG, BG, BG, BG, BG, BG]]
    torch.testing.assert_close(pred, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stays_on_device():
    pred = torch.tensor([[BG, 1, 2, 1, BG, 3, 3, 4, 4, BG]], device="cuda")
    out = b2ilc(pred)
    assert out.device == pred.device
    assert out.cpu().tolist() == [[BG, 1, 1, 1, BG, 3, 3, 4, 4, BG]]


@pytest.mark.parametrize("witness_rate", [-0.1, 1.5])
def test_witness_rate_out_of_range_raises(witness_rate):
    with pytest.raises(ValueError, match=r"witness_rate must lie in \[0, 1\]"):
        b2ilc(torch.zeros(1, 10, dtype=torch.long), witness_rate)


def test_wrong_rank_raises():
    with pytest.raises(ValueError, match=r"pred must have shape \[V, T\], got \(10,\)"):
        b2ilc(torch.zeros(10, dtype=torch.long))


def test_float_predictions_raise():
    with pytest.raises(ValueError, match="pred must hold integer class indices, got dtype torch.float32"):
        b2ilc(torch.zeros(2, 10))


def test_class_index_out_of_range_raises():
    with pytest.raises(ValueError, match=r"class indices in 0..28, got -1..0"):
        b2ilc(torch.tensor([[0, -1]]))
    with pytest.raises(ValueError, match=r"class indices in 0..28, got 0..1000000000000"):
        b2ilc(np.array([[0, 10**12]]))


def test_numpy_views_and_byte_orders_are_accepted():
    pred = np.array([[28, 3, 3, 5, 28], [1, 1, 28, 2, 2]])
    expected = b2ilc(pred)
    np.testing.assert_array_equal(b2ilc(pred[:, ::-1]), expected[:, ::-1])
    np.testing.assert_array_equal(b2ilc(pred.astype(">i8")), expected)


def test_unsupported_type_raises():
    with pytest.raises(TypeError, match="pred must be a torch.Tensor or numpy.ndarray, got list"):
        b2ilc([[0, 1]])
