"""The fast ops at the paper shapes (docs/fast-path.md#kernel-report): what `kernel_report.py` compiles, what
`gpu_run.py` checks on CUDA against the reference and what its time estimates count.

Each workload is one reference module, its fast twin (`avel_fast.nn.patch` of a copy: same weights) and a
scalar of its output whose forward and backward launch the op's kernels. Shapes are the papers': DPNet D = 768,
48 videos and their 48 linked replicas (G = 2; G = 1: the 48 videos), T = 10, two modalities; EDRNet d = 768
(gated fusion k = 3, LSS on ``[48, 10, 768]``); the AVE/PSP attention on 7x7x512 maps, 64 videos. `videos`
scales the batch (the CUDA smoke and the dry run use fewer). `STEPS` are the whole paper-size training steps of
DPNet and EDRNet (what `gpu_run.py --dry-run` estimates from; too large to run on a CPU).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from avel_fast import reference
from avel_fast.constants import AUDIO_DIM, NUM_CLASSES, VISUAL_SHAPE
from avel_fast.nn import patch
from avel_fast.train.families.edrnet import EDRNetOptions

DIM, SEGMENTS = 768, 10


@dataclass(frozen=True)
class Workload:
    """`build()` the reference module; `inputs(videos, device)` its inputs (tensors, then plain arguments);
    `objective(module, *inputs)` the scalar to differentiate; `videos` the paper batch; `training` whether the
    module runs in training mode (dropout)."""

    name: str
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int, str], list]
    objective: Callable[..., torch.Tensor]
    videos: int
    training: bool = False

    def modules(self, device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The reference module and its fast twin on `device`, with the same weights."""
        with torch.device(device):
            module = self.build().train(self.training)
        return module, patch(copy.deepcopy(module))


def _randn(*shape: int, device: str) -> torch.Tensor:
    return torch.randn(*shape, device=device, requires_grad=True)


def _weighted_sum(output: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient is not constant (a plain sum would hide errors that cancel)."""
    weights = torch.linspace(-1.0, 1.0, output.numel(), device=output.device, dtype=output.dtype)
    return (output.flatten() * weights).sum()


def _rgct(group_size: int) -> Workload:
    return Workload(
        f"rgct-G{group_size}", lambda: reference.RGCT(DIM, DIM),
        lambda videos, device: [_randn(videos * group_size, 2, SEGMENTS, DIM, device=device), group_size],
        lambda module, x, group: _weighted_sum(module(x, group)), videos=48, training=True,
    )  # fmt: skip


def _gated_fusion(kernel_size: int, videos: int) -> Workload:
    return Workload(
        f"gated_fusion-k{kernel_size}", lambda: reference.GatedFusion(DIM, kernel_size),
        lambda videos, device: [_randn(videos, SEGMENTS, DIM, device=device) for _ in range(2)],
        lambda module, audio, visual: _weighted_sum(module(audio, visual)), videos=videos,
    )  # fmt: skip


def _lss_inputs(videos: int, device: str) -> list:
    labels = torch.randint(0, NUM_CLASSES, (videos, SEGMENTS), device=device)
    return [_randn(videos, SEGMENTS, DIM, device=device), labels]


def _attention_inputs(videos: int, device: str) -> list:
    return [_randn(videos, SEGMENTS, AUDIO_DIM, device=device), _randn(videos, SEGMENTS, *VISUAL_SHAPE, device=device)]


def _attention_objective(module, audio, visual) -> torch.Tensor:
    attended, attention = module(audio, visual, return_attention=True)
    return _weighted_sum(attended) + _weighted_sum(attention)


WORKLOADS = (
    _rgct(1),
    _rgct(2),
    Workload(
        "temporal_conv", lambda: reference.TemporalConv(DIM, DIM),
        lambda videos, device: [_randn(videos, 2, SEGMENTS, DIM, device=device)],
        lambda module, x: _weighted_sum(module(x)), videos=96,  # the 48 videos and their replicas
    ),
    _gated_fusion(1, videos=96),  # DPNet: the 48 videos and their replicas
    _gated_fusion(3, videos=48),  # EDRNet
    Workload("lss", reference.LSSLoss, _lss_inputs, lambda module, features, labels: module(features, labels), 48),
    Workload("attention", reference.AudioGuidedAttention, _attention_inputs, _attention_objective, videos=64),
)
"""The paper-shape workloads, one per fast op and configuration (module docstring)."""


def _step_inputs(videos: int, device: str, visual_shape: tuple[int, ...]) -> list:
    labels = torch.randint(0, NUM_CLASSES, (videos, SEGMENTS), device=device)
    return [torch.randn(videos, SEGMENTS, AUDIO_DIM, device=device),
            torch.randn(videos, SEGMENTS, *visual_shape, device=device), labels]


def _dpnet_loss(model, audio, visual, labels) -> torch.Tensor:
    return F.cross_entropy(model(audio, visual, group_size=2).flatten(0, 1), labels.flatten())


class _EDRNetObjective(torch.nn.Module):
    """EDRNet with its LSS loss as one module, so `patch` swaps both: cross-entropy + 0.1·LSS (the SEL objective)."""

    def __init__(self) -> None:
        super().__init__()
        self.model, self.lss = reference.EDRNet(dim=DIM), reference.LSSLoss()

    def forward(self, audio, visual, labels) -> torch.Tensor:
        logits, features = self.model(audio, visual, return_features=True)
        cross_entropy = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return cross_entropy + EDRNetOptions.lss_weight * self.lss(features, labels)


STEPS = (
    Workload("dpnet-step", lambda: reference.DPNet(dim=DIM),
             lambda videos, device: _step_inputs(videos, device, VISUAL_SHAPE[-1:]), _dpnet_loss, 96, training=True),
    Workload("edrnet-step", _EDRNetObjective, lambda videos, device: _step_inputs(videos, device, VISUAL_SHAPE),
             lambda module, *inputs: module(*inputs), 48, training=True),
)
"""One paper-size training step of each model (48 videos; DPNet with their 48 linked replicas)."""
