"""The DPNet learning-rate schedule (DPNet §4 "Implementation Details"; docs/training.md#schedule), per iteration,
and the one-cycle schedule of the pretext network (`OneCycleSchedule`).

Cosine annealing with warm restarts every `cycle` epochs: within each cycle the multiplier of the base
learning rate falls from 1 to a floor along half a cosine, then restarts at 1. The floor is 0.1 until the
phase switch and 0.01 after it. The paper trains 400 epochs with cycles of 20 and switches at epoch 300; for
other epoch counts the switch keeps its place at 3/4 of the run, rounded half up to a whole number of cycles,
at least one (``switch = max(1, ⌊0.75 · epochs / cycle + 1/2⌋) · cycle``; at or past the end of the run there
is no second phase), so with 400 epochs and cycles of 20 it is exactly 300, and a run shorter than one cycle
keeps the 0.1 floor.
The position is fractional (``epoch + step / steps_per_epoch``), so the learning rate changes every iteration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

PAPER_SWITCH_FRACTION = 300 / 400
FIRST_FLOOR, SECOND_FLOOR = 0.1, 0.01


@dataclass(frozen=True)
class CyclicCosineSchedule:
    """Multiplier of the base learning rate at a fractional epoch (module docstring)."""

    epochs: int
    cycle: int

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.cycle < 1:
            raise ValueError(f"epochs={self.epochs}, cycle={self.cycle}: both must be >= 1")

    @property
    def switch_epoch(self) -> int:
        """First epoch of the 1 -> 0.01 phase (300 for the paper's 400 epochs with cycles of 20)."""
        return max(1, int(PAPER_SWITCH_FRACTION * self.epochs / self.cycle + 0.5)) * self.cycle

    def multiplier(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """Multiplier at iteration `step` of `epoch` (both from 0)."""
        position = epoch + step / steps_per_epoch
        floor = FIRST_FLOOR if position < self.switch_epoch else SECOND_FLOOR
        phase = (position % self.cycle) / self.cycle
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * phase))


@dataclass(frozen=True)
class ConstantSchedule:
    """A constant learning rate (multiplier 1): the AVE baseline and PSP recipes (docs/weak.md)."""

    def multiplier(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        return 1.0


@dataclass(frozen=True)
class OneCycleSchedule:
    """The one-cycle policy (Smith & Topin 2019) of the ambient-sound reproduction (docs/audio.md#pretext), per
    iteration: the multiplier rises from ``1/div_factor`` to 1 along half a cosine over the first `warmup`
    fraction of the run, then falls to ``1/(div_factor·final_div_factor)``; equal to
    `torch.optim.lr_scheduler.OneCycleLR` (its defaults) divided by its maximum learning rate."""

    epochs: int
    warmup: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        if self.epochs < 1 or not 0.0 < self.warmup < 1.0:
            raise ValueError(f"epochs={self.epochs}, warmup={self.warmup}: need epochs >= 1 and 0 < warmup < 1")

    def multiplier(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """Multiplier at iteration `step` of `epoch` (both from 0)."""
        iteration, last = epoch * steps_per_epoch + step, self.epochs * steps_per_epoch - 1
        peak = self.warmup * (last + 1) - 1
        start, floor = 1.0 / self.div_factor, 1.0 / (self.div_factor * self.final_div_factor)
        if 0 < peak and iteration <= peak:
            low, high, fraction = start, 1.0, iteration / peak
        else:
            low, high, fraction = floor, 1.0, (iteration - peak) / (last - peak)
            fraction = 1.0 - fraction
        return low + (high - low) * 0.5 * (1.0 - math.cos(math.pi * fraction))
