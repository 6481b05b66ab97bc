"""The fused audio-guided attention and the fast AVE baseline / PSP against the references: torch path, Triton
kernels (through Triton's CPU interpreter, functions ``check_*``; on a GPU, ``*_cuda``), dispatch and bad input.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import avel_fast.nn.attention as fast_attention
from _interpret import run_interpreted
from _sync_probe import SyncProbe
from avel_fast import models, reference
from avel_fast.backend import triton_interpreted
from avel_fast.nn import AudioGuidedAttention, patch, unpatch
from avel_fast.reference.ave import attention_epilogue

# (rows, locations L, width D, channels C): odd sizes, a single location, C across several channel blocks
EPILOGUE_SHAPES = [(3, 5, 3, 7), (2, 49, 49, 130), (1, 1, 1, 1), (4, 7, 9, 257)]
MODELS = {
    "ave": (reference.AVEBaseline, models.AVEBaseline, {}),
    "psp-sel": (reference.PSPNet, models.PSPNet, {"setting": "sel"}),
    "psp-wsel": (reference.PSPNet, models.PSPNet, {"setting": "wsel"}),
}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def epilogue_inputs(rows, locations, dim, channels, seed=0, **to) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(rows, locations, dim), (rows, locations), (dim,), (rows, locations, channels)]
    return [torch.randn(shape, generator=generator).to(**to) for shape in shapes]


def epilogue_grads(function, inputs, use_attended=True, use_attention=True):
    """Outputs and the gradients of all four inputs for a random linear function of the outputs."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    attended, attention = function(*leaves)
    generator = torch.Generator().manual_seed(1)
    loss = 0
    if use_attended:
        loss = loss + (attended * torch.randn(attended.shape, generator=generator).to(attended)).sum()
    if use_attention:
        loss = loss + (attention * torch.randn(attention.shape, generator=generator).to(attention)).sum()
    loss.backward()
    grads = [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves]
    return [attended.detach(), attention.detach(), *grads]


def assert_close_all(actual, expected, names, rtol=1e-5) -> None:
    for name, got, want in zip(names, actual, expected):
        scale = max(want.abs().max().item(), 1e-12)
        torch.testing.assert_close(got.to(want.dtype), want, rtol=rtol, atol=rtol * scale,
                                   msg=lambda m: f"{name}: {m}")


EPILOGUE_NAMES = ["attended", "attention", "projected.grad", "audio_term.grad", "score_weight.grad", "maps.grad"]


def assert_epilogue_matches_reference(function, shapes=EPILOGUE_SHAPES, **to) -> None:
    for index, shape in enumerate(shapes):
        inputs = epilogue_inputs(*shape, seed=index, **to)
        for use in [(True, True), (True, False), (False, True)]:
            expected = epilogue_grads(attention_epilogue, inputs, *use)
            assert_close_all(epilogue_grads(function, inputs, *use), expected, EPILOGUE_NAMES)


def run_model(model, audio, visual, seed=0):
    """Outputs and the gradients of the inputs and of every parameter (by name) for a random linear loss."""
    audio, visual = audio.detach().clone().requires_grad_(), visual.detach().clone().requires_grad_()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout draws on both sides
    outputs = model(audio, visual)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    generator = torch.Generator().manual_seed(2)
    loss = sum((out * torch.randn(out.shape, generator=generator).to(out)).sum() for out in outputs)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return [out.detach() for out in outputs], audio.grad, visual.grad, grads


def twin_models(name: str, **to):
    reference_class, fast_class, kwargs = MODELS[name]
    ref = reference_class(**kwargs).to(**to)
    fast = fast_class(**kwargs).to(**to)
    fast.load_state_dict(ref.state_dict())
    return fast, ref


def assert_model_matches_reference(name: str, batch: int, segments: int, train: bool, rtol=1e-4, **to) -> None:
    torch.manual_seed(len(name) + batch)
    fast, ref = twin_models(name, **to)
    fast.train(train), ref.train(train)
    generator = torch.Generator().manual_seed(batch)
    audio = torch.randn(batch, segments, 128, generator=generator).to(**to)
    visual = torch.randn(batch, segments, 7, 7, 512, generator=generator).to(**to)
    actual, expected = run_model(fast, audio, visual), run_model(ref, audio, visual)
    names = [f"output{i}" for i in range(len(expected[0]))] + ["audio.grad", "visual.grad"] + list(expected[3])
    assert list(actual[3]) == list(expected[3])
    assert_close_all([*actual[0], actual[1], actual[2], *actual[3].values()],
                     [*expected[0], expected[1], expected[2], *expected[3].values()], names, rtol)


class OutputSizes(TorchDispatchMode):
    """Inside ``with OutputSizes() as sizes:``, ``sizes.numels`` lists the element count of every tensor an op
    creates (views and outputs written in place, ``relu_`` or ``out=``, are no new tensors)."""

    def __init__(self) -> None:
        super().__init__()
        self.numels: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if not (func.is_view or func._schema.is_mutable):
            outputs = result if isinstance(result, (tuple, list)) else (result,)
            self.numels += [out.numel() for out in outputs if isinstance(out, torch.Tensor)]
        return result


def assert_maps_gradient_only_when_required(epilogue) -> None:
    """The epilogue's backward creates no tensor the size of the maps ``[N, L, C]`` when the maps need no
    gradient (the AVE/PSP training case), and gives the reference's gradient when they do."""
    inputs = epilogue_inputs(3, 5, 3, 64)
    for maps_need_grad in (False, True):
        leaves = [x.clone().requires_grad_(i < 3 or maps_need_grad) for i, x in enumerate(inputs)]
        attended, attention = epilogue(*leaves)
        with OutputSizes() as sizes:
            (attended.sum() + attention.sum()).backward()
        assert (inputs[3].numel() in sizes.numels) == maps_need_grad
    maps = inputs[3].clone().requires_grad_()
    attended, attention = attention_epilogue(*inputs[:3], maps)
    (attended.sum() + attention.sum()).backward()
    torch.testing.assert_close(leaves[3].grad, maps.grad)


def assert_models_sync_free() -> None:
    """A forward+backward of every model records no op that would synchronise with a CUDA device."""
    for name in MODELS:
        fast, _ = twin_models(name)
        with SyncProbe() as probe:
            outputs = fast(torch.randn(2, 3, 128), torch.randn(2, 3, 7, 7, 512))
            (outputs[0] if isinstance(outputs, tuple) else outputs).sum().backward()
        assert probe.records == [], name


# --- torch path ---------------------------------------------------------------------------------------------------

def test_torch_epilogue_computes_the_maps_gradient_only_when_required():
    assert_maps_gradient_only_when_required(fast_attention.AttentionEpilogueFunction.apply)


# (rows M, inputs K, hidden H, outputs): odd sizes, one of each, AVE's audio branch, visual maps of 4 segments
BRANCH_SHAPES = [(3, 5, 7, 2), (1, 1, 1, 1), (40, 128, 512, 49), (4 * 49, 512, 512, 49)]


def branch_layers(inputs: int, hidden: int, outputs: int, seed: int) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """The two layers of a branch; hidden unit 0 has zero weights and bias, so its ReLU input is exactly 0."""
    torch.manual_seed(seed)
    first, second = torch.nn.Linear(inputs, hidden), torch.nn.Linear(hidden, outputs, bias=False)
    with torch.no_grad():
        first.weight[0], first.bias[0] = 0, 0
    return first, second


def branch_results(branch, input, first, second) -> list[torch.Tensor | None]:
    """Output and the gradients of the input and of the three parameters for a random linear loss."""
    leaves = [input.detach().clone().requires_grad_(input.requires_grad)]
    for layer in (first, second):
        layer.zero_grad(set_to_none=True)
    output = branch(leaves[0], first, second)
    (output * torch.randn(output.shape, generator=torch.Generator().manual_seed(3))).sum().backward()
    return [output.detach(), leaves[0].grad, first.weight.grad, first.bias.grad, second.weight.grad]


@pytest.mark.parametrize("shape", BRANCH_SHAPES)
@pytest.mark.parametrize("input_needs_grad", [False, True])
def test_linear_relu_linear_is_the_reference_branch_bit_for_bit(shape, input_needs_grad):
    rows, inputs, hidden, outputs = shape
    first, second = branch_layers(inputs, hidden, outputs, seed=rows)
    input = torch.randn(rows, inputs).requires_grad_(input_needs_grad)
    expected = branch_results(reference.ave.relu_branch, input, first, second)
    actual = branch_results(fast_attention.linear_relu_linear, input, first, second)
    for name, got, want in zip(["output", "input.grad", "weight1.grad", "bias1.grad", "weight2.grad"], actual,
                               expected):
        assert (got is None) == (want is None), name
        assert got is None or torch.equal(got, want), name


def test_linear_relu_linear_keeps_a_3d_input_shape_and_skips_frozen_layers():
    first, second = branch_layers(6, 5, 4, seed=0)
    first.requires_grad_(False)
    input = torch.randn(2, 3, 6)
    expected = branch_results(reference.ave.relu_branch, input, first, second)
    with OutputSizes() as sizes:
        actual = branch_results(fast_attention.linear_relu_linear, input, first, second)
    assert actual[0].shape == (2, 3, 4) and actual[1:4] == [None, None, None]
    assert torch.equal(actual[0], expected[0]) and torch.equal(actual[4], expected[4])
    assert sizes.numels.count(2 * 3 * 5) == 1  # the hidden activations only: no hidden gradient is computed


def test_linear_relu_linear_gives_the_relu_and_its_gradient_no_buffer_of_their_own():
    rows, inputs, hidden, outputs = BRANCH_SHAPES[2]  # K != H: the input's copy is not counted
    first, second = branch_layers(inputs, hidden, outputs, seed=0)
    input = torch.randn(rows, inputs)
    counts = []
    for branch in (reference.ave.relu_branch, fast_attention.linear_relu_linear):
        with OutputSizes() as sizes:
            branch_results(branch, input, first, second)
        counts.append(sizes.numels.count(rows * hidden))
    assert counts == [4, 2]  # reference: first product, ReLU, hidden gradient, ReLU's backward


def test_linear_relu_linear_passes_float64_gradcheck():
    generator = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (5, 3), (5,), (2, 5)]
    inputs = [torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_() for shape in shapes]
    assert torch.autograd.gradcheck(fast_attention.LinearReluLinear.apply, inputs)


def test_torch_path_models_do_not_synchronise(torch_backend):
    assert_models_sync_free()


def test_torch_epilogue_matches_reference():
    assert_epilogue_matches_reference(fast_attention.AttentionEpilogueFunction.apply)


def test_torch_epilogue_passes_float64_gradcheck():
    inputs = [x.double().requires_grad_() for x in epilogue_inputs(2, 5, 3, 4)]
    assert torch.autograd.gradcheck(lambda *x: fast_attention.AttentionEpilogueFunction.apply(*x), inputs)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("train", [False, True])
def test_torch_path_models_match_reference(torch_backend, name, train):
    assert_model_matches_reference(name, batch=3, segments=10, train=train)


@pytest.mark.parametrize("name", list(MODELS))
def test_fast_models_share_the_reference_state_dict(name):
    fast, ref = twin_models(name)
    assert list(fast.state_dict()) == list(ref.state_dict())
    assert [v.shape for v in fast.state_dict().values()] == [v.shape for v in ref.state_dict().values()]


def test_fast_ave_returns_the_attention_with_its_gradient(torch_backend):
    fast, ref = twin_models("ave")
    audio, visual = torch.randn(2, 4, 128), torch.randn(2, 4, 7, 7, 512, requires_grad=True)
    results = []
    for model in (fast, ref):
        visual.grad = None
        scores, attention = model(audio, visual, return_attention=True)
        (scores.sum() + (attention * torch.arange(49.0)).sum()).backward()
        results.append((scores.detach(), attention.detach(), visual.grad.clone()))
    assert_close_all(results[0], results[1], ["scores", "attention", "visual.grad"])


@pytest.mark.parametrize("name", list(MODELS))
def test_torch_path_under_bf16_autocast_tracks_the_reference(torch_backend, name):
    """The epilogue runs in the GEMMs' autocast dtype, as the reference's bmm: outputs and gradients within a few
    percent of their scale (bf16 keeps 8 bits of mantissa)."""
    fast, ref = twin_models(name)
    fast.eval(), ref.eval()
    audio, visual = torch.randn(2, 4, 128), torch.randn(2, 4, 7, 7, 512)
    results = []
    for model in (fast, ref):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(run_model(model, audio, visual))
    (fast_outputs, *fast_grads), (ref_outputs, *ref_grads) = results
    for got, want in zip(fast_outputs, ref_outputs):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=0.03 * want.abs().max().item())
    for got, want in zip([*fast_grads[:2], *fast_grads[2].values()], [*ref_grads[:2], *ref_grads[2].values()]):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=0, atol=0.05 * want.abs().max().item())


def test_patch_swaps_the_psp_attention_and_back():
    model = reference.PSPNet("wsel")
    assert type(patch(model).attention) is AudioGuidedAttention
    assert type(unpatch(model).attention) is reference.AudioGuidedAttention


@pytest.mark.parametrize("backend,fast_path_runs", [("torch", True), ("reference", False)])
def test_backend_override_decides_the_path(monkeypatch, backend, fast_path_runs):
    calls = []
    real = fast_attention.AttentionEpilogueFunction.apply
    monkeypatch.setattr(fast_attention.AttentionEpilogueFunction, "apply", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setenv("AVEL_FAST_BACKEND", backend)
    fast, ref = twin_models("ave")
    audio, visual = torch.randn(1, 3, 128), torch.randn(1, 3, 7, 7, 512)
    output = fast(audio, visual)
    assert bool(calls) == fast_path_runs
    torch.testing.assert_close(output, ref(audio, visual))


def test_triton_backend_on_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("AVEL_FAST_BACKEND", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        models.AVEBaseline()(torch.randn(1, 2, 128), torch.randn(1, 2, 7, 7, 512))


@pytest.mark.parametrize("name", list(MODELS))
def test_fast_models_refuse_bad_input_shapes(torch_backend, name):
    fast, _ = twin_models(name)
    audio, visual = torch.randn(2, 3, 128), torch.randn(2, 3, 7, 7, 512)
    with pytest.raises(ValueError, match=r"audio must have shape \[B, T, 128\]"):
        fast(audio[..., :100], visual)
    with pytest.raises(ValueError, match=r"visual must have shape \[B, T, 7, 7, 512\]"):
        fast(audio, visual.flatten(2, 3))
    with pytest.raises(ValueError, match=r"audio and visual disagree on \[B, T\]"):
        fast(audio, visual[:, :2])


@pytest.mark.parametrize("name", list(MODELS))
def test_fast_segment_features_reproduce_the_forward_bit_for_bit(torch_backend, name):
    fast, _ = twin_models(name)
    fast.eval()
    audio, visual = torch.randn(2, 10, 128), torch.randn(2, 10, 7, 7, 512)
    actual, expected = fast.from_segment_features(*fast.segment_features(audio, visual)), fast(audio, visual)
    actual, expected = (actual, expected) if isinstance(actual, tuple) else ((actual,), (expected,))
    assert all(torch.equal(got, want) for got, want in zip(actual, expected))


# --- Triton kernels -------------------------------------------------------------------------------------------------

def check_triton_epilogue_matches_reference():
    from avel_fast.kernels.audio_guided_attention import audio_guided_attention_forward

    assert_epilogue_matches_reference(audio_guided_attention_forward)
    assert_maps_gradient_only_when_required(audio_guided_attention_forward)


def check_custom_ops():
    """`torch.library.opcheck` (schema, autograd registration, fake implementation, AOT dispatch) of both ops."""
    from avel_fast.kernels import audio_guided_attention  # noqa: F401  (registers the ops)

    inputs = epilogue_inputs(3, 5, 3, 7)
    for maps_need_grad in (False, True):
        leaves = [x.clone().requires_grad_(i < 3 or maps_need_grad) for i, x in enumerate(inputs)]
        torch.library.opcheck(torch.ops.avel_fast.audio_guided_attention_forward.default, leaves)
    grads = [torch.randn(3, 7), torch.randn(3, 5)]
    backward = torch.ops.avel_fast.audio_guided_attention_backward
    for given in [(0, 1), (0, None), (None, 1)]:
        for grad_maps in (False, True):
            args = (*[None if i is None else grads[i] for i in given], *inputs, torch.rand(3, 5), grad_maps)
            torch.library.opcheck(backward.default, args)
            assert len(backward(*args)) == 3 + (grad_maps and given[0] is not None)


def check_triton_models_match_reference():
    for name in MODELS:
        assert_model_matches_reference(name, batch=1, segments=3, train=True)
    assert_models_sync_free()


def check_triton_refuses_a_tile_too_large():
    from avel_fast.kernels.audio_guided_attention import audio_guided_attention_forward

    try:
        audio_guided_attention_forward(*epilogue_inputs(1, 129, 3, 4))
    except ValueError as error:
        assert "L, D <= 128, got L=129, D=3" in str(error)
    else:
        raise AssertionError("a 129-location tile was accepted")


def test_triton_kernels_lower_to_sm90_machine_code():
    """Both kernels compile to H100 (sm_90) cubins without a GPU at the model's tile (L = D = 49), with bf16
    operands as under autocast, so CI catches what the interpreter cannot (layouts, register allocation)."""
    triton = pytest.importorskip("triton")
    if triton_interpreted():
        pytest.skip("TRITON_INTERPRET=1 replaces the compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from avel_fast.kernels import audio_guided_attention as kernels

    constants = {"BLOCK_L": 64, "BLOCK_D": 64, "BLOCK_C": kernels.CHANNEL_BLOCK,
                 "HAS_GRAD_ATTENDED": True, "HAS_GRAD_ATTENTION": True, "GRAD_MAPS": False}
    float32_buffers = ("attention_ptr", "grad_attention_ptr", "grad_weight_ptr")
    for kernel in (kernels.attention_forward_kernel, kernels.attention_backward_kernel):
        signature = {
            name: "constexpr" if name in constants else ("*fp32" if name in float32_buffers else "*bf16")
            if name.endswith("_ptr") else "i32"
            for name in kernel.arg_names
        }
        kernel_constants = {name: value for name, value in constants.items() if name in kernel.arg_names}
        source = ASTSource(kernel, signature, constexprs=kernel_constants)
        assert triton.compile(source, target=GPUTarget("cuda", 90, 32)).asm["cubin"]


def test_triton_kernels_match_reference_interpreted():
    run_interpreted("test_audio_guided_attention", "check_triton_epilogue_matches_reference",
                    "check_triton_models_match_reference", "check_triton_refuses_a_tile_too_large", "check_custom_ops")


@needs_cuda
def test_triton_epilogue_matches_reference_cuda():
    from avel_fast.kernels.audio_guided_attention import audio_guided_attention_forward

    assert_epilogue_matches_reference(audio_guided_attention_forward, device="cuda")


@needs_cuda
@pytest.mark.parametrize("name", list(MODELS))
def test_triton_models_match_reference_cuda(name):
    assert_model_matches_reference(name, batch=8, segments=10, train=False, rtol=1e-3, device="cuda")
