"""A model family is one file: a minimal family defined here (a linear layer on the segment features, with one
option of its own), registered and trained through the public entry point with the smoke preset, touching nothing
else of the package (docs/training.md#add-a-family)."""
import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from avel_fast.constants import NUM_CLASSES
from avel_fast.train import FAMILIES, TrainingError, evaluate_run, family_of, resolve_config, train
from avel_fast.train.families import ModelFamily, SegmentOptions
from avel_fast.train.families.base import audio_dim
from avel_fast.train.options import option
from avel_fast.train.registry import register
from avel_fast.train.schedule import ConstantSchedule

pytestmark = pytest.mark.usefixtures("one_thread")


class LinearModel(nn.Module):
    """Segment scores from the audio and the pooled visual features of each segment."""

    def __init__(self, audio_width: int, scale: float) -> None:
        super().__init__()
        self.layer, self.scale = nn.Linear(audio_width + 512, NUM_CLASSES), scale

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return self.scale * self.layer(torch.cat((audio, visual), dim=-1))


@dataclass(frozen=True)
class LinearOptions(SegmentOptions):
    scale: float = option(1.0, "Scale of the scores.", low=0.0, above=True)

    @classmethod
    def preset_values(cls, preset: str, setting: str) -> dict:
        return {"lr": 1e-2, "standardize": True}


class LinearFamily(ModelFamily):
    name = "linear"
    title = "linear probe"
    options_class = LinearOptions
    pooled_visual = True

    def build_model(self, config, fast: bool) -> nn.Module:
        return LinearModel(audio_dim(config), config.options.scale)

    def schedule(self, config) -> ConstantSchedule:
        return ConstantSchedule()


@pytest.fixture
def linear():
    register(LinearFamily)
    yield FAMILIES["linear"]
    del FAMILIES["linear"]


def test_a_family_defined_in_one_file_trains_through_the_public_entry_point(tmp_path, linear):
    config = resolve_config("linear", preset="smoke", device="cpu", scale=2.0)
    assert family_of("linear") is linear and config.options == LinearOptions(scale=2.0, audio_dim=None)
    report = train(config, tmp_path / "run")
    assert report["split"] == "test" and 0.0 <= report["metrics"]["accuracy"] <= 1.0
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert stored["model"] == "linear" and stored["options"]["scale"] == 2.0 and stored["options"]["audio_dim"] == 128
    assert [json.loads(line)["epoch"] for line in (tmp_path / "run" / "metrics.jsonl").open()] == [1, 2]
    _, metrics = evaluate_run(tmp_path / "run")
    assert metrics["accuracy"] == report["metrics"]["accuracy"]
    with pytest.raises(TrainingError, match="^--scale must be a finite number > 0.0, got 0.0$"):
        resolve_config("linear", preset="smoke", device="cpu", scale=0.0)
    with pytest.raises(TrainingError, match="^--replicate is not an option of linear \\(an option of dpnet\\)$"):
        resolve_config("linear", preset="smoke", device="cpu", replicate=True)
    with pytest.raises(TrainingError, match="--scale is not an option of dpnet \\(an option of linear\\)"):
        resolve_config("dpnet", preset="smoke", device="cpu", scale=2.0)
