"""Benchmarks of the AVE baseline and PSP (`docs/weak.md`): the audio-guided attention and whole training steps,
`avel_fast.reference` vs the fast versions (the fused epilogue: Triton kernels on CUDA, the torch path on CPU).

Attention: forward (no grad) and forward+backward (inputs and parameters requiring grad) of the attention block
alone on 7x7x512 maps. Steps: one weakly supervised step of the AVE baseline (``soft_margin_on_probs`` of
``max_mil_prob``), of the weak PSP (BCE of ``mean_mil_prob``) and one fully supervised PSP step
(cross-entropy + 100·AVPS). Batch: 64 videos of T = 10 segments (the public batch of both AVE mains, the training
recipe's) on every device: on the CPU its ``[640·49, 512]`` activations are always fresh ``mmap``s (glibc serves
blocks over 32 MB so), whereas a batch of 16 is served from a heap whose state, and so the step's page faults,
depends on what ran before in the process.
"""
import pytest
import torch
import torch.nn.functional as F

from _device import DEVICE, record, synchronize
from avel_fast import models, nn as fast_nn, reference
from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, VISUAL_SHAPE
from avel_fast.reference.psp import AVPS_WEIGHT

VIDEOS, SEGMENTS = 64, 10
IMPLS = ["reference", "fast"]
MODELS = {
    "ave": (reference.AVEBaseline, models.AVEBaseline, {}),
    "psp-sel": (reference.PSPNet, models.PSPNet, {"setting": "sel"}),
    "psp-wsel": (reference.PSPNet, models.PSPNet, {"setting": "wsel"}),
}


def inputs():
    """Audio, visual maps, segment labels and binary video labels (the event column, or background)."""
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(VIDEOS, SEGMENTS, AUDIO_DIM, generator=generator)
    visual = torch.randn(VIDEOS, SEGMENTS, *VISUAL_SHAPE, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (VIDEOS, SEGMENTS), generator=generator)
    video_labels = F.one_hot(labels[:, 0], NUM_CLASSES).float()
    return audio.to(DEVICE), visual.to(DEVICE), labels.to(DEVICE), video_labels.to(DEVICE)


def build_attention(impl: str):
    torch.manual_seed(0)
    module = reference.AudioGuidedAttention().to(DEVICE)
    return fast_nn.patch(module) if impl == "fast" else module


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_forward(benchmark, impl):
    module = build_attention(impl)
    assert isinstance(module, fast_nn.AudioGuidedAttention) == (impl == "fast")
    audio, visual = inputs()[:2]

    def forward():
        with torch.no_grad():
            output = module(audio, visual)
        synchronize()
        return output

    record(benchmark, "ave-attention/fwd", impl)
    output = benchmark.pedantic(forward, rounds=10, warmup_rounds=2)
    assert output.shape == (VIDEOS, SEGMENTS, VISUAL_SHAPE[-1])


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_forward_backward(benchmark, impl):
    module = build_attention(impl)
    audio, visual = (x.requires_grad_() for x in inputs()[:2])
    wrt = [audio, visual, *module.parameters()]

    def step():
        output = module(audio, visual)
        grads = torch.autograd.grad(output, wrt, torch.ones_like(output))
        synchronize()
        return grads

    record(benchmark, "ave-attention/fwd+bwd", impl)
    grads = benchmark.pedantic(step, rounds=10, warmup_rounds=2)
    assert all(torch.isfinite(grad).all() for grad in grads)


def loss_of(name: str, model, audio, visual, labels, video_labels) -> torch.Tensor:
    """The paper objective of one batch (module docstring)."""
    if name == "ave":
        return reference.soft_margin_on_probs(reference.max_mil_prob(model(audio, visual)), video_labels)
    if name == "psp-wsel":
        return reference.bce_on_probs(reference.mean_mil_prob(model(audio, visual)), video_labels)
    scores, cosine = model(audio, visual)
    return F.cross_entropy(scores.flatten(0, 1), labels.flatten()) + AVPS_WEIGHT * reference.avps_loss(cosine, labels)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("impl", IMPLS)
def test_model_forward_backward(benchmark, impl, name):
    reference_class, fast_class, kwargs = MODELS[name]
    torch.manual_seed(0)
    model = (fast_class if impl == "fast" else reference_class)(**kwargs).to(DEVICE).train()
    batch = inputs()

    def step():
        model.zero_grad(set_to_none=True)
        loss = loss_of(name, model, *batch)
        loss.backward()
        synchronize()
        return loss

    record(benchmark, f"{name}-step/fwd+bwd", impl)
    loss = benchmark.pedantic(step, rounds=15, warmup_rounds=2)
    assert torch.isfinite(loss)
