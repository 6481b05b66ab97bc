"""Bag-to-Instance Label Correction (B2ILC; EDRNet §"Bag to Instance Label Correction", Fig. 6;
docs/models.md#b2ilc)."""
from __future__ import annotations

import numpy as np
import torch

from .constants import BACKGROUND, NUM_CLASSES


def b2ilc(pred, witness_rate: float = 0.5, *, background: int = BACKGROUND, num_classes: int = NUM_CLASSES):
    """Relabel each confident foreground bag with its dominant event class.

    ``pred [V, T]`` holds class indices (torch tensor or numpy array; the result has the same type, device
    and dtype, the input is not modified). A bag is a maximal run of consecutive non-``background``
    predictions within a video, whatever their event classes. When the bag's most frequent class covers
    **strictly more** than ``witness_rate`` of its segments, every segment of the bag takes that class;
    otherwise the bag is left unchanged. With ``witness_rate = 0.5`` this is strict majority voting, so a
    tie never passes; with a lower rate tied classes can pass, and the lowest class index wins.

    Vectorised over all videos at once: bags get global ids from a cumulative sum of run starts and their
    class histograms are built with one ``index_put_`` accumulation.
    """
    if not 0.0 <= witness_rate <= 1.0:
        raise ValueError(f"witness_rate must lie in [0, 1], got {witness_rate}")
    if isinstance(pred, np.ndarray):
        native = np.ascontiguousarray(pred, dtype=pred.dtype.newbyteorder("="))  # torch takes neither
        return b2ilc(torch.from_numpy(native), witness_rate, background=background, num_classes=num_classes).numpy()
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"pred must be a torch.Tensor or numpy.ndarray, got {type(pred).__name__}")
    if pred.dim() != 2:
        raise ValueError(f"pred must have shape [V, T], got {tuple(pred.shape)}")
    if pred.dtype.is_floating_point or pred.dtype.is_complex or pred.dtype == torch.bool:
        raise ValueError(f"pred must hold integer class indices, got dtype {pred.dtype}")
    if background < 0:
        raise ValueError(f"background must be a non-negative class index, got {background}")
    if pred.numel() == 0:
        return pred.clone()
    num_classes = max(num_classes, background + 1)
    if pred.min() < 0 or pred.max() >= num_classes:
        low, high = int(pred.min()), int(pred.max())
        raise ValueError(f"pred must hold class indices in 0..{num_classes - 1}, got {low}..{high}")

    labels = pred.long()
    foreground = labels != background
    starts = foreground.clone()
    starts[:, 1:] &= ~foreground[:, :-1]
    bag = torch.cumsum(starts.reshape(-1), 0).reshape_as(labels) - 1
    num_bags = int(starts.sum())
    if num_bags == 0:
        return pred.clone()

    counts = torch.zeros(num_bags, num_classes, dtype=torch.long, device=pred.device)
    bag_of_segment, class_of_segment = bag[foreground], labels[foreground]
    ones = torch.ones_like(class_of_segment)
    counts.index_put_((bag_of_segment, class_of_segment), ones, accumulate=True)
    dominant = counts.argmax(dim=1)  # first maximum: the lowest class index among ties
    confident = counts.amax(dim=1).double() > witness_rate * counts.sum(dim=1).double()

    bag = bag.clamp_min(0)
    corrected = torch.where(foreground & confident[bag], dominant[bag], labels)
    return corrected.to(pred.dtype)
