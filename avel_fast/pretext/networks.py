"""Image networks trained from scratch on the sound pretext (`docs/audio.md#visual-networks`).

"alexnet": AlexNet as in the seed paper's reproduction (Krizhevsky et al. 2012, torchvision's single-tower
layout, 224x224 input). "small": a 3-block CNN for 32x32 synthetic scenes, quick and smoke runs. "pool5": the
head on AVE's VGG19 pool5 maps [N, 512, 7, 7] (Conv1x1 512->128, BN, ReLU; Conv3x3 128->128, BN, ReLU; GAP).
Every network is `features` (the probed representation) followed by a linear `head`.
"""
from __future__ import annotations

import torch
from torch import nn

VISUAL_NETS = ("alexnet", "small", "pool5")


class VisualNet(nn.Module):
    """`features` then a linear `head`; `forward` gives the pretext logits."""

    def __init__(self, features: nn.Module, width: int, num_outputs: int) -> None:
        super().__init__()
        self.features = features
        self.head = nn.Linear(width, num_outputs)
        self.feature_dim = width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def _alexnet() -> tuple[nn.Module, int]:
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d(6), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
    )
    return features, 4096


def _small() -> tuple[nn.Module, int]:
    features = nn.Sequential(
        *_conv_bn_relu(3, 32, 3), nn.MaxPool2d(2),
        *_conv_bn_relu(32, 64, 3), nn.MaxPool2d(2),
        *_conv_bn_relu(64, 128, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return features, 128


def _pool5() -> tuple[nn.Module, int]:
    features = nn.Sequential(*_conv_bn_relu(512, 128, 1), *_conv_bn_relu(128, 128, 3), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten())
    return features, 128


def build_visual_net(kind: str, num_outputs: int) -> VisualNet:
    """A freshly initialised `kind` network ("alexnet" | "small" | "pool5") with `num_outputs` logits."""
    builders = {"alexnet": _alexnet, "small": _small, "pool5": _pool5}
    if kind not in builders:
        raise ValueError(f"kind must be one of {VISUAL_NETS}, got {kind!r}")
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
        raise ValueError(f"num_outputs must be a positive integer, got {num_outputs!r}")
    features, width = builders[kind]()
    return VisualNet(features, width, num_outputs)
