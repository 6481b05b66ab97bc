"""Predictions and test reports of a trained model on the resident AVE splits (docs/metrics.md#selection,
docs/metrics.md#saved-predictions)."""
from __future__ import annotations

import torch
from torch import nn

from avel_fast.data import ResidentDataset
from avel_fast.predictions import DATA_LABELS, predictions_file
from avel_fast.train.config import TrainConfig
from avel_fast.train.distributed import DistributedContext
from avel_fast.train.evaluation import variant_metrics
from avel_fast.train.registry import family_of
from avel_fast.train.run_dir import BEST_FILE
from avel_fast.train.runtime import autocast

EVAL_BATCH_SIZE = 128


@torch.no_grad()
def predict_scores(
    model: nn.Module, dataset: ResidentDataset, config: TrainConfig, context: DistributedContext | None = None
) -> torch.Tensor:
    """Raw segment scores ``[N, T, C]`` (float32, before any softmax; `ModelFamily.scores`) of every row of
    `dataset`, in order; under torchrun each rank scores one block of rows and every rank gets all of them
    (`DistributedContext.row_block`)."""
    model.eval()
    context = context or DistributedContext(device=config.device)
    family, scores = family_of(config.model), []
    for index in context.row_block(len(dataset), dataset.device).split(EVAL_BATCH_SIZE):
        batch = dataset.rows(index)
        with autocast(config):
            scores.append(family.scores(model, batch.audio, batch.visual).float())
    return context.gather_rows(torch.cat(scores), len(dataset))


def predict(
    model: nn.Module, dataset: ResidentDataset, config: TrainConfig, context: DistributedContext | None = None
) -> torch.Tensor:
    """Segment predictions ``[N, T]`` (argmax of the scores) of every row of `dataset`, in order."""
    return predict_scores(model, dataset, config, context).argmax(dim=-1)


def test_report(
    model: nn.Module,
    test: ResidentDataset,
    config: TrainConfig,
    best: dict,
    label_sets: dict[str, tuple] | None = None,
    context: DistributedContext | None = None,
) -> tuple[dict, torch.Tensor]:
    """Test metrics of the best-on-validation checkpoint `best` in every variant (`variant_metrics`), also
    against each label set ``name -> (file, labels [N, T] of the test rows)``; returns them and the raw scores."""
    model.load_state_dict(best["model"])
    scores = predict_scores(model, test, config, context)
    report = {
        "split": "test",
        "checkpoint": BEST_FILE,
        "epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"],
        "labels": DATA_LABELS,
        "predictions": predictions_file("test"),
        **variant_metrics(scores, test.labels, config),
    }
    if label_sets:
        report["label_sets"] = {
            name: {"file": file, **variant_metrics(scores, labels, config)}
            for name, (file, labels) in label_sets.items()
        }
    return report, scores
