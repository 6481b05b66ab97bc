"""Reference Land-Shore-Sea loss on hand-built label patterns with hand-computed values (docs/models.md#lss)."""
import pytest
import torch

from avel_fast.constants import BACKGROUND
from avel_fast.reference import LSSLoss

BG = BACKGROUND


def lss(values, labels, margin=1.0):
    """LSS of one video with 1-D features `values` (so every L2 norm is an absolute value)."""
    features = torch.tensor(values, dtype=torch.float64).view(1, -1, 1)
    return LSSLoss(margin)(features, torch.tensor([labels])).item()


def test_no_land_only_the_sea_counts():
    # One sea of 4: halves [0, 1] and [2, 3] -> |0.5 - 2.5|.
    assert lss([0, 1, 2, 3], [BG] * 4) == pytest.approx(2.0)


def test_all_land_odd_length_leaves_the_middle_out():
    # One land of 5: halves [0, 1] and [3, 10] (segment 2 left out) -> |0.5 - 6.5|; no sea, no shore.
    assert lss([0, 1, 2, 3, 10], [4] * 5) == pytest.approx(6.0)


def test_one_segment_land_counts_nowhere():
    # The land [5] is too short for halves and its shore has no positive; the sea [0] is too short;
    # only the sea [1, 3] counts.
    assert lss([0, 5, 1, 3], [BG, 3, BG, BG]) == pytest.approx(2.0)


def test_land_between_two_seas_has_two_shores():
    values, labels = [0, 2, 5, 7, 9, 4], [BG, BG, 1, 1, 1, BG]
    # Sea [0, 2] -> 2 (the sea [4] is too short); land [5, 7, 9] -> |5 - 9| = 4 (middle left out).
    # Shore t=2: anchor 5, positive mean(7, 9) = 8, negative mean(0, 2) = 1: |5-8| - |5-1| = -1.
    # Shore t=4: anchor 9, positive mean(5, 7) = 6, negative 4:              |9-6| - |9-4| = -2.
    assert lss(values, labels, margin=1.0) == pytest.approx(2 + 4 + 0)
    assert lss(values, labels, margin=3.0) == pytest.approx(2 + 4 + (2 + 1) / 2)


def test_two_lands_in_a_video():
    values = [1, 3, 0, 4, 6, 8, 10, 2, 2, 5]
    labels = [1, 1, BG, 2, 2, 2, 2, BG, BG, BG]
    # Lands: [1, 3] -> 2 and [4, 6, 8, 10] -> |5 - 9| = 4: mean 3. Seas: [0] too short, [2, 2, 5] -> 3.
    # Shores: t=1: |3-1| - |3-0| + 1 = 0; t=3: |4-8| - |4-0| + 1 = 1; t=6: |10-6| - |10-3| + 1 < 0 -> 0.
    assert lss(values, labels) == pytest.approx(3 + 3 + 1 / 3)


def test_adjacent_event_classes_form_one_land():
    # Classes 5 and 6 side by side are one land of 2 (FG = any event class).
    assert lss([1, 4], [5, 6]) == pytest.approx(3.0)


def test_norm_is_euclidean_over_the_feature_axis():
    features = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])
    assert LSSLoss()(features, torch.tensor([[7, 7]])).item() == pytest.approx(5.0)


def test_batch_mean_over_videos():
    features = torch.tensor([[0.0, 1, 2, 3], [0, 5, 1, 3], [9, 9, 9, 9]]).unsqueeze(-1)
    labels = torch.tensor([[BG] * 4, [BG, 3, BG, BG], [BG, 3, BG, 4]])
    # Video values 2 and 2 (above) and 0 (nothing counts in the third): mean 4 / 3.
    assert LSSLoss()(features, labels).item() == pytest.approx(4 / 3)


def test_nothing_to_average_is_zero_with_zero_gradient():
    features = torch.randn(2, 3, 4, requires_grad=True)
    loss = LSSLoss()(features, torch.tensor([[BG, 2, BG], [5, BG, 6]]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_gradient_flows_to_the_counted_segments():
    features = torch.tensor([[[0.0], [1.0], [2.0], [3.0]]], requires_grad=True)
    LSSLoss()(features, torch.tensor([[BG] * 4])).backward()
    # d|mean(f0, f1) - mean(f2, f3)| / df = sign(-2) * (+-1/2).
    assert features.grad.view(-1).tolist() == [-0.5, -0.5, 0.5, 0.5]


def test_features_shape_is_checked():
    with pytest.raises(ValueError, match=r"features must have shape \[B, T, D\]"):
        LSSLoss()(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


def test_labels_shape_is_checked():
    with pytest.raises(ValueError, match=r"labels must have shape \[2, 4\]"):
        LSSLoss()(torch.randn(2, 4, 3), torch.zeros(2, 5, dtype=torch.long))


def test_labels_dtype_is_checked():
    with pytest.raises(ValueError, match="labels must be integer class indices"):
        LSSLoss()(torch.randn(2, 4, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("bad", [-1, 29])
def test_labels_range_is_checked(bad):
    labels = torch.full((1, 3), BG)
    labels[0, 1] = bad
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.28"):
        LSSLoss()(torch.randn(1, 3, 2), labels)
