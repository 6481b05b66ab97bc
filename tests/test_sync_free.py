"""A training step of every fast model asks nothing of a CUDA device that would make the host wait
(docs/fast-path.md): no value read back, no result sized by values, no tensor built from Python data.

`_sync_probe.SyncProbe` records such ops on any device, so the CPU runs here show what a CUDA run would wait
for: one forward+backward of DPNet (linked replicas), EDRNet + LSS, the AVE baseline and PSP, on the ``torch``
path and on the ``triton`` path (Triton's interpreter, `_interpret.run_interpreted`). The step is probed after
one warm-up step: constants built once per device and the LSS label check of the loss's first call happen there.
"""
from __future__ import annotations

import pytest
import torch

from _interpret import run_interpreted
from _sync_probe import SyncProbe
from avel_fast import models, nn as fast_nn
from avel_fast.constants import BACKGROUND

BATCH, STEPS = 4, 10
MODELS = ["dpnet", "edrnet", "ave", "psp"]


def training_step(name: str):
    """A function running one forward+backward of the small fast model `name` in training mode."""
    torch.manual_seed(0)
    audio = torch.randn(BATCH, STEPS, 6)
    maps = torch.randn(BATCH, STEPS, 7, 7, 8)
    if name == "dpnet":
        model = models.DPNet(audio_dim=6, visual_dim=8, dim=32, blocks=2)
        return lambda: model(audio, maps, group_size=2).sum().backward()
    if name == "edrnet":
        model, lss = models.EDRNet(audio_dim=6, visual_dim=8, dim=8), fast_nn.LSSLoss()
        labels = torch.where(torch.rand(BATCH, STEPS) < 0.5, BACKGROUND, torch.randint(0, BACKGROUND, (BATCH, STEPS)))

        def step():
            logits, features = model(audio, maps, return_features=True)
            (logits.sum() + lss(features, labels)).backward()

        return step
    model = models.AVEBaseline(audio_dim=6, visual_dim=8) if name == "ave" else models.PSPNet("wsel", audio_dim=6,
                                                                                              visual_dim=8)
    return lambda: model(audio, maps).sum().backward()


def sync_records(name: str) -> list[tuple[str, str, str]]:
    """What `SyncProbe` records during the second training step of `name`."""
    step = training_step(name)
    step()
    with SyncProbe() as probe:
        step()
    return probe.records


def assert_sync_free(name: str) -> None:
    records = sync_records(name)
    assert not records, f"{name} synchronises:\n" + "\n".join(" | ".join(record) for record in records)


@pytest.mark.parametrize("name", MODELS)
def test_torch_path_training_step_is_sync_free(torch_backend, name):
    assert_sync_free(name)


def check_triton_paths_are_sync_free() -> None:
    for name in MODELS:
        assert_sync_free(name)


def test_triton_path_training_steps_are_sync_free():
    run_interpreted("test_sync_free", "check_triton_paths_are_sync_free")


def test_the_probe_sees_a_value_read_and_python_data():
    with SyncProbe() as probe:
        torch.ones(2).sum().item()
        torch.tensor([1.0, 2.0])
    assert [record[0] for record in probe.records] == ["aten::_local_scalar_dense", "aten::lift_fresh"]
