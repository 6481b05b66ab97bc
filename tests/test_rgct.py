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
from avel_fast.backend import triton_interpreted
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


def attention_inputs(device: str) -> list[torch.Tensor]:
    """Leaf inputs of `RelationalAttention`: wide GEMM output, projections, key and value biases (G = 2)."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(4, 2, 5, 7 * 40), (2, 2, 5, 6, 40), (6, 40), (6, 40)]
    return [torch.randn(shape, generator=generator).to(device).requires_grad_() for shape in shapes]


def attention(inputs: list[torch.Tensor], drop_p: float, seed: int) -> torch.Tensor:
    from avel_fast.kernels.rgct import RelationalAttention

    torch.manual_seed(seed)
    return RelationalAttention.apply(*inputs, 2, drop_p)


def check_triton_dropout(device: str = "cpu"):
    """In-kernel dropout: the kept fraction is 1-p, kept entries are NĀ/(1-p), one seed gives one mask, and the
    backward uses the forward's mask (gradients of ``Swish(pre) + mask·NĀ/(1-p)`` with NĀ from p = 0)."""
    drop_p = 0.3
    inputs = attention_inputs(device)
    dropped, plain = attention(inputs, drop_p, seed=1), attention(inputs, 0.0, seed=1)
    hidden = F.silu(inputs[0][..., 6 * 40 :])
    kept = (dropped - hidden).detach().abs() > 1e-5
    assert abs(kept.float().mean().item() - (1 - drop_p)) < 0.05
    expected = hidden + kept * (plain - hidden) / (1 - drop_p)
    torch.testing.assert_close(dropped, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(attention(inputs, drop_p, seed=1), dropped)
    assert not torch.equal(attention(inputs, drop_p, seed=2), dropped)
    grad = torch.randn_like(dropped)
    for got, want in zip(torch.autograd.grad(dropped, inputs, grad), torch.autograd.grad(expected, inputs, grad)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_triton_kernels_lower_to_sm90_machine_code():
    """Both kernels compile to H100 (sm_90) cubins without a GPU, so CI catches what the interpreter cannot
    (layouts, register allocation, bf16 loads)."""
    triton = pytest.importorskip("triton")
    if triton_interpreted():
        pytest.skip("TRITON_INTERPRET=1 replaces the compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from avel_fast.kernels import rgct as kernels

    block_group, block_dim = kernels.launch_config(2, 768)
    constants = {"BLOCK_G": block_group, "BLOCK_D": block_dim, "DROPOUT": True}
    scalars = {"scale": "fp32", "drop_p": "fp32", "drop_scale": "fp32"}
    float32_buffers = ("key_bias_ptr", "value_bias_ptr", "attention_ptr", "grad_scores_ptr", "grad_aggregated_ptr")

    def argument_type(name: str) -> str:
        if name in constants:
            return "constexpr"
        if name.endswith("_ptr"):
            return "*fp32" if name in float32_buffers else "*bf16"
        return scalars.get(name, "i32")

    for kernel in (kernels._attention_forward, kernels._attention_backward):
        signature = {name: argument_type(name) for name in kernel.arg_names}
        compiled = triton.compile(ASTSource(kernel, signature, constexprs=constants), target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"]


def test_triton_kernels_under_the_interpreter():
    run_interpreted("test_rgct", "check_triton_matches_reference", "check_triton_dropout")


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
