"""What an evaluation scores: the classes of each protocol and post-processing, against the run's own labels
and against other label sets (docs/metrics.md#protocols, docs/metrics.md#label-sets).

A report holds one metrics dict per variant (`ModelFamily.metric_variants`): ``metrics`` (the argmax protocol),
one per post-processing of the family on the argmax classes (``b2ilc`` for EDRNet) and, for weakly supervised
runs, ``metrics_broadcast`` (the broadcast protocol, with the family's video-level pooling). A label set is a
file in the layout of ``labels.h5`` (e.g. PSP's corrected ``right_labels.h5``) named by its stem; its variants sit
under ``label_sets[name]``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avel_fast.data.files import load_segment_labels
from avel_fast.metrics import segment_metrics
from avel_fast.predictions import PROTOCOL_METRICS, PROTOCOLS, protocol_predictions
from avel_fast.train.config import TrainConfig
from avel_fast.train.errors import TrainingError
from avel_fast.train.registry import FAMILIES, family_of


def run_protocols(config: TrainConfig) -> tuple[str, ...]:
    """The protocols a run's test report holds: ``argmax``, and ``broadcast`` for weakly supervised runs."""
    return PROTOCOLS if config.setting == "wsel" else ("argmax",)


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise TrainingError(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")


def protocol_classes(scores: torch.Tensor, protocol: str, config: TrainConfig) -> torch.Tensor:
    """Segment classes ``[V, T]`` of raw scores ``[V, T, C]`` under `protocol`; ``broadcast`` takes the video-level
    probabilities of the family's pooling (`ModelFamily.video_probabilities`)."""
    check_protocol(protocol)
    if protocol == "broadcast":
        return protocol_predictions(scores, protocol, family_of(config.model).video_probabilities(scores))
    return protocol_predictions(scores, protocol)


def variant_metrics(scores: torch.Tensor, labels, config: TrainConfig) -> dict:
    """The metrics of every variant of the module docstring against segment labels ``[V, T]``."""
    variants = {}
    for protocol in run_protocols(config):
        classes = protocol_classes(scores, protocol, config)
        variants[PROTOCOL_METRICS[protocol]] = segment_metrics(classes, labels)
        if protocol == "argmax":
            for name, postprocess in family_of(config.model).postprocessings.items():
                variants[name] = segment_metrics(postprocess(classes), labels)
    return variants


def label_set_name(path: str | Path) -> str:
    """The name of a label set in reports and summaries: the file's stem (``right_labels``), which may not be the
    name of a metric variant of any family (a protocol or a post-processing, `ModelFamily.metric_variants`)."""
    name = Path(path).stem
    reserved = {*PROTOCOLS, *(variant for family in FAMILIES.values() for variant in family.postprocessings)}
    if name in reserved:
        raise TrainingError(f"{path}: a label set may not be named {name!r}, the name of a metrics variant")
    return name


def split_label_set(path: str | Path, video_index: torch.Tensor, num_videos: int) -> np.ndarray:
    """Segment labels int64 ``[N, T]`` of a split's videos (`video_index`) from a label file of every one of the
    dataset's `num_videos` videos (`load_segment_labels`: `AVEFormatError` for a bad file)."""
    return load_segment_labels(path, num_videos)[video_index.cpu().numpy()]
