"""The ambient-sound pretext network as a family of the loop (docs/audio.md#pretext-training).

Data: the paired synthetic scenes (`avel_fast.pretext.synthetic_scenes`, 2 s sounds at 16 kHz) or ``--data DIR``
of (image, WAV) pairs (`avel_fast.pretext.read_pairs`), split 60 / 20 / 20 % into train / val / test by a
permutation seeded by ``data_seed``. Each sound is summarised (``features``: the 502 texture statistics, decimated
method, or the flattened MFCC), z-scored with the training statistics, and turned into targets fitted on the
training split alone: the nearest of ``k`` k-means centres (``targets="cluster"``) or ``k`` PCA sign bits
(``"bits"``). The image network (``visual_net``: AlexNet as the paper, or the small CNN) is trained from scratch
to predict them with AdamW and the one-cycle schedule; selection is on the validation target accuracy (bits: the
mean accuracy per bit). After the test report, a linear probe of its features on the scene labels (fitted on the
training split, scored on test) against the same network at its initialisation, and the NMI of the training
clusters with the scenes, go to ``probe.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from avel_fast.audio import kmeans, mfcc_vector, pca_components, sign_codes, standardize, texture_statistics
from avel_fast.data.resident import SeededBatches
from avel_fast.pretext import (
    TARGET_KINDS,
    build_visual_net,
    linear_probe,
    network_features,
    nmi,
    pretext_loss,
    read_pairs,
    recalibrate_batchnorm,
    synthetic_scenes,
)
from avel_fast.train.distributed import launched_by_torchrun
from avel_fast.train.errors import TrainingError
from avel_fast.train.families.base import ModelFamily, Objective
from avel_fast.train.loop import StepOutput
from avel_fast.train.options import FamilyOptions, option
from avel_fast.train.registry import register
from avel_fast.train.run_dir import BEST_FILE, write_json
from avel_fast.train.runtime import seed_everything
from avel_fast.train.schedule import OneCycleSchedule

PROBE_FILE = "probe.json"
SOUND_FEATURES = ("textures", "mfcc")
IMAGE_SIZES = {"alexnet": 224, "small": 32}
"""Side of the synthetic scene images each network is trained on."""
ALEXNET_MIN_SIZE = 64
SPLIT_FRACTIONS = (0.6, 0.2)
"""Train and validation shares of the examples; test gets the rest."""
EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class PretextOptions(FamilyOptions):
    """The pretext network's options (docs/audio.md#pretext-training)."""

    features: str = option("textures", "The sound summary: textures | mfcc.", choices=SOUND_FEATURES)
    targets: str = option("cluster", "The targets: cluster (k-means) | bits (PCA signs).", choices=TARGET_KINDS)
    k: int = option(15, "Clusters or bits (15; smoke preset 6).", low=1)
    visual_net: str = option("small", "The image network: alexnet | small (preset's).", choices=tuple(IMAGE_SIZES))
    scene_examples: int = option(2400, "Paired synthetic examples (train / val / test 60 / 20 / 20 %).", low=1,
                                 command=False)  # fmt: skip

    supervised: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def preset_values(cls, preset: str, setting: str) -> dict:
        return {
            "paper": dict(epochs=200, batch_size=128, lr=1e-3, visual_net="alexnet", scene_examples=12000),
            "quick": dict(epochs=30, batch_size=64, lr=3e-3, visual_net="small", scene_examples=2400),
            "smoke": dict(epochs=2, batch_size=16, lr=3e-3, visual_net="small", scene_examples=90, k=6),
        }[preset]

    def validate(self, config, explicit=frozenset()) -> None:
        super().validate(config, explicit)
        if launched_by_torchrun():
            raise TrainingError(
                "train pretext runs on a single process: its small CNN has BatchNorm, whose batch statistics "
                "per rank would not match a single-process run"
            )


@dataclass(frozen=True)
class PretextBatch:
    images: torch.Tensor  # [B, 3, H, W]
    targets: torch.Tensor  # int64 [B] clusters or float32 [B, bits]
    index: torch.Tensor  # int64 [B], rows of the dataset


class PretextDataset(SeededBatches):
    """One split resident on the device: normalised images, their sound targets and (CPU) scene labels."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, scenes: torch.Tensor | None, device) -> None:
        self.device = torch.device(device)
        self.images, self.targets = images.to(self.device), targets.to(self.device)
        self.scenes = scenes

    def __len__(self) -> int:
        return self.images.shape[0]

    def rows(self, index: torch.Tensor) -> PretextBatch:
        return PretextBatch(self.images.index_select(0, index), self.targets.index_select(0, index), index)


@dataclass
class PretextData:
    """The run's three splits (the loop's `RunData` interface) and the training clusters' NMI with the scenes."""

    train: PretextDataset
    val: PretextDataset
    test: PretextDataset
    nmi: float | None
    stats: None = None


def decisions(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) whose argmax accuracy is the target accuracy: clusters as they are; each bit as the two
    logits (0, x), so its argmax is 1 exactly where the bit's logit is positive."""
    if targets.is_floating_point():
        return torch.stack([torch.zeros_like(logits), logits], dim=-1), targets.long()
    return logits, targets


class PretextObjective(Objective):
    """`pretext_loss` of the image logits: cross-entropy on clusters, logistic loss per bit."""

    def __call__(self, batch: PretextBatch, epoch: int, step: int) -> StepOutput:
        logits = self.forward(batch.images).float()
        loss = pretext_loss(logits, batch.targets, self.config.options.targets)
        return StepOutput(loss, *decisions(logits, batch.targets))


def sound_features(kind: str, waveforms, sample_rates, device="cpu") -> torch.Tensor:
    """[N, D] summaries of the sounds computed on `device`, as float32 on the CPU: per clip (any rate and
    length), one batch when they share both."""
    summary = texture_statistics if kind == "textures" else mfcc_vector
    options = {"method": "decimated", "device": device} if kind == "textures" else {"device": device}
    if len(set(sample_rates)) == 1 and len({len(wave) for wave in waveforms}) == 1:
        return summary(torch.as_tensor(np.stack(waveforms)), sample_rates[0], **options).float().cpu()
    rows = [summary(torch.as_tensor(wave), rate, **options).float().cpu()
            for wave, rate in zip(waveforms, sample_rates)]
    if len({row.shape for row in rows}) > 1:
        raise ValueError("sounds of different lengths give MFCC of different sizes: use --features textures")
    return torch.stack(rows)


def fitted_targets(features: torch.Tensor, train: torch.Tensor, kind: str, k: int, seed: int) -> torch.Tensor:
    """Targets of every row from the training rows alone: z-scores, then the nearest k-means centre (int64 [N])
    or the PCA sign bits (float32 [N, k])."""
    mean, std = standardize(features[train])
    z = (features - mean) / std
    if kind == "bits":
        return sign_codes(z, *pca_components(z[train], k)).float()
    centers = kmeans(z[train], k, seed=seed).centers.double()
    return torch.cdist(z.double(), centers).argmin(dim=1)


def split_rows(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train / val / test rows (`SPLIT_FRACTIONS`) of a permutation seeded by `seed`; each split non-empty."""
    if count < 3:
        raise TrainingError(f"{count} examples: need at least 3 (train, val and test)")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    train = max(1, round(SPLIT_FRACTIONS[0] * count))
    val = max(1, min(count - train - 1, round(SPLIT_FRACTIONS[1] * count)))
    return order[:train], order[train : train + val], order[train + val :]


def load_examples(config) -> tuple[torch.Tensor, tuple, tuple, torch.Tensor | None]:
    """(images float32 [N, 3, H, W], waveforms, sample rates, scene labels or None) of the synthetic scenes or
    of ``--data DIR``."""
    options = config.options
    if config.data is None:
        size = IMAGE_SIZES[options.visual_net]
        scenes = synthetic_scenes(config.data_seed, options.scene_examples, image_size=size)
        waveforms = tuple(scenes.waveforms.numpy())
        return scenes.images, waveforms, (scenes.sample_rate,) * len(waveforms), scenes.labels
    try:
        pairs = read_pairs(config.data)
    except (ValueError, ImportError) as err:  # ImportError: the `audio` extra (Pillow, soundfile) is missing
        raise TrainingError(f"--data: {err}") from None
    if options.visual_net == "alexnet" and min(pairs.images.shape[2:]) < ALEXNET_MIN_SIZE:
        raise TrainingError(
            f"--data {config.data}: images of {pairs.images.shape[3]}x{pairs.images.shape[2]} pixels are too small "
            f"for AlexNet (at least {ALEXNET_MIN_SIZE}): use --visual-net small"
        )
    labels = torch.from_numpy(pairs.labels) if pairs.labels is not None else None
    return torch.from_numpy(pairs.images), pairs.waveforms, pairs.sample_rates, labels


def load_pretext_data(config) -> PretextData:
    """The splits of the module docstring, resident on the run's device."""
    images, waveforms, sample_rates, scenes = load_examples(config)
    train, val, test = split_rows(len(waveforms), config.data_seed)
    options = config.options
    try:
        features = sound_features(options.features, waveforms, sample_rates, config.device)
        targets = fitted_targets(features, train, options.targets, options.k, config.seed)
    except ValueError as err:
        raise TrainingError(
            f"--features {options.features} / --targets {options.targets} --k {options.k}: {err}"
        ) from None
    mean, std = images[train].mean(dim=(0, 2, 3), keepdim=True), images[train].std(dim=(0, 2, 3), keepdim=True)
    images = (images - mean) / std.clamp_min(1e-6)
    splits = [
        PretextDataset(images[rows], targets[rows], scenes[rows] if scenes is not None else None, config.device)
        for rows in (train, val, test)
    ]
    clusters_nmi = nmi(targets[train], scenes[train]) if scenes is not None and options.targets == "cluster" else None
    return PretextData(*splits, nmi=clusters_nmi)


@register
class PretextFamily(ModelFamily):
    name = "pretext"
    title = "ambient-sound pretext network"
    options_class = PretextOptions
    settings = ("sel",)  # it has no event labels
    objective_class = PretextObjective
    eval_note = (
        "a pretext run is scored when it ends (test_metrics.json: target accuracy; probe.json: linear probe and "
        "NMI); avel-fast eval and report read the event-localization models' runs"
    )

    def build(self, config) -> nn.Module:
        """The image network of ``visual_net`` (it has no fast path) on the run's device."""
        return build_visual_net(config.options.visual_net, config.options.k).to(config.device)

    def schedule(self, config) -> OneCycleSchedule:
        return OneCycleSchedule(config.epochs)

    def load_data(self, config, extras=None) -> PretextData:
        return load_pretext_data(config)

    def data_values(self, train) -> dict:
        return {}

    @torch.no_grad()
    def evaluate(self, model, dataset: PretextDataset, config, context=None) -> dict:
        """Target accuracy (bits: per bit) and mean loss on `dataset`."""
        model.eval()
        loss, correct, count = 0.0, 0, 0
        for batch in dataset.batches(EVAL_BATCH_SIZE, shuffle=False):
            logits = model(batch.images).float()
            loss += float(pretext_loss(logits, batch.targets, config.options.targets)) * len(batch.index)
            scores, labels = decisions(logits, batch.targets)
            correct += int((scores.argmax(dim=-1) == labels).sum())
            count += labels.numel()
        return {"accuracy": correct / count, "loss": loss / len(dataset)}

    def test_report(self, model, data: PretextData, config, best: dict, context) -> tuple[dict, None]:
        model.load_state_dict(best["model"])
        return {
            "split": "test", "checkpoint": BEST_FILE, "epoch": best["epoch"], "val_accuracy": best["val_accuracy"],
            "metrics": self.evaluate(model, data.test, config),
        }, None  # fmt: skip

    def finish(self, run_dir: Path, model, data: PretextData, config) -> dict:
        """``probe.json``: linear probe accuracy on the scenes of the trained network and of the same network at
        its initialisation (the loop seeds with the run seed right before building it), and the clusters' NMI."""
        if data.train.scenes is None:
            return {}
        seed_everything(config.seed)
        initial = self.build(config)
        recalibrated = recalibrate_batchnorm(initial, data.train.images)
        probe = {}
        for name, network in (("pretext", model), ("random_init", initial)):
            train_features = network_features(network, data.train.images)
            test_features = network_features(network, data.test.images)
            probe[name] = linear_probe(train_features, data.train.scenes, test_features, data.test.scenes)
        result = {
            "probe_accuracy": probe, "random_init_batchnorm_recalibrated": recalibrated, "nmi": data.nmi,
            "scenes": int(data.train.scenes.max()) + 1,
            "probe_train_examples": len(data.train), "probe_test_examples": len(data.test),
            "features": config.options.features, "targets": config.options.targets, "k": config.options.k,
            "visual_net": config.options.visual_net,
        }  # fmt: skip
        write_json(run_dir / PROBE_FILE, result)
        return {"probe": {"probe accuracy, pretext": probe["pretext"], "probe accuracy, random init":
                          probe["random_init"], "cluster NMI": data.nmi}}
