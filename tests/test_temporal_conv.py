"""The fast TemporalConv + Swish (avel_fast.nn.TemporalConv) and DPBlock against the reference: torch path, Triton
kernels, dispatch, compile, bf16.

Functions named ``check_*`` run the Triton kernels through Triton's CPU interpreter in a subprocess
(`_interpret.run_interpreted`); the ``*_cuda`` tests run them on a GPU and skip without one.
"""
from __future__ import annotations

import pytest
import torch

from _interpret import run_interpreted
from _sync_probe import SyncProbe
from avel_fast import reference
from avel_fast.backend import triton_interpreted
from avel_fast.nn import DPBlock, RGCT, TemporalConv
from avel_fast.nn.dpnet import TemporalConvSwish, spread_taps, sum_taps

# (videos, segments, in_dim, out_dim, kernel size): DPNet's k=3, one segment, kernels wider than T
SHAPES = [(3, 10, 5, 7, 3), (4, 7, 9, 4, 3), (2, 1, 4, 4, 3), (2, 2, 3, 3, 5), (4, 6, 8, 5, 1), (1, 3, 2, 6, 7)]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def twin_modules(in_dim: int, out_dim: int, kernel_size: int = 3, **to) -> tuple[TemporalConv, reference.TemporalConv]:
    """A fast and a reference TemporalConv with the same freshly initialised parameters."""
    ref = reference.TemporalConv(in_dim, out_dim, kernel_size).to(**to)
    fast = TemporalConv(in_dim, out_dim, kernel_size).to(**to)
    fast.load_state_dict(ref.state_dict())
    return fast, ref


def run_with_grads(module, x: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    """Output, the gradients of x and of every parameter for ``sum(output * grad)``."""
    x = x.detach().clone().requires_grad_()
    parameters = list(getattr(module, "_orig_mod", module).parameters())  # compiled modules wrap the original
    output = module(x)
    return [output.detach(), *torch.autograd.grad(output, [x, *parameters], grad.to(output.dtype))]


def assert_matches_reference(fast, ref, x: torch.Tensor, rtol: float = 1e-4) -> None:
    """Output and all gradients agree within `rtol` relative to each tensor's scale."""
    grad = torch.randn(*x.shape[:3], ref.audio.out_channels, device=x.device)
    names = ["output", "x.grad", "audio.weight.grad", "audio.bias.grad", "visual.weight.grad", "visual.bias.grad"]
    for name, got, want in zip(names, run_with_grads(fast, x, grad), run_with_grads(ref, x, grad)):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{name}: {m}")


def test_tap_sum_and_spread_are_a_shifted_conv_and_its_adjoint():
    # Taps coded as 100·t + j: output t of a k=3 conv sums tap 0 of t−1, tap 1 of t and tap 2 of t+1.
    segments, kernel_size = 4, 3
    taps = (100.0 * torch.arange(segments).view(-1, 1, 1) + torch.arange(kernel_size).view(1, -1, 1)).double()
    summed = sum_taps(taps, torch.empty(segments, 1, dtype=torch.float64))
    assert summed.view(-1).tolist() == [1 + 102, 0 + 101 + 202, 100 + 201 + 302, 200 + 301]
    grad = torch.randn(segments, 1, dtype=torch.float64)
    assert torch.allclose((spread_taps(grad, kernel_size) * taps).sum(), (grad * summed).sum())


@pytest.mark.parametrize("videos,segments,in_dim,out_dim,kernel_size", SHAPES)
def test_torch_path_matches_reference(torch_backend, videos, segments, in_dim, out_dim, kernel_size):
    torch.manual_seed(videos * 100 + in_dim * 10 + kernel_size)
    fast, ref = twin_modules(in_dim, out_dim, kernel_size)
    assert_matches_reference(fast, ref, torch.randn(videos, 2, segments, in_dim))


def test_torch_path_matches_reference_at_paper_sizes(torch_backend):
    torch.manual_seed(0)
    fast, ref = twin_modules(768, 768)
    assert_matches_reference(fast, ref, torch.randn(2, 2, 10, 768))


def test_torch_path_passes_float64_gradcheck():
    torch.manual_seed(0)
    fast = TemporalConv(3, 2).double()
    x = torch.randn(2, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    parameters = (fast.audio.weight, fast.visual.weight, fast.audio.bias, fast.visual.bias)
    assert torch.autograd.gradcheck(TemporalConvSwish.apply, (x, *parameters))


def assert_sync_free(module: TemporalConv) -> None:
    """A forward+backward records no op that would synchronise with a CUDA device (`_sync_probe`)."""
    x = torch.randn(2, 2, 5, module.audio.in_channels, requires_grad=True)
    with SyncProbe() as probe:
        module(x).sum().backward()
    assert probe.records == []


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_torch_path_does_not_synchronise(torch_backend, kernel_size):
    assert_sync_free(TemporalConv(4, 3, kernel_size))


def test_dpblock_is_built_from_the_fast_modules(torch_backend):
    torch.manual_seed(0)
    ref = reference.DPBlock(5, 4).eval()
    fast = DPBlock(5, 4).eval()
    fast.load_state_dict(ref.state_dict())
    assert type(fast.rgct) is RGCT and type(fast.tcn) is TemporalConv
    x = torch.randn(4, 2, 10, 5)
    torch.testing.assert_close(fast(x, 2), ref(x, 2))


def test_reference_backend_runs_the_reference(monkeypatch):
    monkeypatch.setenv("AVEL_FAST_BACKEND", "reference")
    fast, _ = twin_modules(4, 3)
    assert type(fast(torch.randn(2, 2, 5, 4)).grad_fn).__name__ == "SiluBackward0"


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 2, 5, 3), (2, 5, 4)])
def test_wrong_shapes_are_rejected(torch_backend, shape):
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2, T, 4\]"):
        TemporalConv(4, 3)(torch.randn(shape))


def test_torch_compile_gives_the_same_result(torch_backend):
    # aot_eager runs Dynamo and AOTAutograd through the custom autograd.Function without inductor's C++ build.
    torch.manual_seed(0)
    fast, ref = twin_modules(6, 5)
    assert_matches_reference(torch.compile(fast, backend="aot_eager", fullgraph=True), ref, torch.randn(3, 2, 10, 6))


def test_bf16_autocast_matches_reference_loosely(torch_backend):
    # bf16 GEMM, bias and output (8 mantissa bits), as the reference's Conv1d under autocast: compare at 2 %.
    torch.manual_seed(0)
    fast, ref = twin_modules(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert_matches_reference(fast, ref, torch.randn(3, 2, 10, 16), rtol=2e-2)


def check_triton_matches_reference() -> None:
    """Under TRITON_INTERPRET=1 with AVEL_FAST_BACKEND=triton: the kernels on tiny fp32 shapes."""
    for videos, segments, in_dim, out_dim, kernel_size in SHAPES + [(2, 3, 4, 1030, 3)]:  # 1030: two column blocks
        torch.manual_seed(videos + segments + in_dim + kernel_size)
        fast, ref = twin_modules(in_dim, out_dim, kernel_size)
        assert_matches_reference(fast, ref, torch.randn(videos, 2, segments, in_dim))
    fast, _ = twin_modules(4, 3)
    assert "avel_fast_temporal_conv_forward" in type(fast(torch.randn(2, 2, 5, 4)).grad_fn).__name__
    assert_sync_free(fast)


def check_custom_ops() -> None:
    """`torch.library.opcheck` (schema, autograd registration, fake implementation, AOT dispatch) of both ops."""
    forward, backward = torch.ops.avel_fast.temporal_conv_forward.default, torch.ops.avel_fast.temporal_conv_backward
    for needs_x in (True, False):
        x = torch.randn(2, 2, 3, 4, requires_grad=needs_x)
        weights = [torch.randn(3, 4, 3, requires_grad=True) for _ in range(2)] + [torch.randn(3) for _ in range(2)]
        torch.library.opcheck(forward, (x, *weights, torch.float32))
    x, pre = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 3)
    for flags in [(True, True), (True, False), (False, True)]:
        args = (torch.randn(2, 2, 3, 3), x, *[weight.detach() for weight in weights], pre, *flags)
        torch.library.opcheck(backward.default, args)
        assert len(backward(*args)) == 1 * flags[0] + 2 * flags[1]


def test_triton_kernels_under_interpreter():
    run_interpreted("test_temporal_conv", "check_triton_matches_reference", "check_custom_ops")


@needs_cuda
def test_triton_matches_reference_cuda(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the reference's conv in true fp32
    torch.manual_seed(0)
    fast, ref = twin_modules(768, 768, device="cuda")
    x = torch.randn(48, 2, 10, 768, device="cuda")
    assert_matches_reference(fast, ref, x)
    assert_matches_reference(torch.compile(fast), ref, x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert_matches_reference(fast, ref, x, rtol=2e-2)


def test_triton_kernels_lower_to_sm90_machine_code():
    """Both kernels compile to H100 (sm_90) cubins without a GPU (what the interpreter cannot check)."""
    triton = pytest.importorskip("triton")
    if triton_interpreted():
        pytest.skip("TRITON_INTERPRET=1 replaces the compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from avel_fast.kernels import temporal_conv as kernels

    constants = {"KERNEL_SIZE": 3, "BLOCK": kernels.column_block(768)}
    for kernel in (kernels.temporal_conv_swish_forward_kernel, kernels.temporal_conv_swish_backward_kernel):
        signature = {
            name: "constexpr" if name in constants else "*bf16" if name.endswith("_ptr") else "i32"
            for name in kernel.arg_names
        }
        compiled = triton.compile(ASTSource(kernel, signature, constexprs=constants), target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"]
