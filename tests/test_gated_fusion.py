"""The fast GatedFusion (avel_fast.nn.GatedFusion) against the reference: torch path, Triton kernels, dispatch,
compile, bf16.

Functions named ``check_*`` run the Triton kernels through Triton's CPU interpreter in a subprocess
(`_interpret.run_interpreted`); the ``*_cuda`` tests run them on a GPU and skip without one.
"""
from __future__ import annotations

import pytest
import torch

from _interpret import run_interpreted
from _sync_probe import SyncProbe
from avel_fast import reference
from avel_fast.nn import GatedFusion
from avel_fast.nn.fusion import GatedFusionFunction

# (videos, segments, dim, kernel size): DPNet (k=1) and EDRNet (k=3) gates, one segment, a kernel wider than T
SHAPES = [(3, 10, 5, 1), (3, 10, 5, 3), (4, 7, 9, 1), (4, 7, 9, 3), (2, 1, 4, 3), (2, 2, 3, 5), (1, 3, 6, 7)]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def twin_modules(dim: int, kernel_size: int, **to) -> tuple[GatedFusion, reference.GatedFusion]:
    """A fast and a reference GatedFusion with the same freshly initialised parameters."""
    ref = reference.GatedFusion(dim, kernel_size).to(**to)
    fast = GatedFusion(dim, kernel_size).to(**to)
    fast.load_state_dict(ref.state_dict())
    return fast, ref


def run_with_grads(module, audio: torch.Tensor, visual: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    """Output, the gradients of audio and visual and of every parameter for ``sum(output * grad)``."""
    audio, visual = audio.detach().clone().requires_grad_(), visual.detach().clone().requires_grad_()
    parameters = list(getattr(module, "_orig_mod", module).parameters())  # compiled modules wrap the original
    output = module(audio, visual)
    return [output.detach(), *torch.autograd.grad(output, [audio, visual, *parameters], grad)]


def assert_matches_reference(fast, ref, audio, visual, rtol: float = 1e-4) -> None:
    """Output and all gradients agree within `rtol` relative to each tensor's scale."""
    grad = torch.randn_like(audio)
    names = ["output", "audio.grad", "visual.grad", "gate.weight.grad", "gate.bias.grad"]
    results = zip(names, run_with_grads(fast, audio, visual, grad), run_with_grads(ref, audio, visual, grad))
    for name, got, want in results:
        assert got.dtype == want.dtype, name
        scale = want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("videos,segments,dim,kernel_size", SHAPES)
def test_torch_path_matches_reference(torch_backend, videos, segments, dim, kernel_size):
    torch.manual_seed(videos * 100 + dim * 10 + kernel_size)
    fast, ref = twin_modules(dim, kernel_size)
    assert_matches_reference(fast, ref, torch.randn(videos, segments, dim), torch.randn(videos, segments, dim))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_torch_path_matches_reference_at_paper_sizes(torch_backend, kernel_size):
    torch.manual_seed(kernel_size)
    fast, ref = twin_modules(768, kernel_size)
    assert_matches_reference(fast, ref, torch.randn(2, 10, 768), torch.randn(2, 10, 768))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_torch_path_takes_an_empty_batch(torch_backend, kernel_size):
    fast, ref = twin_modules(4, kernel_size)
    audio, visual = torch.randn(0, 10, 4), torch.randn(0, 10, 4)
    grad = torch.randn(0, 10, 4)
    for got, want in zip(run_with_grads(fast, audio, visual, grad), run_with_grads(ref, audio, visual, grad)):
        assert got.shape == want.shape and torch.equal(got, want)  # empty outputs, zero parameter gradients


def test_torch_path_takes_strided_inputs(torch_backend):
    # EDRNet passes the transposed outputs of its ConvTranspose1d stacks.
    torch.manual_seed(0)
    fast, ref = twin_modules(6, 3)
    audio, visual = torch.randn(2, 6, 10).transpose(1, 2), torch.randn(2, 6, 10).transpose(1, 2)
    assert_matches_reference(fast, ref, audio, visual)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_torch_path_passes_float64_gradcheck(kernel_size):
    torch.manual_seed(kernel_size)
    weight = torch.randn(3, 6, kernel_size, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    audio, visual = (torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(GatedFusionFunction.apply, (audio, visual, weight, bias))


def assert_sync_free(module: GatedFusion) -> None:
    """A forward+backward records no op that would synchronise with a CUDA device (`_sync_probe`)."""
    audio, visual = (torch.randn(2, 5, module.dim, requires_grad=True) for _ in range(2))
    with SyncProbe() as probe:
        module(audio, visual).sum().backward()
    assert probe.records == []


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_torch_path_does_not_synchronise(torch_backend, kernel_size):
    assert_sync_free(GatedFusion(4, kernel_size))


def test_cpu_tensors_take_the_torch_path_by_default(monkeypatch):
    monkeypatch.delenv("AVEL_FAST_BACKEND", raising=False)
    fast, _ = twin_modules(4, 3)
    assert type(fast(torch.randn(2, 5, 4), torch.randn(2, 5, 4)).grad_fn).__name__ == "GatedFusionFunctionBackward"


def test_reference_backend_runs_the_reference(monkeypatch):
    monkeypatch.setenv("AVEL_FAST_BACKEND", "reference")
    fast, _ = twin_modules(4, 1)
    assert type(fast(torch.randn(2, 5, 4), torch.randn(2, 5, 4)).grad_fn).__name__ == "AddBackward0"


@pytest.mark.parametrize(
    "audio_shape,visual_shape", [((2, 5, 4), (2, 5, 3)), ((2, 5, 3), (2, 5, 3)), ((10, 4), (10, 4))]
)
def test_wrong_shapes_are_rejected(torch_backend, audio_shape, visual_shape):
    with pytest.raises(ValueError, match=r"audio and visual must both have shape \[B, T, 4\]"):
        GatedFusion(4)(torch.randn(audio_shape), torch.randn(visual_shape))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_torch_compile_gives_the_same_result(torch_backend, kernel_size):
    # aot_eager runs Dynamo and AOTAutograd through the custom autograd.Function without inductor's C++ build.
    torch.manual_seed(kernel_size)
    fast, ref = twin_modules(6, kernel_size)
    compiled = torch.compile(fast, backend="aot_eager", fullgraph=True)
    assert_matches_reference(compiled, ref, torch.randn(3, 10, 6), torch.randn(3, 10, 6))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_bf16_autocast_matches_reference_loosely(torch_backend, kernel_size):
    # bf16 GEMMs and gate (8 mantissa bits): compare with the reference under the same autocast at 2 %.
    torch.manual_seed(kernel_size)
    fast, ref = twin_modules(16, kernel_size)
    audio, visual = torch.randn(3, 10, 16), torch.randn(3, 10, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert_matches_reference(fast, ref, audio, visual, rtol=2e-2)


def check_triton_matches_reference() -> None:
    """Under TRITON_INTERPRET=1 with AVEL_FAST_BACKEND=triton: the kernels on tiny fp32 shapes."""
    for videos, segments, dim, kernel_size in SHAPES + [(2, 3, 1030, 3)]:  # 1030: two column blocks
        torch.manual_seed(videos + segments + dim + kernel_size)
        fast, ref = twin_modules(dim, kernel_size)
        assert_matches_reference(fast, ref, torch.randn(videos, segments, dim), torch.randn(videos, segments, dim))
    fast, _ = twin_modules(4, 3)
    assert "avel_fast_gated_fusion_forward" in type(fast(torch.randn(2, 5, 4), torch.randn(2, 5, 4)).grad_fn).__name__
    assert_sync_free(fast)


def check_custom_ops() -> None:
    """`torch.library.opcheck` (schema, autograd registration, fake implementation, AOT dispatch) of both ops."""
    for kernel_size in (1, 3):
        audio, visual = torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True)
        weight, bias = torch.randn(4, 8, kernel_size, requires_grad=True), torch.randn(4, requires_grad=True)
        torch.library.opcheck(torch.ops.avel_fast.gated_fusion_forward.default,
                              (audio, visual, weight, bias, torch.float32))
        inputs = [tensor.detach() for tensor in (torch.randn(2, 3, 4), audio, visual, weight)]
        torch.library.opcheck(torch.ops.avel_fast.gated_fusion_backward.default, (*inputs, torch.rand(6, 4)))


def test_triton_kernels_under_interpreter():
    run_interpreted("test_gated_fusion", "check_triton_matches_reference", "check_custom_ops")


@needs_cuda
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_triton_matches_reference_cuda(monkeypatch, kernel_size):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the reference's conv in true fp32
    torch.manual_seed(kernel_size)
    fast, ref = twin_modules(768, kernel_size, device="cuda")
    audio, visual = torch.randn(48, 10, 768, device="cuda"), torch.randn(48, 10, 768, device="cuda")
    assert_matches_reference(fast, ref, audio, visual)
    assert_matches_reference(torch.compile(fast), ref, audio, visual)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert_matches_reference(fast, ref, audio, visual, rtol=2e-2)
