"""Benchmarks of gated fusion, TemporalConv + Swish and the LSS loss (docs/fast-path.md#speed): reference vs fast
(`avel_fast.nn`: the Triton kernels on CUDA, the torch path on CPU) vs ``torch.compile(reference)`` vs
``torch.compile(fast)`` (``fast+compile``).

Forward (no grad) and forward+backward (inputs and parameters requiring grad, as inside the models), B = 48
videos of T = 10 segments, D = 256 on CPU and the paper's D = 768 on CUDA. LSS labels are training batches:
``lss`` draws 48 videos from EDRNet's paper-recipe training set (the synthetic AVE training split, which has
the real AVE label statistics, plus 250 SMB-fused videos per event class), ``lss-ave`` from the training split
alone (no SMB: one event per video, most of them 10 segments long, the fewest patches and so the cheapest
reference).
"""
import copy

import pytest
import torch

from _device import DEVICE, DIM, record, synchronize, timed_rounds
from avel_fast import reference
from avel_fast.augment import smb_fusion
from avel_fast.data.synthetic import synthetic_labels
from avel_fast.nn import GatedFusion, LSSLoss, TemporalConv, patch

VIDEOS, SEGMENTS = 48, 10
IMPLS = ["reference", "fast", "compile", "fast+compile"]


def build(impl: str, reference_module):
    """The module under test for `impl` and the module holding its parameters: the reference, a patched copy
    (`avel_fast.nn.patch`: the fast class, same parameter values), the compiled reference or the compiled copy."""
    if impl == "reference":
        return reference_module, reference_module
    if impl == "compile":
        return torch.compile(reference_module), reference_module
    fast = patch(copy.deepcopy(reference_module))
    return (fast if impl == "fast" else torch.compile(fast)), fast


def make_gated_fusion(kernel_size: int) -> reference.GatedFusion:
    torch.manual_seed(kernel_size)
    return reference.GatedFusion(DIM, kernel_size).to(DEVICE)


def gated_fusion_inputs() -> list[torch.Tensor]:
    return [torch.randn(VIDEOS, SEGMENTS, DIM, device=DEVICE) for _ in range(2)]


def make_temporal_conv() -> reference.TemporalConv:
    torch.manual_seed(0)
    return reference.TemporalConv(DIM, DIM).to(DEVICE)


def temporal_conv_inputs() -> list[torch.Tensor]:
    return [torch.randn(VIDEOS, 2, SEGMENTS, DIM, device=DEVICE)]


def run_forward(benchmark, module, inputs, group: str, impl: str):
    def forward():
        with torch.no_grad():
            output = module(*inputs)
        synchronize()
        return output

    record(benchmark, group, impl)
    return timed_rounds(benchmark, forward, rounds=10)


def run_forward_backward(benchmark, module, inputs, parameters, group: str, impl: str):
    inputs = [x.requires_grad_() for x in inputs]
    wrt = inputs + list(parameters)

    def step():
        output = module(*inputs)
        grads = torch.autograd.grad(output, wrt, torch.ones_like(output))
        synchronize()
        return grads

    record(benchmark, group, impl)
    return timed_rounds(benchmark, step, rounds=10)


@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("impl", IMPLS)
def test_gated_fusion_forward(benchmark, impl, kernel_size):
    module, owner = build(impl, make_gated_fusion(kernel_size))
    assert isinstance(owner, GatedFusion) == impl.startswith("fast")
    output = run_forward(benchmark, module, gated_fusion_inputs(), f"gated_fusion-k{kernel_size}/fwd", impl)
    assert output.shape == (VIDEOS, SEGMENTS, DIM)


@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("impl", IMPLS)
def test_gated_fusion_forward_backward(benchmark, impl, kernel_size):
    module, owner = build(impl, make_gated_fusion(kernel_size))
    group = f"gated_fusion-k{kernel_size}/fwd+bwd"
    grads = run_forward_backward(benchmark, module, gated_fusion_inputs(), owner.parameters(), group, impl)
    assert all(torch.isfinite(grad).all() for grad in grads)


@pytest.mark.parametrize("impl", IMPLS)
def test_temporal_conv_forward(benchmark, impl):
    module, owner = build(impl, make_temporal_conv())
    assert isinstance(owner, TemporalConv) == impl.startswith("fast")
    output = run_forward(benchmark, module, temporal_conv_inputs(), "temporal_conv/fwd", impl)
    assert output.shape == (VIDEOS, 2, SEGMENTS, DIM)


@pytest.mark.parametrize("impl", IMPLS)
def test_temporal_conv_forward_backward(benchmark, impl):
    module, owner = build(impl, make_temporal_conv())
    grads = run_forward_backward(
        benchmark, module, temporal_conv_inputs(), owner.parameters(), "temporal_conv/fwd+bwd", impl
    )
    assert all(torch.isfinite(grad).all() for grad in grads)


def lss_labels(training_set: str) -> torch.Tensor:
    """48 label sequences drawn (fixed seed) from the synthetic AVE training split, with its SMB-fused videos
    (``paper``) or without (``ave``)."""
    synthetic = synthetic_labels(seed=0)
    labels = synthetic.labels[synthetic.splits["train"]]
    if training_set == "paper":
        labels = torch.cat([labels, torch.as_tensor(smb_fusion(labels, per_class=250, seed=0).labels)])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    return labels[order[:VIDEOS]].to(DEVICE)


@pytest.mark.parametrize("training_set", ["paper", "ave"])
@pytest.mark.parametrize("impl", IMPLS)
def test_lss_forward_backward(benchmark, impl, training_set):
    if impl == "compile":
        pytest.skip("the reference LSS loops over videos in Python on label values: torch.compile breaks the graph "
                    "at every video and recompiles per label pattern")
    labels = lss_labels(training_set)
    torch.manual_seed(0)
    features = torch.randn(VIDEOS, SEGMENTS, DIM, device=DEVICE, requires_grad=True)
    loss = reference.LSSLoss() if impl == "reference" else LSSLoss()
    loss = torch.compile(loss) if impl == "fast+compile" else loss

    def step():
        grad = torch.autograd.grad(loss(features, labels), features)[0]
        synchronize()
        return grad

    record(benchmark, "lss/fwd+bwd" if training_set == "paper" else "lss-ave/fwd+bwd", impl)
    grad = timed_rounds(benchmark, step, rounds=20)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
