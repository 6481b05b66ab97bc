"""Pretext targets from sound features, and the evaluations of the learned image features: a linear probe on the
scene labels (against the network at its initialisation, BatchNorm recalibrated) and cluster NMI
(`docs/audio.md#pretext`).

Owens et al. train the image network to predict the sound's k-means cluster (softmax cross-entropy) or its PCA
sign bits (one logistic loss per bit); the seed paper evaluates the features by a linear probe / fine-tuning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import update_bn

from avel_fast.audio.targets import kmeans, pca_codes, standardize

TARGET_KINDS = ("cluster", "bits")


@dataclass(frozen=True)
class PretextTargets:
    kind: str
    targets: torch.Tensor
    """int64 [N] clusters, or float32 [N, bits] 0/1 codes."""
    num_outputs: int
    """Logits the network needs: K clusters or the number of bits."""
    mean: torch.Tensor
    std: torch.Tensor


def pretext_targets(features, kind: str = "cluster", k: int = 15, seed: int = 0) -> PretextTargets:
    """Targets of sound features [N, D]: z-score, then k-means with `k` clusters or `k` PCA sign bits."""
    if kind not in TARGET_KINDS:
        raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")
    features = torch.as_tensor(features)
    mean, std = standardize(features)
    z = (features - mean) / std
    if kind == "cluster":
        targets = kmeans(z, k, seed=seed).labels
    else:
        targets = pca_codes(z, k).to(torch.float32)
    return PretextTargets(kind, targets, k, mean, std)


def pretext_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Cross-entropy on clusters, or binary cross-entropy with logits averaged over bits."""
    if kind == "cluster":
        return F.cross_entropy(logits, targets)
    if kind == "bits":
        return F.binary_cross_entropy_with_logits(logits, targets)
    raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")


@torch.no_grad()
def network_features(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """`net.features` of the images in eval mode, [N, F] float32 on the CPU."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    rows = [net.features(part.to(device)).float().cpu() for part in images.split(batch_size)]
    net.train(was_training)
    return torch.cat(rows)


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, images: torch.Tensor, batch_size: int = 256) -> bool:
    """Replace the BatchNorm running statistics of `net` by those of `images` (the mean of the per-batch
    statistics, `torch.optim.swa_utils.update_bn`), so that a network at its initialisation is probed with the
    data's statistics instead of BatchNorm's defaults, mean 0 and variance 1 (`docs/audio.md#pretext-training`).
    False when `net` has no BatchNorm."""
    if not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in net.modules()):
        return False
    update_bn(images.split(batch_size), net, device=next(net.parameters()).device)
    return True


def linear_probe(train_features, train_labels, test_features, test_labels, *, weight_decay: float = 1e-3,
                 max_iter: int = 200) -> float:
    """Test accuracy of a multinomial logistic regression on z-scored frozen features (L-BFGS, full batch,
    deterministic)."""
    train_features, test_features = torch.as_tensor(train_features), torch.as_tensor(test_features)
    train_labels, test_labels = torch.as_tensor(train_labels).long(), torch.as_tensor(test_labels).long()
    if train_features.dim() != 2 or test_features.shape[1:] != train_features.shape[1:]:
        raise ValueError(f"features must be [N, F] with equal F, got {tuple(train_features.shape)} and "
                         f"{tuple(test_features.shape)}")
    if train_labels.shape != train_features.shape[:1] or test_labels.shape != test_features.shape[:1]:
        raise ValueError("one label per feature row is needed")
    mean, std = standardize(train_features.double())
    train_z, test_z = (train_features.double() - mean) / std, (test_features.double() - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(train_z.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(train_z @ weight + bias, train_labels) + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(((test_z @ weight + bias).argmax(dim=1) == test_labels).double().mean())


def nmi(labels_a, labels_b) -> float:
    """Normalised mutual information of two labelings, MI / mean(H(a), H(b)) (1 when both are constant)."""
    a, b = torch.as_tensor(labels_a).long().flatten(), torch.as_tensor(labels_b).long().flatten()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"labelings must be non-empty and of equal length, got {a.numel()} and {b.numel()}")
    _, a = a.unique(return_inverse=True)
    _, b = b.unique(return_inverse=True)
    joint = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    joint.index_put_((a, b), torch.ones(a.numel(), dtype=torch.float64), accumulate=True)
    joint /= a.numel()
    p_a, p_b = joint.sum(dim=1), joint.sum(dim=0)

    def entropy(p):
        p = p[p > 0]
        return float(-(p * p.log()).sum())

    nonzero = joint > 0
    mutual = float((joint[nonzero] * (joint[nonzero] / (p_a[:, None] * p_b[None, :])[nonzero]).log()).sum())
    mean_entropy = (entropy(p_a) + entropy(p_b)) / 2
    return 1.0 if mean_entropy == 0 else mutual / mean_entropy
