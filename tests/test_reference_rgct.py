"""Reference RGCT against hand-derived neighbourhoods (the table of docs/models.md#rgct) and a per-node re-derivation
of eqs. 13-16."""
import math

import pytest
import torch
import torch.nn.functional as F

from avel_fast.reference import RELATIONS, RGCT, neighborhood_aggregation

A, V = 0, 1


def coded_input(batch: int, segments: int, dim: int = 2) -> torch.Tensor:
    """x[b, m, t, :] = 100·b + 10·m + t: every value says which node it came from."""
    b = torch.arange(batch).view(-1, 1, 1, 1)
    m = torch.arange(2).view(1, -1, 1, 1)
    t = torch.arange(segments).view(1, 1, -1, 1)
    return (100.0 * b + 10.0 * m + t + torch.zeros(1, 1, 1, dim)).double()


def source_node(node_m: int, t: int, relation: str, segments: int) -> tuple[int, int] | None:
    """The table of docs/models.md#rgct: (modality, time) whose group mean feeds `relation` at node (node_m, t), or
    None."""
    source = {
        (A, "Af"): (A, t - 1), (A, "Ab"): (A, t + 1), (A, "VA"): (V, t),
        (V, "Vf"): (V, t - 1), (V, "Vb"): (V, t + 1), (V, "AV"): (A, t),
    }.get((node_m, relation))
    return source if source is not None and 0 <= source[1] < segments else None


def expected_na(segments: int, group_size: int, node_m: int, t: int, b: int, relation: str) -> float:
    """NA for coded inputs: mean over the link group of the source node's code, or 0 without incoming edge."""
    source = source_node(node_m, t, relation, segments)
    if source is None:
        return 0.0
    first = b - b % group_size
    mean_video = sum(100.0 * g for g in range(first, first + group_size)) / group_size
    return mean_video + 10.0 * source[0] + source[1]


def test_first_and_last_segment_by_hand_without_link():
    na = neighborhood_aggregation(coded_input(1, 4), group_size=1)[0, :, :, :, 0]  # [2, T, 6]
    af, ab, vf, vb, av, va = range(6)
    # Audio node t=0: no forward edge into it, backward edge from A_1, cross-modal edge from V_0.
    assert na[A, 0].tolist() == [0, 1, 0, 0, 0, 10]
    # Audio node t=3 (last): forward edge from A_2, no backward edge.
    assert na[A, 3].tolist() == [2, 0, 0, 0, 0, 13]
    # Visual node t=0 and t=3.
    assert na[V, 0].tolist() == [0, 0, 0, 11, 0, 0]
    assert na[V, 3].tolist() == [0, 0, 12, 0, 3, 0]
    # A middle node has both temporal edges.
    assert (na[A, 2, af].item(), na[A, 2, ab].item(), na[V, 2, vf].item(), na[V, 2, vb].item()) == (1, 3, 11, 13)
    assert (na[V, 2, av].item(), na[A, 2, va].item()) == (2, 12)


def test_first_and_last_segment_by_hand_with_link():
    # Videos 0 and 1 linked: every edge comes from both videos, so the source is the mean code 50 + ...
    na = neighborhood_aggregation(coded_input(2, 3), group_size=2)[:, :, :, :, 0]
    for video in (0, 1):
        assert na[video, A, 0].tolist() == [0, 51, 0, 0, 0, 60]
        assert na[video, A, 2].tolist() == [51, 0, 0, 0, 0, 62]
        assert na[video, V, 0].tolist() == [0, 0, 0, 61, 50, 0]
        assert na[video, V, 2].tolist() == [0, 0, 61, 0, 52, 0]


@pytest.mark.parametrize("group_size", [1, 2, 3])
def test_every_node_every_relation(group_size):
    batch, segments = 6, 5
    na = neighborhood_aggregation(coded_input(batch, segments), group_size)
    for b in range(batch):
        for m in (A, V):
            for t in range(segments):
                for r, relation in enumerate(RELATIONS):
                    expected = expected_na(segments, group_size, m, t, b, relation)
                    assert na[b, m, t, r].tolist() == [expected, expected], (b, m, t, relation)


def identity_readout(rgct: RGCT, relation: int, value_bias: torch.Tensor) -> None:
    """Uniform attention (W_q = 0), V = NA_r·I + bias for relation r only, h = 0, W_2 = I: y = Swish(NĀ)."""
    dim = rgct.out_dim
    with torch.no_grad():
        for p in rgct.parameters():
            p.zero_()
        rgct.v.weight[relation * dim : (relation + 1) * dim] = torch.eye(dim, dtype=rgct.v.weight.dtype)
        rgct.v.bias.copy_(value_bias)
        rgct.w2.weight.copy_(torch.eye(dim))


@pytest.mark.parametrize("group_size", [1, 2])
@pytest.mark.parametrize("relation", range(6))
def test_module_reads_relation_rows_in_order(relation, group_size):
    batch, segments, dim = 4, 4, 2
    rgct = RGCT(dim, dim).double().eval()
    value_bias = torch.arange(6 * dim, dtype=torch.float64) / 10  # non-zero: empty neighbourhood = bias only
    identity_readout(rgct, relation, value_bias)
    y = rgct(coded_input(batch, segments, dim), group_size)
    bias_mean = value_bias.view(6, dim).mean(dim=0)
    for b in range(batch):
        for m in (A, V):
            for t in range(segments):
                na = expected_na(segments, group_size, m, t, b, RELATIONS[relation])
                expected = F.silu(na / 6 + bias_mean)  # the uniform mean over the 6 value rows
                torch.testing.assert_close(y[b, m, t], expected, rtol=0, atol=1e-12)


def test_matches_per_node_loop():
    """Eqs. 12-16 re-derived node by node with that table, random weights, non-uniform attention."""
    torch.manual_seed(0)
    batch, segments, in_dim, out_dim, group_size = 4, 3, 5, 4, 2
    rgct = RGCT(in_dim, out_dim).double().eval()
    x = torch.randn(batch, 2, segments, in_dim, dtype=torch.float64)
    y = rgct(x, group_size)
    wq, wk, wv = (w.weight.view(6, out_dim, in_dim) for w in (rgct.q, rgct.k, rgct.v))
    bq, bk, bv = (w.bias.view(6, out_dim) for w in (rgct.q, rgct.k, rgct.v))
    for b in range(batch):
        group = x[b - b % group_size : b - b % group_size + group_size]
        for m in (A, V):
            for t in range(segments):
                q, k, v = [], [], []
                for r, relation in enumerate(RELATIONS):
                    source = source_node(m, t, relation, segments)
                    if source is not None:
                        na = group[:, source[0], source[1]].mean(dim=0)
                    else:
                        na = torch.zeros(in_dim, dtype=torch.float64)
                    q.append(wq[r] @ x[b, m, t] + bq[r])
                    k.append(wk[r] @ na + bk[r])
                    v.append(wv[r] @ na + bv[r])
                q, k, v = torch.stack(q), torch.stack(k), torch.stack(v)
                attention = torch.softmax(q @ k.T / math.sqrt(out_dim), dim=1)
                aggregated = (attention @ v).mean(dim=0)
                hidden = F.silu(rgct.w1.weight @ x[b, m, t] + rgct.w1.bias)
                expected = F.silu(rgct.w2.weight @ (hidden + aggregated) + rgct.w2.bias)
                torch.testing.assert_close(y[b, m, t], expected, rtol=1e-12, atol=1e-12)


def test_dropout_acts_on_the_aggregation_only():
    torch.manual_seed(1)
    rgct = RGCT(3, 4, dropout=1.0).train()
    x = torch.randn(2, 2, 3, 3)
    expected = F.silu(rgct.w2(F.silu(rgct.w1(x))))  # eq. 16 with NĀ dropped entirely
    torch.testing.assert_close(rgct(x), expected)
    assert not torch.allclose(rgct.eval()(x), expected)


def test_parameter_contract():
    rgct = RGCT(5, 3)
    shapes = {name: tuple(p.shape) for name, p in rgct.state_dict().items()}
    assert shapes == {
        "q.weight": (18, 5), "q.bias": (18,),
        "k.weight": (18, 5), "k.bias": (18,),
        "v.weight": (18, 5), "v.bias": (18,),
        "w1.weight": (3, 5), "w1.bias": (3,),
        "w2.weight": (3, 3), "w2.bias": (3,),
    }
    assert RELATIONS == ("Af", "Ab", "Vf", "Vb", "AV", "VA")
    assert rgct.dropout.p == 0.2
    assert rgct(torch.randn(6, 2, 4, 5), group_size=3).shape == (6, 2, 4, 3)


def test_group_size_must_divide_batch():
    with pytest.raises(ValueError, match="group_size=2 does not divide the batch size 3"):
        RGCT(4, 4)(torch.randn(3, 2, 5, 4), group_size=2)


@pytest.mark.parametrize("group_size", [0, -1, 1.5])
def test_group_size_must_be_positive_int(group_size):
    with pytest.raises(ValueError, match="group_size must be a positive int"):
        RGCT(4, 4)(torch.randn(2, 2, 5, 4), group_size=group_size)


@pytest.mark.parametrize("shape", [(2, 5, 4), (2, 3, 5, 4), (2, 2, 5, 6), (2, 2, 0, 4)])
def test_input_shape_is_checked(shape):
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2, T, 4\]"):
        RGCT(4, 4)(torch.randn(shape))
