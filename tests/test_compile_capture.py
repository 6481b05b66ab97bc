"""`torch.compile(fast_model, fullgraph=True)` captures the fast models' forward and backward without a graph break
(docs/fast-path.md#compile): DPNet (linked replicas), EDRNet + LSS, the AVE baseline and PSP (SEL and WSEL; their
Bi-LSTMs are `avel_fast.nn.BiLSTM`, unrolled while compiling). On the Triton path through Triton's CPU
interpreter (functions ``check_*``, `_interpret.run_interpreted`) and on the torch path, with the ``aot_eager``
backend (Dynamo and AOTAutograd without Inductor's C++ build). Eval mode (no dropout): the compiled code gives the
eager outputs and gradients.
"""
from __future__ import annotations

import pytest
import torch

from _interpret import run_interpreted
from avel_fast import models, nn

SEGMENTS = 10  # EDRNet's convolutions need the full ten segments
WEAK_SEGMENTS = 3  # the AVE/PSP graphs grow with the unrolled LSTM steps; three keep the capture quick


def mean_square(outputs) -> torch.Tensor:
    """A scalar loss that reaches every output."""
    return sum(out.square().mean() for out in (outputs if isinstance(outputs, tuple) else (outputs,)))


def dpnet_case():
    """Two videos, each linked with a replica (group size 2), as `--replicate --link` trains."""
    model = models.DPNet(dim=8, blocks=2, visual_dim=8)
    inputs = (torch.randn(4, SEGMENTS, 128), torch.randn(4, SEGMENTS, 8))
    return model, inputs, {"group_size": 2}, mean_square


def edrnet_case():
    """The logits and the LSS of the gated features (EDRNet eq. 11), as `--lss` trains."""
    model = models.EDRNet(dim=8, layers=1, visual_channels=4)
    lss, labels = nn.LSSLoss(check_labels=False), torch.randint(0, 29, (2, SEGMENTS))
    inputs = (torch.randn(2, SEGMENTS, 128), torch.randn(2, SEGMENTS, 7, 7, 512))
    return model, inputs, {"return_features": True}, lambda out: out[0].square().mean() + lss(out[1].float(), labels)


def weak_case(model_class, *args):
    """The whole model: the audio-guided attention, the Bi-LSTMs (unrolled over `WEAK_SEGMENTS` steps each way
    while compiling) and what follows them."""
    model = model_class(*args, visual_dim=8)
    return model, (torch.randn(2, WEAK_SEGMENTS, 128), torch.randn(2, WEAK_SEGMENTS, 7, 7, 8)), {}, mean_square


WEAK = {"ave": lambda: weak_case(models.AVEBaseline), "psp-sel": lambda: weak_case(models.PSPNet, "sel"),
        "psp-wsel": lambda: weak_case(models.PSPNet, "wsel")}
CASES = {"dpnet": dpnet_case, "edrnet": edrnet_case, **WEAK}


def assert_compiled_matches_eager(name: str) -> None:
    """Outputs, loss and every parameter's gradient of the compiled forward+loss equal the eager ones."""
    torch.manual_seed(0)
    model, inputs, kwargs, loss_of = CASES[name]()
    model.eval()

    def forward_and_loss():
        outputs = model(*inputs, **kwargs)
        return outputs, loss_of(outputs)

    results = []
    for function in (forward_and_loss, torch.compile(forward_and_loss, fullgraph=True, backend="aot_eager")):
        model.zero_grad(set_to_none=True)
        outputs, loss = function()
        loss.backward()
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        results.append([*[out.detach() for out in outputs], loss.detach(), *grads])
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, msg=lambda m: f"{name}: {m}")


def check_dpnet():
    assert_compiled_matches_eager("dpnet")


def check_edrnet():
    assert_compiled_matches_eager("edrnet")


def check_ave_and_psp():
    for name in WEAK:
        assert_compiled_matches_eager(name)


@pytest.mark.parametrize("check", ["check_ave_and_psp", "check_dpnet", "check_edrnet"])
def test_triton_path_compiles_without_a_graph_break(check):
    run_interpreted("test_compile_capture", check)


@pytest.mark.parametrize("name", list(CASES))
def test_torch_path_compiles_without_a_graph_break(torch_backend, name):
    assert_compiled_matches_eager(name)

