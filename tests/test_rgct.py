"""The fast RGCT (avel_fast.nn.RGCT) against the reference: torch path, Triton kernels, dispatch, compile, bf16.

Functions named ``check_*`` run the Triton kernels through Triton's CPU interpreter in a subprocess
(`_interpret.run_interpreted`); the ``*_cuda`` tests run them on a GPU and skip without one.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import avel_fast.nn.rgct as fast_rgct
from _interpret import run_interpreted
from avel_fast import reference
from avel_fast.nn import RGCT

# (videos, steps, in_dim, out_dim, group size): odd sizes, one time step, and chunked D in the kernels
SHAPES = [(6, 7, 9, 5, 1), (6, 7, 9, 5, 2), (6, 7, 9, 5, 3), (2, 1, 4, 3, 1), (4, 3, 6, 130, 1), (6, 4, 5, 40, 3)]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def twin_modules(in_dim: int, out_dim: int, dropout: float = 0.2, **to) -> tuple[RGCT, reference.RGCT]:
    """A fast RGCT and a reference RGCT with the same freshly initialised parameters."""
    ref = reference.RGCT(in_dim, out_dim, dropout).to(**to)
    fast = RGCT(in_dim, out_dim, dropout).to(**to)
    fast.load_state_dict(ref.state_dict())
    return fast, ref


def run_with_grads(module, x: torch.Tensor, group_size: int, grad: torch.Tensor):
    """Output, gradient of `x` and gradients of every parameter (by name) for ``sum(output * grad)``."""
    x = x.detach().clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    output = module(x, group_size)
    output.backward(grad)
    parameters = getattr(module, "_orig_mod", module).named_parameters()  # compiled modules wrap the original
    return output.detach(), x.grad, {name: p.grad for name, p in parameters}


def assert_matches_reference(fast, ref, x: torch.Tensor, group_size: int, rtol: float = 1e-4) -> None:
    """Output, input gradient and all parameter gradients agree within `rtol` relative to each tensor's scale."""
    grad = torch.randn(x.shape[0], 2, x.shape[2], ref.out_dim, dtype=x.dtype, device=x.device)
    actual, expected = run_with_grads(fast, x, group_size, grad), run_with_grads(ref, x, group_size, grad)
    pairs = [("output", actual[0], expected[0]), ("x.grad", actual[1], expected[1])]
    pairs += [(f"{name}.grad", actual[2][name], expected[2][name]) for name in expected[2]]
    for name, got, want in pairs:
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("videos,steps,in_dim,out_dim,group_size", SHAPES)
def test_torch_path_matches_reference(torch_backend, videos, steps, in_dim, out_dim, group_size):
    torch.manual_seed(videos * 1000 + out_dim * 10 + group_size)
    fast, ref = twin_modules(in_dim, out_dim)
    fast.eval(), ref.eval()
    assert_matches_reference(fast, ref, torch.randn(videos, 2, steps, in_dim), group_size)


def test_torch_path_matches_reference_at_paper_sizes(torch_backend):
    torch.manual_seed(0)
    fast, ref = twin_modules(512, 768, dropout=0.0)
    assert_matches_reference(fast, ref, torch.randn(4, 2, 10, 512), group_size=2)


def test_torch_path_parameter_gradients_without_input_gradient(torch_backend):
    fast, ref = twin_modules(9, 5)
    fast.eval(), ref.eval()
    x = torch.randn(6, 2, 7, 9)
    fast(x, 3).sum().backward()
    ref(x, 3).sum().backward()
    for (name, got), want in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("group_size", [1, 2])
def test_torch_path_passes_float64_gradcheck(torch_backend, group_size):
    torch.manual_seed(group_size)
    fast = RGCT(3, 2).double().eval()
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *params: fast(x, group_size), (x, *fast.parameters()))


@pytest.mark.parametrize("group_size", [1, 3])
def test_torch_path_draws_the_reference_dropout_mask(torch_backend, group_size):
    fast, ref = twin_modules(9, 5, dropout=0.4)
    x = torch.randn(6, 2, 7, 9)
    grad = torch.randn(6, 2, 7, 5)
    torch.manual_seed(11)
    expected = run_with_grads(ref, x, group_size, grad)
    torch.manual_seed(11)
    actual = run_with_grads(fast, x, group_size, grad)
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(actual[1], expected[1], rtol=1e-4, atol=1e-5)
    for name, want in expected[2].items():
        torch.testing.assert_close(actual[2][name], want, rtol=1e-4, atol=1e-5)
    assert not torch.equal(actual[0], run_with_grads(fast, x, group_size, grad)[0])  # the mask is random


@pytest.mark.parametrize("backend,fast_path_runs", [("torch", True), ("reference", False)])
def test_backend_override_decides_the_path(monkeypatch, backend, fast_path_runs):
    calls = []
    monkeypatch.setattr(fast_rgct, "rgct_torch", lambda *args: calls.append(args) or torch.zeros(1))
    monkeypatch.setenv("AVEL_FAST_BACKEND", backend)
    fast, ref = twin_modules(4, 3)
    fast.eval(), ref.eval()
    x = torch.randn(2, 2, 3, 4)
    output = fast(x)
    assert bool(calls) == fast_path_runs
    if not fast_path_runs:
        assert torch.equal(output, ref(x))


def test_triton_backend_on_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("AVEL_FAST_BACKEND", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        RGCT(4, 3)(torch.randn(2, 2, 3, 4))


def test_rejects_input_of_the_wrong_shape(torch_backend):
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2, T, 4\]"):
        RGCT(4, 3)(torch.randn(2, 3, 3, 4))


def test_rejects_a_group_size_that_does_not_divide_the_batch(torch_backend):
    with pytest.raises(ValueError, match="group_size=2 does not divide the batch size 3"):
        RGCT(4, 3)(torch.randn(3, 2, 3, 4), group_size=2)


def test_rejects_a_group_size_that_is_not_a_positive_int(torch_backend):
    with pytest.raises(ValueError, match="group_size must be a positive int"):
        RGCT(4, 3)(torch.randn(2, 2, 3, 4), group_size=0)


@pytest.mark.parametrize("group_size", [1, 2])
def test_torch_path_compiles_without_graph_breaks(torch_backend, group_size):
    """`torch.compile` traces the whole torch path (the autograd.Function included) into one graph; the
    ``aot_eager`` backend checks tracing and the compiled backward without paying for code generation."""
    torch._dynamo.reset()
    fast, ref = twin_modules(9, 5)
    fast.eval(), ref.eval()
    x = torch.randn(4, 2, 5, 9)
    explanation = torch._dynamo.explain(fast)(x, group_size)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)
    assert_matches_reference(torch.compile(fast, backend="aot_eager"), ref, x, group_size)


def test_torch_path_under_bf16_autocast_tracks_the_reference(torch_backend):
    """bf16 keeps 8 bits of mantissa: outputs within 3 % of their scale, gradients within 5 %."""
    torch.manual_seed(5)
    fast, ref = twin_modules(16, 12)
    fast.eval(), ref.eval()
    x = torch.randn(4, 2, 5, 16)
    grad = torch.randn(4, 2, 5, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = run_with_grads(fast, x, 2, grad)
    expected = run_with_grads(ref, x, 2, grad)
    assert actual[0].dtype == torch.bfloat16
    torch.testing.assert_close(actual[0].float(), expected[0], rtol=0, atol=0.03 * expected[0].abs().max().item())
    for name, want in expected[2].items():
        assert actual[2][name].dtype == torch.float32
        torch.testing.assert_close(actual[2][name], want, rtol=0, atol=0.05 * want.abs().max().item())


def check_triton_matches_reference():
    for videos, steps, in_dim, out_dim, group_size in SHAPES:
        torch.manual_seed(videos * 1000 + out_dim * 10 + group_size)
        fast, ref = twin_modules(in_dim, out_dim)
        fast.eval(), ref.eval()
        assert_matches_reference(fast, ref, torch.randn(videos, 2, steps, in_dim), group_size)


def op_inputs(device: str = "cpu") -> list[torch.Tensor]:
    """Leaf inputs of ``avel_fast::rgct_forward`` (x, then W_q, b_q, W_k, b_k, W_v, b_v, W_1, b_1) for
    B = 4, T = 5, D_in = 9, D = 40, G = 2."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(4, 2, 5, 9), (240, 9), (240,), (240, 9), (240,), (240, 9), (240,), (40, 9), (40,)]
    return [torch.randn(shape, generator=generator).to(device).requires_grad_() for shape in shapes]


def rgct_op(inputs: list[torch.Tensor], drop_p: float, seed: int) -> tuple[torch.Tensor, ...]:
    return torch.ops.avel_fast.rgct_forward(*inputs, torch.tensor(seed, device=inputs[0].device), 2, drop_p)


def check_triton_dropout(device: str = "cpu"):
    """In-kernel dropout: the kept fraction is 1-p, kept entries are NĀ/(1-p), one seed gives one mask, and the
    backward uses the forward's mask (gradients of ``Swish(pre) + mask·NĀ/(1-p)`` with NĀ from p = 0)."""
    import avel_fast.kernels.rgct  # noqa: F401  (registers the operators)

    drop_p = 0.3
    inputs = op_inputs(device)
    (dropped, wide, *_), plain = rgct_op(inputs, drop_p, seed=1), rgct_op(inputs, 0.0, seed=1)[0]
    kept = (dropped - F.silu(wide[..., 6 * 40 :])).detach().abs() > 1e-5
    assert abs(kept.float().mean().item() - (1 - drop_p)) < 0.05
    hidden = F.silu(F.linear(inputs[0], inputs[7], inputs[8]))
    expected = hidden + kept * (plain - hidden) / (1 - drop_p)
    torch.testing.assert_close(dropped, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(rgct_op(inputs, drop_p, seed=1)[0], dropped)
    assert not torch.equal(rgct_op(inputs, drop_p, seed=2)[0], dropped)
    grad = torch.randn_like(dropped)
    for got, want in zip(torch.autograd.grad(dropped, inputs, grad), torch.autograd.grad(expected, inputs, grad)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def check_opcheck():
    """`torch.library.opcheck` (schema, fake tensors, autograd registration, AOT dispatch with dynamic shapes)
    on both operators, with dropout."""
    import avel_fast.kernels.rgct  # noqa: F401

    inputs = op_inputs()
    seed = torch.tensor(3)
    torch.library.opcheck(torch.ops.avel_fast.rgct_forward.default, (*inputs, seed, 2, 0.3))
    with torch.no_grad():
        update, wide, projections, attention = torch.ops.avel_fast.rgct_forward(*inputs, seed, 2, 0.3)
    x, q_weight, _, k_weight, k_bias, v_weight, v_bias, w1_weight, _ = (tensor.detach() for tensor in inputs)
    backward_args = (torch.randn_like(update), x, q_weight, k_weight, k_bias, v_weight, v_bias, w1_weight, wide,
                     projections, attention, seed, 2, 0.3)
    torch.library.opcheck(torch.ops.avel_fast.rgct_backward.default, backward_args)


def check_compile_captures_the_layer():
    """``torch.compile(fullgraph=True)`` (``aot_eager``) captures the Triton path, forward and backward: in eval
    mode the same output and gradients as eager; in training mode (dropout) too, from the same generator state."""
    for training in (False, True):
        torch._dynamo.reset()
        torch.manual_seed(0)
        fast, _ = twin_modules(9, 40, dropout=0.3)
        fast.train(training)
        x, grad = torch.randn(4, 2, 5, 9), torch.randn(4, 2, 5, 40)
        compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
        torch.manual_seed(1)
        want = run_with_grads(fast, x, 2, grad)
        torch.manual_seed(1)
        got = run_with_grads(compiled, x, 2, grad)
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
        for name, value in want[2].items():
            torch.testing.assert_close(got[2][name], value, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("group_size", [1, 2])
def test_paper_shape_kernels_compile_for_sm90_without_spills(monkeypatch, group_size):
    """48 videos (x G replicas), T = 10, D_in = D = 768, bf16, dropout on: both kernels, launched as
    `launch_forward` / `launch_backward` launch them, lower to sm_90 machine code with no spill and at least 4
    resident CTAs per SM (the former launch configuration reached 3)."""
    pytest.importorskip("triton")
    from _sm90 import paper_launch, sm90_usage

    from avel_fast.kernels import rgct as kernels

    batch, dim = 48 * group_size, 768
    wide = torch.empty(batch, 2, 10, 7 * dim, dtype=torch.bfloat16)
    projections = torch.empty(2, batch // group_size, 10, 6, dim, dtype=torch.bfloat16)
    biases = [torch.empty(6, dim), torch.empty(6, dim)]
    seed, attention = torch.zeros((), dtype=torch.int64), torch.empty(batch, 2, 10, 6, 6)
    launches = {
        "_attention_forward": (kernels.launch_forward, wide, projections, *biases, seed, group_size, 0.2),
        "_attention_backward": (kernels.launch_backward, torch.empty(batch, 2, 10, dim, dtype=torch.bfloat16), wide,
                                projections, *biases, seed, attention, group_size, 0.2),
    }
    for name, (launch, *args) in launches.items():
        grid, args, kwargs = paper_launch(monkeypatch, kernels, name, launch, *args)
        assert grid == (batch // group_size * 2 * 10,)
        usage = sm90_usage(getattr(kernels, name), *args, **kwargs)
        assert usage["spill_bytes"] == 0 and usage["ctas_per_sm"] >= 4, (name, usage)


@pytest.mark.parametrize(("value", "expected"), [("", {"BLOCK_G": 2, "BLOCK_D": 16, "num_warps": 4}),
                                                 ("8192,8", {"BLOCK_G": 2, "BLOCK_D": 64, "num_warps": 8})])
def test_the_launch_setting_comes_from_the_environment(monkeypatch, value, expected):
    pytest.importorskip("triton")
    from avel_fast.kernels import rgct as kernels

    monkeypatch.setenv("AVEL_FAST_RGCT_LAUNCH", value)
    assert kernels.launch_config(2, 768) == expected


@pytest.mark.parametrize("value", ["2048", "2048,3", "1000,4", "a,b"])
def test_a_malformed_launch_setting_is_refused(monkeypatch, value):
    pytest.importorskip("triton")
    from avel_fast.kernels import rgct as kernels

    monkeypatch.setenv("AVEL_FAST_RGCT_LAUNCH", value)
    with pytest.raises(ValueError, match="AVEL_FAST_RGCT_LAUNCH"):
        kernels.launch_config(2, 768)


def test_triton_kernels_under_the_interpreter():
    run_interpreted("test_rgct", "check_triton_matches_reference", "check_triton_dropout", "check_opcheck",
                    "check_compile_captures_the_layer")


@needs_cuda
@pytest.mark.parametrize("group_size", [1, 2])
def test_triton_cuda_matches_reference_at_paper_sizes(monkeypatch, group_size):
    monkeypatch.setenv("AVEL_FAST_BACKEND", "triton")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(group_size)
    fast, ref = twin_modules(768, 768, device="cuda")
    fast.eval(), ref.eval()
    assert_matches_reference(fast, ref, torch.randn(48 * group_size, 2, 10, 768, device="cuda"), group_size)


@needs_cuda
def test_triton_cuda_dropout():
    check_triton_dropout("cuda")


@needs_cuda
def test_triton_cuda_under_bf16_autocast_and_compile(monkeypatch):
    """bf16: outputs within 3 % of their scale; `torch.compile` runs with one graph break around the kernels."""
    monkeypatch.setenv("AVEL_FAST_BACKEND", "triton")
    torch.manual_seed(0)
    fast, ref = twin_modules(64, 96, device="cuda")
    fast.eval(), ref.eval()
    x = torch.randn(8, 2, 10, 64, device="cuda")
    expected = ref(x, 2)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        actual = fast(x, 2)
    torch.testing.assert_close(actual.float(), expected, rtol=0, atol=0.03 * expected.abs().max().item())
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(fast)(x, 2), expected, rtol=1e-4, atol=1e-4)
