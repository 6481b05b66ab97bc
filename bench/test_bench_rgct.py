"""RGCT benchmarks (docs/fast-path.md#speed): reference vs fast (`avel_fast.nn.RGCT`: the Triton kernels on CUDA,
the torch path on CPU) vs ``torch.compile(reference)`` vs ``torch.compile(fast)`` (``fast+compile``), forward
(eval, no grad) and forward+backward (training, dropout on, input requiring grad as inside DPNet), without
linkage (G = 1: 48 videos) and with it (G = 2: 48 videos and their 48 replicas). Sizes: D_in = D = 256 on CPU,
the paper's D = 768 on CUDA."""
import pytest
import torch

from _device import CUDA, DEVICE, DIM, record, synchronize
from avel_fast import reference
from avel_fast.nn import RGCT

VIDEOS, STEPS = 48, 10
IMPLS = ["reference", "fast", "compile", "fast+compile"]


def build(impl: str):
    """The module under test for `impl`, with the same parameters for every impl (seeded)."""
    torch.manual_seed(0)
    ref = reference.RGCT(DIM, DIM).to(DEVICE)
    if impl == "reference":
        return ref, ref
    if impl != "fast" and not CUDA:
        pytest.skip("torch.compile takes minutes to warm up on 2 CPU cores; measured on CUDA only")
    if impl == "compile":
        return torch.compile(ref), ref
    fast = RGCT(DIM, DIM).to(DEVICE)
    fast.load_state_dict(ref.state_dict())
    return (fast if impl == "fast" else torch.compile(fast)), fast


@pytest.mark.parametrize("group_size", [1, 2])
@pytest.mark.parametrize("impl", IMPLS)
def test_rgct_forward(benchmark, impl, group_size):
    module, parameters = build(impl)
    parameters.eval()
    x = torch.randn(VIDEOS * group_size, 2, STEPS, DIM, device=DEVICE)

    def forward():
        with torch.no_grad():
            output = module(x, group_size)
        synchronize()
        return output

    record(benchmark, f"rgct-G{group_size}/fwd", impl)
    output = benchmark.pedantic(forward, rounds=10, warmup_rounds=2)
    assert output.shape == (VIDEOS * group_size, 2, STEPS, DIM)


@pytest.mark.parametrize("group_size", [1, 2])
@pytest.mark.parametrize("impl", IMPLS)
def test_rgct_forward_backward(benchmark, impl, group_size):
    module, parameters = build(impl)
    parameters.train()
    x = torch.randn(VIDEOS * group_size, 2, STEPS, DIM, device=DEVICE, requires_grad=True)
    grad = torch.randn(VIDEOS * group_size, 2, STEPS, DIM, device=DEVICE)

    def step():
        x.grad = None
        parameters.zero_grad(set_to_none=True)
        module(x, group_size).backward(grad)
        synchronize()
        return x.grad

    record(benchmark, f"rgct-G{group_size}/fwd+bwd", impl)
    input_grad = benchmark.pedantic(step, rounds=10, warmup_rounds=2)
    assert torch.isfinite(input_grad).all()
