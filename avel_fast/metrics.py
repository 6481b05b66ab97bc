"""Segment-level AVEL metrics (docs/metrics.md): the metric suite of the Temporal Label-Refinement paper
("Evaluation Metrics" and Tab. 1-2).

Everything is derived from one confusion matrix built with a single ``bincount``.

Undefined values are ``nan``, never an exception:

* a precision is ``nan`` when nothing of its kind was predicted (no background predictions for non-AVE,
  no event predictions for AVE);
* a recall is ``nan`` when there is no target of its kind;
* an F1 is ``nan`` when its precision or its recall is ``nan``; when both are defined and both are 0
  (predictions and targets of the kind exist but none is right) the F1 is 0, its limit, as for sklearn;
* ``accuracy`` and ``weighted_f1`` are ``nan`` for zero segments;
* ``per_class_accuracy[c]`` (the recall of class c) is ``nan`` when class c has no target segment.

``weighted_f1`` follows sklearn's ``average="weighted"``: per-class F1 = 2·TP / (support + predicted), a class
with support but no prediction counts 0, and the mean is weighted by the target support of each class.
"""
from __future__ import annotations

import numpy as np
import torch

from .constants import BACKGROUND, NUM_CLASSES


def _as_class_indices(values, name: str) -> np.ndarray:
    """A tensor or array of integer class indices as an int64 numpy array of the same shape."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {values.dtype}")
    return values.astype(np.int64, copy=False)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def _f1(precision: float, recall: float) -> float:
    """Harmonic mean; ``nan`` if either side is undefined, 0 if both are 0."""
    if np.isnan(precision) or np.isnan(recall):
        return float("nan")
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


SCALAR_METRICS = {
    "accuracy": "accuracy", "weighted_f1": "weighted F1",
    "non_ave_precision": "non-AVE precision", "non_ave_recall": "non-AVE recall", "non_ave_f1": "non-AVE F1",
    "ave_precision": "AVE precision", "ave_recall": "AVE recall", "ave_f1": "AVE F1",
}  # fmt: skip
"""The scalar keys of `segment_metrics` and how tables label them."""


def segment_metrics(pred, target, *, num_classes: int = NUM_CLASSES, background: int = BACKGROUND) -> dict:
    """Accuracy, weighted F1, non-AVE and AVE precision/recall/F1, per-class accuracy, confusion matrix.

    ``pred`` and ``target`` are torch tensors or numpy arrays of integer class indices in
    ``0..num_classes-1`` with the same shape (any shape; segments are flattened). Non-AVE is the
    ``background`` class; AVE counts a segment as correct only on an exact event-class match.
    Returns the floats ``accuracy`` (a fraction), ``weighted_f1``, ``non_ave_precision``, ``non_ave_recall``,
    ``non_ave_f1``, ``ave_precision``, ``ave_recall``, ``ave_f1``, plus ``per_class_accuracy`` (float64
    ``[num_classes]``), ``confusion_matrix`` (int64 ``[num_classes, num_classes]``, rows = target, columns =
    prediction) and ``num_segments``. See the module docstring for which values are ``nan``.
    """
    if not 0 <= background < num_classes:
        raise ValueError(f"background={background} is not a class index in 0..{num_classes - 1}")
    pred = _as_class_indices(pred, "pred")
    target = _as_class_indices(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {pred.shape} but target has shape {target.shape}")
    pred, target = pred.reshape(-1), target.reshape(-1)
    for name, values in (("pred", pred), ("target", target)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} holds class indices in {values.min()}..{values.max()}, outside 0..{num_classes - 1}"
            )

    confusion = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes).astype(np.int64, copy=False)
    num_segments = int(pred.size)
    true_positives = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)

    with np.errstate(divide="ignore", invalid="ignore"):
        per_class_accuracy = np.where(support > 0, true_positives / support, np.nan)
        per_class_f1 = np.where(support > 0, 2.0 * true_positives / (support + predicted), 0.0)
    correct = int(true_positives.sum())

    non_ave_precision = _ratio(true_positives[background], predicted[background])
    non_ave_recall = _ratio(true_positives[background], support[background])
    correct_events = correct - int(true_positives[background])
    ave_precision = _ratio(correct_events, num_segments - predicted[background])
    ave_recall = _ratio(correct_events, num_segments - support[background])

    return {
        "accuracy": _ratio(correct, num_segments),
        "weighted_f1": _ratio(float((support * per_class_f1).sum()), num_segments),
        "non_ave_precision": non_ave_precision,
        "non_ave_recall": non_ave_recall,
        "non_ave_f1": _f1(non_ave_precision, non_ave_recall),
        "ave_precision": ave_precision,
        "ave_recall": ave_recall,
        "ave_f1": _f1(ave_precision, ave_recall),
        "per_class_accuracy": per_class_accuracy,
        "confusion_matrix": confusion,
        "num_segments": num_segments,
    }
