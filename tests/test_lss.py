"""The fast Land-Shore-Sea loss (avel_fast.nn.LSSLoss) against the reference loop: hand-built label patterns,
random labels, the norm at 0, the coefficient table, the Triton kernels, dispatch, compile, bf16, bad input.

Functions named ``check_*`` run the Triton kernels through Triton's CPU interpreter in a subprocess
(`_interpret.run_interpreted`); the ``*_cuda`` tests run them on a GPU and skip without one.
"""
from __future__ import annotations

import pytest
import torch

from _interpret import run_interpreted
from avel_fast import reference
from avel_fast.constants import BACKGROUND
from avel_fast.nn import LSSLoss
from avel_fast.nn.lss import by_row, lss_coefficients, lss_torch, most_rows, pattern_table, row_coefficients

BG = BACKGROUND
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PATTERNS = {  # 1 = an event segment, 0 = background
    "all background": "0000000000",
    "all foreground": "1111111111",
    "one-segment lands": "0100100010",
    "odd lengths": "1110000011",
    "shores both sides": "0011111000",
    "several lands": "1101110110",
    "land at both ends": "1100000111",
    "alternating": "0101010101",
}


def pattern_labels(pattern: str, event: int = 3) -> list[int]:
    return [event if c == "1" else BG for c in pattern]


def random_labels(videos: int, segments: int, background_rate: float = 0.5) -> torch.Tensor:
    """Labels with runs of every length: each segment background with `background_rate`, else a random event."""
    background = torch.rand(videos, segments) < background_rate
    return torch.where(background, BG, torch.randint(0, BG, (videos, segments)))


def loss_and_grad(loss_fn, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = features.detach().clone().requires_grad_()
    loss = loss_fn(features, labels)
    return loss.detach(), torch.autograd.grad(loss, features)[0]


def assert_matches_reference(features, labels, margin: float = 1.0, loss_fn=None, rtol: float = 1e-4) -> None:
    """Loss and feature gradient agree with the reference loop within `rtol` relative to their scale."""
    got = loss_and_grad(LSSLoss(margin) if loss_fn is None else loss_fn, features, labels)
    want = loss_and_grad(reference.LSSLoss(margin), features, labels)
    for name, a, b in zip(("loss", "features.grad"), got, want):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b.to(a.dtype), rtol=rtol, atol=rtol * max(b.abs().max().item(), 1e-3),
                                   msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("margin", [1.0, 4.0])
@pytest.mark.parametrize("name", list(PATTERNS))
def test_hand_built_patterns_match_reference(torch_backend, name, margin):
    torch.manual_seed(len(name))
    labels = torch.tensor([pattern_labels(PATTERNS[name])])
    assert_matches_reference(torch.randn(1, 10, 6), labels, margin)


def test_all_patterns_in_one_batch_match_reference(torch_backend):
    torch.manual_seed(0)
    labels = torch.tensor([pattern_labels(p, event) for event, p in enumerate(PATTERNS.values())])
    assert_matches_reference(torch.randn(len(PATTERNS), 10, 6), labels, margin=3.0)


@pytest.mark.parametrize("videos,segments,dim", [(48, 10, 256), (9, 10, 5), (7, 1, 3), (7, 2, 4), (11, 7, 3)])
def test_random_labels_match_reference(torch_backend, videos, segments, dim):
    torch.manual_seed(videos * segments + dim)
    assert_matches_reference(torch.randn(videos, segments, dim), random_labels(videos, segments), margin=2.0)


def test_more_segments_than_the_table_computes_rows_directly(torch_backend):
    torch.manual_seed(0)
    labels = random_labels(6, 15)
    assert row_coefficients(labels, torch.float32)[0].shape == (6, 3 * 15, 15)  # T uncut rows of H, P, N
    assert_matches_reference(torch.randn(6, 15, 4), labels, margin=2.0)


def test_table_rows_are_the_direct_rows_used_first():
    coefficients, weights = by_row(*lss_coefficients(torch.tensor([pattern_labels(p) for p in PATTERNS.values()])))
    table = pattern_table(10, torch.device("cpu"), torch.float32)
    codes = [int(p[::-1], 2) for p in PATTERNS.values()]  # segment t is bit t
    for video, code in enumerate(codes):
        used = weights[video] != 0  # [T, 3]
        for block in range(3):
            rows, row_weights = table.coefficients[code, block::3], table.weights[code, :, block]
            direct = int(used[:, block].sum())
            assert torch.equal(rows[:direct], coefficients[video, used[:, block], block])
            assert torch.equal(row_weights[:direct], weights[video, used[:, block], block])
            assert not rows[direct:].any() and not row_weights[direct:].any()
    assert table.coefficients.shape[1:] == (3 * 6, 10) and table.weights.shape[1:] == (6, 3)  # same for every batch


@pytest.mark.parametrize("segments", [1, 2, 5, 10])
def test_the_host_row_count_is_the_most_rows_a_pattern_uses(segments):
    every_pattern = torch.where((torch.arange(2**segments).unsqueeze(1) >> torch.arange(segments)) & 1 == 1, 0, BG)
    _, weights = by_row(*lss_coefficients(every_pattern))
    assert most_rows(segments) == (weights != 0).sum(1).max()


def test_zero_norms_have_zero_subgradient_like_the_reference(torch_backend):
    # Land [x, x]: its halves and its shore's anchor-positive distance are exactly 0; the sea is distinct and
    # a large margin keeps the shore hinge active, so the zero norms sit inside the gradient.
    x, y, z = torch.randn(3, 4)
    features = torch.stack([x, x, y, z]).unsqueeze(0)
    labels = torch.tensor([[5, 5, BG, BG]])
    assert_matches_reference(features, labels, margin=100.0)
    constant, labels = torch.ones(2, 10, 4), torch.tensor([pattern_labels("0011100110")] * 2)
    loss, grad = loss_and_grad(LSSLoss(), constant, labels)  # every distance 0: only the 4 shores' margins
    assert loss.item() == pytest.approx(1.0) and torch.equal(grad, torch.zeros_like(grad))


def test_torch_path_passes_float64_gradcheck():
    torch.manual_seed(0)
    labels = torch.tensor([pattern_labels(p) for p in ("0011111000", "1101110110", "0000111111")])
    features = torch.randn(3, 10, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: lss_torch(f, labels, 1.5), (features,))


def backward_nodes(loss: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind `loss`."""
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


def test_cpu_tensors_take_the_torch_path_by_default(monkeypatch):
    monkeypatch.delenv("AVEL_FAST_BACKEND", raising=False)
    features = torch.randn(2, 10, 3, requires_grad=True)
    assert "LandShoreSeaBackward" in backward_nodes(LSSLoss()(features, random_labels(2, 10)))


def test_reference_backend_runs_the_reference_loop(monkeypatch):
    monkeypatch.setenv("AVEL_FAST_BACKEND", "reference")
    features = torch.randn(2, 10, 3, requires_grad=True)
    assert "LinalgVectorNormBackward0" in backward_nodes(LSSLoss()(features, random_labels(2, 10, 0.2)))


@pytest.mark.parametrize("features_shape,labels,message", [
    ((2, 10), torch.full((2, 10), BG), r"features must have shape \[B, T, D\]"),
    ((2, 0, 3), torch.full((2, 0), BG), r"features must have shape \[B, T, D\] with B, T >= 1, got \[2, 0, 3\]"),
    ((2, 10, 3), torch.full((2, 9), BG), r"labels must have shape \[2, 10\]"),
    ((2, 10, 3), torch.full((2, 10), 28.0), "labels must be integer class indices"),
    ((2, 10, 3), torch.full((2, 10), 29), r"labels must lie in 0\.\.28"),
])
def test_bad_input_is_rejected(torch_backend, features_shape, labels, message):
    with pytest.raises(ValueError, match=message):
        LSSLoss()(torch.randn(features_shape), labels)


@pytest.mark.parametrize("check_labels,expected", [(True, [True, False, False]), (False, [False, False, False])])
def test_the_label_range_is_read_on_the_first_call_only(torch_backend, monkeypatch, check_labels, expected):
    checks = []
    check = reference.lss.check_lss_input
    monkeypatch.setattr(reference.lss, "check_lss_input", lambda *args, values: checks.append(values) or check(*args))
    loss = LSSLoss(check_labels=check_labels)
    for _ in range(3):
        loss(torch.randn(2, 10, 3), random_labels(2, 10))
    assert checks == expected


def test_a_failed_first_check_is_repeated(torch_backend):
    loss, features = LSSLoss(), torch.randn(2, 10, 3)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"labels must lie in 0\.\.28"):
            loss(features, torch.full((2, 10), -1))
    loss(features, random_labels(2, 10))


def test_torch_compile_gives_the_same_result(torch_backend):
    # aot_eager runs Dynamo and AOTAutograd; the label check reads label values (a graph break), the rest traces.
    torch.manual_seed(0)
    compiled = torch.compile(LSSLoss(), backend="aot_eager")
    assert_matches_reference(torch.randn(8, 10, 5), random_labels(8, 10), loss_fn=compiled)


def test_bf16_features_under_autocast_are_computed_in_fp32(torch_backend):
    # The loss is the fp32 loss of the bf16 values (autocast off inside); their gradient is rounded to bf16.
    torch.manual_seed(0)
    features, labels = torch.randn(8, 10, 16).bfloat16(), random_labels(8, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grad = loss_and_grad(LSSLoss(), features, labels)
    want_loss, want_grad = loss_and_grad(reference.LSSLoss(), features.float(), labels)
    assert loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, want_loss, rtol=1e-4, atol=0)
    torch.testing.assert_close(grad.float(), want_grad, rtol=1e-2, atol=1e-2 * want_grad.abs().max().item())


def check_triton_matches_reference() -> None:
    """Under TRITON_INTERPRET=1 with AVEL_FAST_BACKEND=triton: the kernels on tiny fp32 shapes."""
    labels = torch.tensor([pattern_labels(p, event) for event, p in enumerate(PATTERNS.values())])
    torch.manual_seed(0)
    assert_matches_reference(torch.randn(len(PATTERNS), 10, 6), labels, margin=3.0)
    for videos, segments, dim in [(5, 10, 70), (4, 1, 3), (4, 2, 5), (3, 7, 16), (3, 17, 4)]:  # 70: two column blocks
        torch.manual_seed(videos * segments + dim)
        assert_matches_reference(torch.randn(videos, segments, dim), random_labels(videos, segments), margin=2.0)
    x, y, z = torch.randn(3, 4)
    assert_matches_reference(torch.stack([x, x, y, z]).unsqueeze(0), torch.tensor([[5, 5, BG, BG]]), margin=100.0)
    strided = torch.randn(3, 8, 10).transpose(1, 2)
    assert_matches_reference(strided, random_labels(3, 10).t().contiguous().t(), margin=1.0)
    features = torch.randn(2, 10, 3, requires_grad=True)
    assert "GeneratedBackwardFor_avel_fast_lss_forward_defaultBackward" in backward_nodes(
        LSSLoss()(features, random_labels(2, 10))
    )


def check_opcheck() -> None:
    """`torch.library.opcheck` (schema, fake tensors, autograd registration, AOT dispatch with dynamic shapes)."""
    from avel_fast.kernels import lss as kernels

    torch.manual_seed(0)
    features, labels = torch.randn(3, 10, 5), random_labels(3, 10)
    torch.library.opcheck(torch.ops.avel_fast.lss_forward.default, (features.requires_grad_(), labels, 2.0))
    norms = kernels.lss_forward(features.detach(), labels, 2.0)[1]
    torch.library.opcheck(torch.ops.avel_fast.lss_backward.default, (torch.randn(3), features.detach(), labels, norms, 2.0))


def check_compile_captures_the_loss() -> None:
    """``torch.compile(fullgraph=True)`` (``aot_eager``) captures the Triton loss after its first (checking) call:
    the same loss and gradient as eager."""
    torch.manual_seed(0)
    features, labels = torch.randn(4, 10, 6), random_labels(4, 10)
    loss = LSSLoss(2.0)
    want = loss_and_grad(loss, features, labels)  # the first call reads the label range
    got = loss_and_grad(torch.compile(loss, fullgraph=True, backend="aot_eager"), features, labels)
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=0)
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-7)


def test_triton_kernels_under_interpreter():
    run_interpreted("test_lss", "check_triton_matches_reference", "check_opcheck", "check_compile_captures_the_loss")


def test_paper_shape_kernels_compile_for_sm90_without_spills(monkeypatch):
    """48 videos, T = 10, D = 768, fp32 and bf16 features: both kernels, launched as the operators launch them,
    lower to sm_90 machine code with no spill and at least 2 resident CTAs per SM."""
    pytest.importorskip("triton")
    from _sm90 import paper_launch, sm90_usage

    from avel_fast.kernels import lss as kernels

    labels = torch.zeros(48, 10, dtype=torch.int64)
    for dtype in (torch.float32, torch.bfloat16):
        features = torch.empty(48, 10, 768, dtype=dtype)
        norms = torch.empty(48, 3, 16)
        launches = {
            "lss_forward_kernel": (kernels.lss_forward, features, labels, 1.0),
            "lss_backward_kernel": (kernels.lss_backward, torch.empty(48), features, labels, norms, 1.0),
        }
        for name, (launch, *args) in launches.items():
            grid, args, kwargs = paper_launch(monkeypatch, kernels, name, launch, *args)
            assert grid == (48,)
            usage = sm90_usage(getattr(kernels, name), *args, **kwargs)
            assert usage["spill_bytes"] == 0 and usage["ctas_per_sm"] >= 2, (name, dtype, usage)


@needs_cuda
def test_triton_matches_reference_cuda():
    torch.manual_seed(0)
    features = torch.randn(48, 10, 768, device="cuda")
    labels = random_labels(48, 10).cuda()
    assert_matches_reference(features, labels, margin=2.0)
    assert_matches_reference(features, labels, margin=2.0, loss_fn=torch.compile(LSSLoss(2.0)))
    loss, grad = loss_and_grad(LSSLoss(), features.bfloat16(), labels)
    want_loss, want_grad = loss_and_grad(reference.LSSLoss(), features.bfloat16().float(), labels)
    torch.testing.assert_close(loss, want_loss, rtol=1e-4, atol=0)
    torch.testing.assert_close(grad.float(), want_grad, rtol=1e-2, atol=1e-2 * want_grad.abs().max().item())
