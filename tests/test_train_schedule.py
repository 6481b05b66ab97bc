"""The learning-rate schedules: DPNet's cosine cycles with warm restarts, floors 0.1 then 0.01
(docs/training.md#schedule), and the one-cycle schedule of the pretext network (docs/audio.md#pretext-training)."""
import math

import pytest
import torch

from avel_fast.train import CyclicCosineSchedule
from avel_fast.train.schedule import OneCycleSchedule

PAPER = CyclicCosineSchedule(epochs=400, cycle=20)


def test_paper_switch_is_epoch_300():
    assert PAPER.switch_epoch == 300


@pytest.mark.parametrize(
    ("epoch", "step", "expected"),
    [
        (0, 0, 1.0),  # start of the first cycle
        (10, 0, 0.55),  # mid-cycle: halfway between 1 and the floor 0.1
        (19, 50, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 19.5 / 20))),  # late in a cycle, fractional epoch
        (20, 0, 1.0),  # warm restart
        (290, 0, 0.55),  # last cycle of the first phase
        (300, 0, 1.0),  # restart into the second phase
        (310, 0, 0.505),  # mid-cycle: halfway between 1 and the floor 0.01
        (399, 99, 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 19.99 / 20))),  # the run's last iteration
    ],
)
def test_paper_schedule_values(epoch, step, expected):
    assert PAPER.multiplier(epoch, step, steps_per_epoch=100) == pytest.approx(expected, abs=1e-12)


def test_multiplier_changes_every_iteration_and_falls_towards_the_floor():
    values = [PAPER.multiplier(3, step, steps_per_epoch=70) for step in range(70)]
    assert all(a > b for a, b in zip(values, values[1:]))
    just_before_restart = PAPER.multiplier(299, 69, steps_per_epoch=70)
    assert 0.1 < just_before_restart < 0.1 + 1e-4


@pytest.mark.parametrize(
    ("epochs", "cycle", "switch"), [(40, 10, 30), (30, 10, 20), (50, 10, 40), (2, 1, 2), (7, 20, 20)]
)
def test_switch_scales_to_three_quarters_in_whole_cycles(epochs, cycle, switch):
    schedule = CyclicCosineSchedule(epochs, cycle)
    assert schedule.switch_epoch == switch
    if switch < epochs:
        assert schedule.multiplier(switch + cycle / 2) == pytest.approx(0.505)
    assert schedule.multiplier(max(switch - cycle, 0) + cycle / 2) == pytest.approx(0.55 if switch else 0.505)


def test_rejects_empty_schedules():
    with pytest.raises(ValueError, match="cycle=0"):
        CyclicCosineSchedule(10, 0)


@pytest.mark.parametrize(("epochs", "steps"), [(1, 10), (3, 7), (20, 5)])
def test_one_cycle_is_torch_one_cycle_over_its_peak(epochs, steps):
    schedule = OneCycleSchedule(epochs)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2.0, total_steps=epochs * steps)
    for epoch in range(epochs):
        for step in range(steps):
            assert schedule.multiplier(epoch, step, steps) == pytest.approx(optimizer.param_groups[0]["lr"] / 2.0,
                                                                            abs=1e-12)
            optimizer.step()
            torch_schedule.step()
    assert schedule.multiplier(0, 0, 100) == pytest.approx(1 / 25)
    assert schedule.multiplier(epochs - 1, steps - 1, steps) == pytest.approx(1 / 25e4)
    with pytest.raises(ValueError, match="warmup"):
        OneCycleSchedule(10, warmup=1.0)
